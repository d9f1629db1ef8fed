"""``nbatlas db ...``: migrations and the embedded server."""

from __future__ import annotations

import typer

from db.settings import get_settings
from ingest.commands._common import console

app = typer.Typer()
db_app = typer.Typer(help="Manage the database: migrations and the embedded server.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from db import schema

    from db.engine import make_engine

    engine = make_engine(get_settings())
    schema.upgrade(engine, revision)
    console.print(f"database at revision [bold]{schema.current_revision(engine)}[/]")


@db_app.command("downgrade")
def downgrade(revision: str = typer.Argument(..., help="Target revision, or 'base' to drop everything.")) -> None:
    """Undo migrations down to REVISION. 'base' removes every nbatlas table."""
    from db import schema
    from db.engine import make_engine

    engine = make_engine(get_settings())
    schema.downgrade(engine, revision)
    console.print(f"database at revision [bold]{schema.current_revision(engine) or 'base'}[/]")


@db_app.command("current")
def current() -> None:
    """Print the database's revision and the one this nbatlas expects."""
    from db import schema
    from db.engine import make_engine

    engine = make_engine(get_settings())
    print(f"current: {schema.current_revision(engine) or 'base (empty)'}\nhead:    {schema.head_revision()}")


@db_app.command("url")
def url() -> None:
    """Print the SQLAlchemy URL of the database (starting the embedded server if needed)."""
    from db.engine import resolve_database_url

    print(resolve_database_url(get_settings()))


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
