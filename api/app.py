"""The FastAPI application: GraphQL at /graphql (GraphiQL in a browser), /health, /images, /export.

``create_app(settings)`` is the composition root used by ``nbatlas serve``; ``create_app()`` with no
argument reads the NBATLAS_* environment (uvicorn's ``--factory`` and multi-worker runs use that).
"""

from __future__ import annotations

import gc
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI
from sqlalchemy.pool import NullPool
from starlette.middleware.cors import CORSMiddleware
from strawberry.fastapi import GraphQLRouter

from api.context import Context
from api.database import Database, make_api_engine
from api.guards import BearerToken, BodySizeLimit, RateLimit
from api.routes import build_router
from api.schema import build_schema
from api.workbench import mount_workbench
from db.engine import make_engine
from db.schema import ensure_schema
from db.settings import Settings


class _Router(GraphQLRouter):
    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)


def create_app(settings: Settings | None = None, *, public: bool | None = None) -> FastAPI:
    settings = settings or Settings()
    public = settings.public if public is None else public
    engine = make_api_engine(settings, public=public)
    # the private server migrates an empty database; the public one only checks it is current (on a
    # connection of its own: the API's may have a statement timeout too short for migrations)
    checker = make_engine(settings, url=engine.url.render_as_string(hide_password=False), poolclass=NullPool)
    try:
        ensure_schema(checker, upgrade_empty=not public)
    finally:
        checker.dispose()
    db = Database(engine, settings=settings, public=public)
    max_page = settings.max_page_size if public else max(settings.max_page_size, settings.private_max_page_size)

    async def context() -> Context:
        return Context(db, max_page_size=max_page)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        # everything built so far (modules, the schema) lives as long as the server: frozen out of the
        # garbage collector, a full collection no longer walks it in the middle of a request
        gc.collect()
        gc.freeze()
        yield
        db.dispose()

    app = FastAPI(
        title="nbatlas" + (" (public, read-only)" if public else ""),
        description="A queryable corpus of Jupyter notebooks: GraphQL at /graphql, images, bulk export.",
        lifespan=lifespan,
        docs_url=None if public else "/docs",
        redoc_url=None,
    )
    graphql = _Router(build_schema(public=public, settings=settings), context_getter=context, graphql_ide="graphiql")
    app.include_router(graphql, prefix="/graphql")
    app.include_router(
        build_router(
            db, home=settings.home, thumbnail_max_width=settings.thumbnail_max_width,
            max_image_pixels=settings.max_image_pixels,
        )
    )
    mount_workbench(app, db, settings=settings, public=public)  # the study pages at /
    app.state.db = db
    app.state.public = public

    # outermost last: CORS answers preflights before the limits count them
    if public:
        app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
        app.add_middleware(
            RateLimit, rate=settings.rate_limit_per_second, burst=settings.rate_limit_burst,
            trust_proxy=settings.trust_proxy, image_rate=settings.image_rate_limit_per_second,
            image_burst=settings.image_rate_limit_burst,
        )
        app.add_middleware(
            CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST"], allow_headers=["Content-Type"],
            max_age=86400,
        )
    elif settings.api_token:
        app.add_middleware(BearerToken, token=settings.api_token)
    return app
