"""search: cell.search_vector (generated tsvector) with GIN indexes, keyset indexes for the API

Revision ID: 0002_search
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0002_search"
down_revision = "0001"
branch_labels = None
depends_on = None

# as db/models/search_indexes.py declares it: markdown with English stemming, code with 'simple';
# only the first 262144 characters (a tsvector holds at most 1 MB)
SEARCH_VECTOR_SQL = (
    "CASE cell_type"
    " WHEN 'markdown' THEN to_tsvector('english'::regconfig, left(source, 262144))"
    " WHEN 'code' THEN to_tsvector('simple'::regconfig, left(source, 262144))"
    " END"
)


def upgrade() -> None:
    op.add_column(
        "cell",
        sa.Column("search_vector", postgresql.TSVECTOR(), sa.Computed(SEARCH_VECTOR_SQL, persisted=True)),
    )
    for kind in ("markdown", "code"):
        op.create_index(
            f"ix_cell_{kind}_fts", "cell", ["search_vector"],
            postgresql_using="gin", postgresql_where=sa.text(f"cell_type = '{kind}'"),
        )
    op.create_index("ix_cell_type_id", "cell", ["cell_type", "id"])
    op.create_index("ix_image_mime_sha256", "image", ["mime", "sha256"])
    op.create_index("ix_notebook_language_id", "notebook", ["language", "id"])


def downgrade() -> None:
    op.drop_index("ix_notebook_language_id", table_name="notebook")
    op.drop_index("ix_image_mime_sha256", table_name="image")
    op.drop_index("ix_cell_type_id", table_name="cell")
    for kind in ("code", "markdown"):
        op.drop_index(f"ix_cell_{kind}_fts", table_name="cell")
    op.drop_column("cell", "search_vector")
