"""The public read-only API's own database role: SELECT on the corpus and nothing else.

Migration ``0009_public_role`` calls ``ensure_public_role`` with the names below, so every database
nbatlas migrates (the embedded one, a lab's ``docker compose`` PostgreSQL) gets the role the same way:

    NBATLAS_PUBLIC_ROLE            role name (default ``nbatlas_public``)
    NBATLAS_PUBLIC_ROLE_PASSWORD   when set, the role may log in with it (the public service's
                                   NBATLAS_DATABASE_URL uses it); when unset, the role is NOLOGIN

Roles belong to the whole PostgreSQL cluster, tables to one database: the role is created once and
reused, the grants are made in the database being migrated. Beyond the grants, the role's sessions
default to read-only transactions, so even a grant given by mistake later cannot be used to write.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy import text
from sqlalchemy.engine import Connection

DEFAULT_ROLE = "nbatlas_public"
ROLE_ENV = "NBATLAS_PUBLIC_ROLE"
PASSWORD_ENV = "NBATLAS_PUBLIC_ROLE_PASSWORD"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

log = logging.getLogger(__name__)


def public_role_from_env() -> tuple[str, str | None]:
    """(role name, password or None) from the settings (NBATLAS_PUBLIC_ROLE[_PASSWORD]), the name checked."""
    from db.settings import Settings

    settings = Settings()
    name = settings.public_role.strip() or DEFAULT_ROLE
    if not _NAME.match(name):
        raise ValueError(f"{ROLE_ENV}={name!r}: a role name is lower-case letters, digits and _ (at most 63)")
    return name, settings.public_role_password or None


def _run(conn: Connection, statement) -> None:
    """A composed statement on the driver's connection, inside the migration's transaction. Not
    through exec_driver_sql: it passes empty parameters, and psycopg then reads a password's ``%``
    as a placeholder."""
    conn.connection.driver_connection.execute(statement)


def ensure_public_role(conn: Connection, name: str, password: str | None = None) -> bool:
    """Create (or update) role ``name`` and grant it read access to this database's public schema,
    now and for tables later migrations create. False when the connected user may not manage
    roles and the role does not exist: the deployment then has no separate public role (the public
    API still runs read-only transactions), which is logged rather than failing the migration."""
    from psycopg import sql

    if not _NAME.match(name):
        raise ValueError(f"invalid role name {name!r}")
    role = sql.Identifier(name)
    exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).first() is not None
    may_manage = conn.execute(text("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")).scalar()
    if not exists and not may_manage:
        log.warning("cannot create role %s (the migrating user lacks CREATEROLE): the public API will use the main role", name)
        return False
    login = sql.SQL("LOGIN PASSWORD {}").format(sql.Literal(password)) if password else sql.SQL("NOLOGIN")
    if not exists:
        # two databases of one cluster may be migrated at once: the loser of the race reuses the role
        nested = conn.begin_nested()
        try:
            _run(conn, sql.SQL("CREATE ROLE {} {} NOINHERIT").format(role, login))
            nested.commit()
        except Exception:
            nested.rollback()
            if conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).first() is None:
                raise
            exists = True
    if exists and may_manage and password:
        # a role that exists keeps its login unless a password is given: migrating a second
        # database without the variable must not lock out the first one's public service
        _run(conn, sql.SQL("ALTER ROLE {} {}").format(role, login))
    if may_manage:
        _run(conn, sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role))
    db = sql.Identifier(conn.execute(text("SELECT current_database()")).scalar())
    for statement in (
        "GRANT CONNECT ON DATABASE {db} TO {role}",
        "GRANT USAGE ON SCHEMA public TO {role}",
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
        # tables created later by the migrating user (the next migrations) are readable too
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {role}",
    ):
        _run(conn, sql.SQL(statement).format(db=db, role=role))
    return True


def revoke_public_role(conn: Connection, name: str) -> None:
    """Take back this database's grants. The role itself stays: other databases of the cluster may use it."""
    from psycopg import sql

    if conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).first() is None:
        return
    role = sql.Identifier(name)
    db = sql.Identifier(conn.execute(text("SELECT current_database()")).scalar())
    for statement in (
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM {role}",
        "REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM {role}",
        "REVOKE USAGE ON SCHEMA public FROM {role}",
        "REVOKE CONNECT ON DATABASE {db} FROM {role}",
    ):
        _run(conn, sql.SQL(statement).format(db=db, role=role))


def main() -> None:
    """``python -m db.roles``: (re)create the public role and its grants on the configured database
    (NBATLAS_DATABASE_URL), e.g. after restoring a dump with --no-privileges, or to set a new
    NBATLAS_PUBLIC_ROLE_PASSWORD. Migration 0009 does the same once, when it runs."""
    from db.engine import make_engine
    from db.settings import Settings

    name, password = public_role_from_env()
    engine = make_engine(Settings())
    try:
        with engine.begin() as conn:
            done = ensure_public_role(conn, name, password)
    finally:
        engine.dispose()
    if not done:
        raise SystemExit(f"role {name} does not exist and this user may not create roles")
    print(f"role {name}: SELECT on every table of {engine.url.database}" + ("" if password else " (NOLOGIN: no password given)"))


if __name__ == "__main__":
    main()
