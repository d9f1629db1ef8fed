"""Engine and session factory; the schema check that runs on first use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlmodel import Session

from db.settings import Settings, get_settings


def resolve_database_url(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    if settings.database_url:
        url = settings.database_url
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url
    from db.server import embedded_uri

    return embedded_uri(settings.pgdata)


def make_engine(settings: Settings | None = None, *, url: str | None = None, **kwargs) -> Engine:
    url = url or resolve_database_url(settings)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def open_database(settings: Settings | None = None, *, upgrade_empty: bool = True) -> Engine:
    """The engine every command uses: migrates an empty database, refuses an outdated one."""
    from db.schema import ensure_schema

    engine = make_engine(settings)
    ensure_schema(engine, upgrade_empty=upgrade_empty)
    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
