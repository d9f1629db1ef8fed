"""``nbatlas db ...``: migrations and the embedded server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from sqlalchemy import Engine

from db.settings import get_settings
from ingest.commands._common import console, database_error, fail, hide_password

app = typer.Typer()
db_app = typer.Typer(help="Manage the database: migrations and the embedded server.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@contextmanager
def _engine() -> Iterator[Engine]:
    """The configured database, without the schema check (these commands manage the schema);
    a database that cannot be reached ends the command with a clear error."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    from db.engine import make_engine

    settings = get_settings()
    try:
        engine = make_engine(settings)
    except Exception as exc:  # the embedded server could not start, or the URL is unusable
        fail(database_error(settings, exc))
    try:
        yield engine
    except (OperationalError, InterfaceError) as exc:
        fail(database_error(settings, exc))
    finally:
        engine.dispose()


@db_app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from db import schema

    with _engine() as engine:
        schema.upgrade(engine, revision)
        console.print(f"database at revision [bold]{schema.current_revision(engine)}[/]")


@db_app.command("downgrade")
def downgrade(revision: str = typer.Argument(..., help="Target revision, or 'base' to drop everything.")) -> None:
    """Undo migrations down to REVISION. 'base' removes every nbatlas table."""
    from db import schema

    with _engine() as engine:
        schema.downgrade(engine, revision)
        console.print(f"database at revision [bold]{schema.current_revision(engine) or 'base'}[/]")


@db_app.command("current")
def current() -> None:
    """Print the database's revision and the one this nbatlas expects."""
    from db import schema

    with _engine() as engine:
        current_revision = schema.current_revision(engine)
    print(f"current: {current_revision or 'base (empty)'}\nhead:    {schema.head_revision()}")


@db_app.command("url")
def url(
    show_password: bool = typer.Option(False, "--show-password", help="Print the password too (hidden as *** by default)."),
) -> None:
    """Print the SQLAlchemy URL of the database (starting the embedded server if needed)."""
    from db.engine import resolve_database_url

    settings = get_settings()
    try:
        resolved = resolve_database_url(settings)
    except Exception as exc:  # the embedded server could not start
        fail(database_error(settings, exc))
    print(resolved if show_password else hide_password(resolved))


@db_app.command("stop")
def stop() -> None:
    """Stop the embedded PostgreSQL server."""
    from db.server import stop_embedded

    settings = get_settings()
    if settings.database_url:
        console.print("NBATLAS_DATABASE_URL is set: there is no embedded server to stop")
        return
    stopped = stop_embedded(settings.pgdata)
    console.print("embedded server stopped" if stopped else "embedded server was not running")
