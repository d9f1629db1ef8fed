"""Deployment: the public API's own role can read and cannot write, and docker-compose.yml is valid.

The role is made the way the deployment makes it: migration 0009_public_role reads
NBATLAS_PUBLIC_ROLE / NBATLAS_PUBLIC_ROLE_PASSWORD while the schema is migrated (docker compose
passes them to the api service, which migrates on first start).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml
from psycopg import errors
from sqlalchemy import create_engine, make_url, text
from sqlmodel import Session

from db import schema
from db.settings import Settings
from tests.fake_kaggle import REAL_CORPUS, smallest_notebooks
from tests.test_api import serve

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
PASSWORD = "pa'ss%w\"rd$1"  # quoting in CREATE ROLE ... PASSWORD must survive this


@pytest.fixture(scope="module")
def public_db(server_url, tmp_path_factory):
    """(admin url, role url, role name): a database migrated with the public role's variables set,
    holding real notebooks."""
    from ingest.local import ingest_paths
    from db.server import create_database, drop_database

    role = f"nbatlas_pub_{uuid.uuid4().hex[:8]}"
    name = f"nbatlas_deploy_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    eng = create_engine(url)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBATLAS_PUBLIC_ROLE", role)
        mp.setenv("NBATLAS_PUBLIC_ROLE_PASSWORD", PASSWORD)
        schema.upgrade(eng)
    home = tmp_path_factory.mktemp("deploy")
    files = [REAL_CORPUS / r["file"] for r in smallest_notebooks(12)[2:12]]
    with Session(eng) as session:
        ingest_paths(files, session=session, settings=Settings(home=home, database_url=url), progress=False)
        session.commit()
    eng.dispose()
    role_url = make_url(url).set(username=role, password=PASSWORD).render_as_string(hide_password=False)
    yield url, role_url, role
    drop_database(server_url, name)
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
    admin.dispose()


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def test_public_role_reads_and_cannot_write(public_db):
    admin_url, role_url, role = public_db
    with psycopg.connect(libpq(admin_url), autocommit=True) as admin:
        notebooks = admin.execute("SELECT count(*) FROM notebook").fetchone()[0]
        assert admin.execute("SELECT rolcanlogin, rolpassword IS NOT NULL, rolsuper, rolcreaterole, rolcreatedb "
                             "FROM pg_authid WHERE rolname = %s", (role,)).fetchone() == (True, True, False, False, False)
        admin.execute("CREATE TABLE later_table (x int)")  # as a later migration would
        admin.execute("INSERT INTO later_table VALUES (1)")
    assert notebooks >= 8

    with psycopg.connect(libpq(role_url), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == role
        assert conn.execute("SELECT count(*) FROM notebook").fetchone()[0] == notebooks
        assert conn.execute("SELECT count(*) FROM cell c JOIN notebook n ON n.id = c.notebook_id").fetchone()[0] > notebooks
        assert conn.execute("SELECT x FROM later_table").fetchall() == [(1,)]  # default privileges
        # first line of defence: the role's sessions are read-only
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
        with pytest.raises(errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM notebook")
        # second: with read-only switched off (the role may change its own setting), the grants refuse
        conn.execute("SET default_transaction_read_only = off")
        writes = [
            "INSERT INTO problem (location) VALUES ('x')",
            "UPDATE notebook SET language = 'cobol'",
            "DELETE FROM cell",
            "TRUNCATE notebook CASCADE",
            "CREATE TABLE public.mine (x int)",
            "CREATE INDEX nb_lang ON notebook (language)",
            "ALTER TABLE notebook ADD COLUMN x int",
            "DROP TABLE later_table",
            "INSERT INTO later_table VALUES (2)",
            "CREATE SCHEMA mine",
        ]
        for statement in writes:
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement)
        for table, column in [("alembic_version", "version_num"), ("image", "sha256"), ("source", "id")]:
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(f"UPDATE {table} SET {column} = {column}")
    with psycopg.connect(libpq(admin_url), autocommit=True) as admin:
        assert admin.execute("SELECT count(*) FROM notebook").fetchone()[0] == notebooks
        assert admin.execute("SELECT count(*) FROM later_table").fetchone()[0] == 1
        admin.execute("DROP TABLE later_table")


def test_public_api_runs_as_the_role_and_answers(public_db, tmp_path):
    admin_url, role_url, role = public_db
    with psycopg.connect(libpq(admin_url), autocommit=True) as admin:
        want = admin.execute("SELECT count(*), count(*) FILTER (WHERE language = 'python') FROM notebook").fetchone()
        sessions_before = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (role,)).fetchone()[0]
    with serve(role_url, tmp_path / "home", "--public") as base:
        body = httpx.post(f"{base}/graphql", json={"query": "{ stats { notebooks } notebooks(first: 3) "
                                                            "{ totalCount nodes { dbId cells(first: 2) { nodes { source } } } } }"},
                          timeout=30).json()
        with psycopg.connect(libpq(admin_url), autocommit=True) as admin:
            during = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (role,)).fetchone()[0]
        mutation = httpx.post(f"{base}/graphql", json={"query": "mutation { __typename }"}, timeout=30).json()
    assert "errors" not in body, body
    assert body["data"]["stats"]["notebooks"] == want[0] == body["data"]["notebooks"]["totalCount"]
    assert len(body["data"]["notebooks"]["nodes"]) == 3
    assert during > sessions_before, "the public API's connections log in as the public role"
    assert "errors" in mutation


def test_grants_are_restored_by_python_m_db_roles(public_db, tmp_path):
    """After a restore without privileges (pg_restore --no-privileges), `python -m db.roles` grants again."""
    import os
    import sys

    admin_url, role_url, role = public_db
    with psycopg.connect(libpq(admin_url), autocommit=True) as admin:
        admin.execute(f'REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM "{role}"')
    with psycopg.connect(libpq(role_url), autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM notebook")
    env = {**os.environ, "NBATLAS_DATABASE_URL": admin_url, "NBATLAS_HOME": str(tmp_path),
           "NBATLAS_PUBLIC_ROLE": role, "NBATLAS_PUBLIC_ROLE_PASSWORD": PASSWORD}
    done = subprocess.run([sys.executable, "-m", "db.roles"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"role {role}: SELECT on every table" in done.stdout
    with psycopg.connect(libpq(role_url), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM notebook").fetchone()[0] > 0
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("DELETE FROM notebook")


def test_migration_leaves_no_grant_behind_on_downgrade(fresh_database, monkeypatch):
    role = f"nbatlas_pub_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("NBATLAS_PUBLIC_ROLE", role)
    monkeypatch.delenv("NBATLAS_PUBLIC_ROLE_PASSWORD", raising=False)
    url = fresh_database(migrate=False)
    eng = create_engine(url)
    try:
        schema.upgrade(eng)
        grants = "SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = :r"
        with eng.connect() as conn:
            assert conn.execute(text("SELECT rolcanlogin FROM pg_roles WHERE rolname = :r"), {"r": role}).scalar() is False
            assert conn.execute(text(grants), {"r": role}).scalar() > 10
        schema.downgrade(eng, "0007_study")
        with eng.connect() as conn:
            assert conn.execute(text(grants), {"r": role}).scalar() == 0
            assert conn.execute(text("SELECT count(*) FROM pg_default_acl")).scalar() == 0
        schema.upgrade(eng)
        schema.downgrade(eng, "0007_study")
    finally:
        eng.dispose()
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP ROLE "{role}"'))  # fails if any grant were left behind in the database
    admin.dispose()


# --- docker-compose.yml ---------------------------------------------------------------------------


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.skipif(compose_command() is None, reason="neither `docker compose` nor `docker-compose` is installed "
                    "(.ci/run installs Debian's docker-compose)")
def test_docker_compose_config_validates(tmp_path):
    cmd = compose_command()
    done = subprocess.run([*cmd, "-f", str(COMPOSE), "config"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    services = resolved["services"]
    assert set(services) == {"db", "api", "public", "worker"}
    assert services["db"]["image"].startswith("pgvector/pgvector:")
    assert "pgdata" in resolved["volumes"]
    assert all("healthcheck" in s for s in services.values())
    public_url = make_url(services["public"]["environment"]["NBATLAS_DATABASE_URL"])
    api_env = services["api"]["environment"]
    assert public_url.username == api_env["NBATLAS_PUBLIC_ROLE"] != make_url(api_env["NBATLAS_DATABASE_URL"]).username
    assert public_url.password == api_env["NBATLAS_PUBLIC_ROLE_PASSWORD"]
    assert "--public" in services["public"]["command"] and services["public"]["environment"]["NBATLAS_PUBLIC"] == "true"
    assert services["worker"]["command"][:2] == ["nbatlas", "worker"]
    mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in services["worker"]["volumes"]]
    assert any(m.startswith("/var/run/docker.sock:/var/run/docker.sock") for m in mounts)
