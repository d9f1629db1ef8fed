"""The study workbench: a browser front end served by ``nbatlas serve`` at ``/``.

Pages (gallery, plot, notebook) are rendered on the server from the same ``db.queries`` functions
as the API; a small static script adds keyboard coding, sending GraphQL mutations. Nothing needs a
JavaScript build: templates and static files ship inside this package. Public mode serves the
pages read-only, without the coding panel, samples, codebooks or login.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from api.database import Database
from db.settings import Settings


class _Static(StaticFiles):
    """The workbench's own CSS and JS, sniffing forbidden (script-src 'self' relies on the type)."""

    async def get_response(self, path, scope):
        response = await super().get_response(path, scope)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers.setdefault("Cache-Control", "public, max-age=300")
        return response


def mount_workbench(app: FastAPI, db: Database, *, settings: Settings, public: bool) -> None:
    """Add the workbench's pages and static files to the API's application."""
    from api.workbench.routes import STATIC_DIR, build_workbench_router

    app.include_router(build_workbench_router(db, settings=settings, public=public))
    app.mount("/static/workbench", _Static(directory=STATIC_DIR), name="workbench-static")
