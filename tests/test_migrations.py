"""The schema exists only through migrations: they go up from empty, down to base, and up again."""

from sqlalchemy import create_engine, inspect, text

from db import schema

TABLES = {"notebook", "cell", "output", "image", "output_image", "source", "ingest_run", "problem"}


def test_upgrade_downgrade_upgrade(fresh_database):
    eng = create_engine(fresh_database(migrate=False))
    assert schema.current_revision(eng) is None

    schema.upgrade(eng)
    assert schema.current_revision(eng) == schema.head_revision()
    assert TABLES <= set(inspect(eng).get_table_names())
    with eng.connect() as conn:
        extensions = set(conn.execute(text("SELECT extname FROM pg_extension")).scalars())
    assert {"vector", "pg_trgm"} <= extensions

    schema.downgrade(eng, "base")
    assert schema.current_revision(eng) is None
    assert not (TABLES & set(inspect(eng).get_table_names()))

    schema.upgrade(eng)
    assert schema.current_revision(eng) == schema.head_revision()
    assert TABLES <= set(inspect(eng).get_table_names())
    eng.dispose()


def test_empty_database_is_migrated_on_first_use_and_old_one_refused(fresh_database):
    import pytest

    eng = create_engine(fresh_database(migrate=False))
    schema.ensure_schema(eng)
    assert schema.current_revision(eng) == schema.head_revision()

    with eng.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'feedface'"))
    with pytest.raises(schema.SchemaOutdated, match="feedface"):
        schema.ensure_schema(eng)
    eng.dispose()


def test_models_match_migrations(engine):
    """Table classes and migrations agree: autogenerate finds nothing to add."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    import db.models  # noqa: F401

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
