"""ingest storage: image bytes and output bundles stored out of line without compression

Revision ID: 0003a_ingest_storage
Revises: 0005_reproduce

PNG, JPEG and GIF are compressed already: PostgreSQL's default (pglz on every TOASTed value) spent
most of the server's time of an ingest trying to compress them again, and gained nothing.
``STORAGE EXTERNAL`` keeps them out of line (as before) but skips the attempt.

The same holds, measured on the real corpus, for ``output.data`` (HTML tables, plotly/bokeh JSON,
widget state): pglz saved 6% of its 19.8 MB and cost half the server time of copying outputs.
SVG text (``image.svg``), cell sources and everything else keep the default, where compression pays.
"""

from alembic import op

revision = "0003a_ingest_storage"
down_revision = "0005_reproduce"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE image ALTER COLUMN data SET STORAGE EXTERNAL")
    op.execute("ALTER TABLE output ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.execute("ALTER TABLE output ALTER COLUMN data SET STORAGE EXTENDED")
    op.execute("ALTER TABLE image ALTER COLUMN data SET STORAGE EXTENDED")
