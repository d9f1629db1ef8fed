"""search: full-text indexes over markdown and code cells, keyset indexes for the API

Revision ID: 0002_search
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = "0002_search"
down_revision = "0001"
branch_labels = None
depends_on = None

# must match db/models/search_indexes.py character for character: queries use an expression
# index only when they repeat its expression
FTS_MAX_CHARS = 262144


def upgrade() -> None:
    op.create_index(
        "ix_cell_markdown_fts",
        "cell",
        [sa.text(f"to_tsvector('english'::regconfig, left(source, {FTS_MAX_CHARS}))")],
        postgresql_using="gin",
        postgresql_where=sa.text("cell_type = 'markdown'"),
    )
    op.create_index(
        "ix_cell_code_fts",
        "cell",
        [sa.text(f"to_tsvector('simple'::regconfig, left(source, {FTS_MAX_CHARS}))")],
        postgresql_using="gin",
        postgresql_where=sa.text("cell_type = 'code'"),
    )
    op.create_index("ix_cell_type_id", "cell", ["cell_type", "id"])
    op.create_index("ix_image_mime_sha256", "image", ["mime", "sha256"])
    op.create_index("ix_notebook_language_id", "notebook", ["language", "id"])


def downgrade() -> None:
    op.drop_index("ix_notebook_language_id", table_name="notebook")
    op.drop_index("ix_image_mime_sha256", table_name="image")
    op.drop_index("ix_cell_type_id", table_name="cell")
    op.drop_index("ix_cell_code_fts", table_name="cell")
    op.drop_index("ix_cell_markdown_fts", table_name="cell")
