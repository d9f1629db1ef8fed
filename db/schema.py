"""Alembic wiring. The schema exists only through the migrations in ``migrations/``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine


class SchemaOutdated(RuntimeError):
    """The database is on an older (or unknown) revision than this nbatlas expects."""


def _migrations_dir() -> Path:
    # located without importing it: migrations depends on db, never the reverse
    spec = importlib.util.find_spec("migrations")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the 'migrations' package is not installed next to 'db'")
    return Path(next(iter(spec.submodule_search_locations)))


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_migrations_dir()))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    return ScriptDirectory(str(_migrations_dir())).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    command.downgrade(alembic_config(engine), revision)


def ensure_schema(engine: Engine, *, upgrade_empty: bool = True) -> None:
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is None and upgrade_empty:
        upgrade(engine)
        return
    if current is None:
        raise SchemaOutdated("the database has no nbatlas schema yet: run `nbatlas db upgrade`")
    script = ScriptDirectory(str(_migrations_dir()))
    known = {rev.revision for rev in script.walk_revisions()}
    if current not in known:
        raise SchemaOutdated(
            f"the database is at revision {current}, which this nbatlas does not know "
            f"(newer nbatlas?); this one expects {head}"
        )
    raise SchemaOutdated(
        f"the database is at revision {current}, older than this nbatlas ({head}): "
        "run `nbatlas db upgrade` to migrate it"
    )
