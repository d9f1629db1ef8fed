"""What every command needs: settings, an engine on a migrated database, friendly errors."""

from __future__ import annotations

import sys

from rich.console import Console
from sqlalchemy import Engine

from db.settings import Settings, get_settings

console = Console(stderr=True)


def fail(message: str, code: int = 1) -> "NoReturn":  # noqa: F821
    console.print(f"[bold red]error:[/] {message}")
    raise SystemExit(code)


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
