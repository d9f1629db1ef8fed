"""Alembic environment. The engine comes from db (or is built from NBATLAS_ settings)."""

from alembic import context
from sqlmodel import SQLModel

import db.models  # noqa: F401  registers the tables on SQLModel.metadata

target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    engine = context.config.attributes.get("engine")
    if engine is None:
        from db.engine import make_engine

        engine = make_engine()
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("nbatlas migrations run online only: use `nbatlas db upgrade`")
run_migrations_online()
