"""The API's way into PostgreSQL: one engine, and ``await db.read(query_function, **args)``.

The query functions in ``db.queries`` are plain synchronous SQLAlchemy; each call runs in a worker
thread with its own short session (and transaction), so the event loop never blocks and concurrent
DataLoader batches never share a connection.

Public mode makes the database itself enforce read-only: psycopg opens every transaction with
``BEGIN READ ONLY`` (the connection's ``read_only`` flag), the connection starts with
``default_transaction_read_only=on`` and ``statement_timeout`` set (libpq startup options, so no
extra round trip per query), and when ``NBATLAS_READONLY_DATABASE_URL`` is set it logs in as that
(read-only) role instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio.to_thread
import orjson
from psycopg import errors as pg_errors
from psycopg.types.json import set_json_loads
from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from db.engine import make_engine, resolve_database_url
from db.queries.filters import hiding_folders
from db.settings import Settings

log = logging.getLogger("nbatlas.api")

T = TypeVar("T")


class UserError(Exception):
    """An error whose message is meant for the client (shown even in public mode)."""


class QueryTimeout(UserError):
    pass


def _psycopg_url(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_api_engine(settings: Settings, *, public: bool) -> Engine:
    if public and settings.readonly_database_url:
        url = _psycopg_url(settings.readonly_database_url)
    else:
        url = resolve_database_url(settings)
    connect_args: dict[str, Any] = {}
    if public:
        connect_args["options"] = (
            f"-c default_transaction_read_only=on -c statement_timeout={int(settings.statement_timeout_ms)}"
        )
    engine = make_engine(
        settings,
        url=url,
        # a ping per checkout would double the round trips of every DataLoader batch
        pool_pre_ping=False,
        pool_recycle=1800,
        pool_size=10,
        max_overflow=20,
        connect_args=connect_args,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        set_json_loads(orjson.loads, dbapi_connection)
        if public:
            dbapi_connection.read_only = True  # psycopg then sends BEGIN READ ONLY

    return engine


class Database:
    def __init__(self, engine: Engine, *, settings: Settings, public: bool) -> None:
        self.engine = engine
        self.settings = settings
        self.public = public

    def read_sync(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        if self.public:  # a filter here matches source locations as this server shows them: no folders
            kwargs = {k: hiding_folders(v) for k, v in kwargs.items()}
        with Session(self.engine) as session:
            try:
                return fn(session=session, **kwargs)
            except DBAPIError as exc:
                raise self._translate(exc) from exc
            finally:
                session.rollback()

    def write_sync(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        if self.public:
            raise UserError("this server is read-only")
        with Session(self.engine) as session:
            try:
                result = fn(session=session, **kwargs)
                session.commit()
                return result
            except DBAPIError as exc:
                session.rollback()
                raise self._translate(exc) from exc

    async def read(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        return await anyio.to_thread.run_sync(partial(self.read_sync, fn, **kwargs))

    async def write(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        return await anyio.to_thread.run_sync(partial(self.write_sync, fn, **kwargs))

    def _translate(self, exc: DBAPIError) -> Exception:
        orig = exc.orig
        if isinstance(orig, pg_errors.QueryCanceled):
            return QueryTimeout(
                f"the query ran longer than this server's statement timeout "
                f"({self.settings.statement_timeout_ms} ms) and was cancelled: narrow the filter or ask for fewer rows"
            )
        if isinstance(orig, pg_errors.ReadOnlySqlTransaction | pg_errors.InsufficientPrivilege):
            return UserError("this server is read-only")
        return exc

    def dispose(self) -> None:
        from db.queries.export import close_idle_connections

        close_idle_connections()
        self.engine.dispose()
