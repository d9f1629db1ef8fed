"""What every command needs: settings, an engine on a migrated database, friendly errors."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from sqlalchemy import Engine

from db.settings import Settings, get_settings

console = Console(stderr=True)


def fail(message: str, code: int = 1) -> "NoReturn":  # noqa: F821
    console.print(f"[bold red]error:[/] {message}")
    raise SystemExit(code)


@contextmanager
def api_errors(url: str) -> Iterator[None]:
    """A failing API client (report, inspect) ends the command with the server's address and the reason."""
    from analysis.client import NbatlasError

    try:
        yield
    except NbatlasError as exc:
        fail(f"the API at {url} refused a query: {exc}")
    except Exception as exc:  # httpx transport errors: the server is not there
        if type(exc).__module__.startswith("httpx"):
            fail(f"cannot reach the API at {url}: {exc}")
        raise


def open_engine(settings: Settings | None = None, *, upgrade_empty: bool = True) -> Engine:
    from db.engine import open_database
    from db.schema import SchemaOutdated

    settings = settings or get_settings()
    try:
        return open_database(settings, upgrade_empty=upgrade_empty)
    except SchemaOutdated as exc:
        fail(str(exc))
    except Exception as exc:  # the database could not be reached or started
        where = settings.database_url or f"embedded server in {settings.pgdata}"
        fail(f"cannot open the database ({where}): {exc}")
    sys.exit(1)
