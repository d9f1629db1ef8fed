"""embeddings: code/text/image vector tables (model + version per row), model registry, image pHash

Revision ID: 0006_embeddings
Revises: 0004_kaggle

The HNSW indexes are partial, one per (model, version), since pgvector needs a fixed dimension
per index; ``nbatlas embed`` creates each when its model first gets vectors (see
db/models/embedding.py). Downgrading drops them with their tables.
"""
from alembic import op
import sqlalchemy as sa

from db.models.embedding import BIT, HALFVEC

revision = "0006_embeddings"
down_revision = "0004_kaggle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "embedding_model",
        sa.Column("space", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.Column("index_name", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("space", "name", "version"),
    )
    for table in ("code_embedding", "text_embedding"):
        op.create_table(
            table,
            sa.Column("cell_id", sa.BigInteger(), nullable=False),
            sa.Column("model", sa.Text(), nullable=False),
            sa.Column("model_version", sa.Text(), nullable=False),
            sa.Column("embedding", HALFVEC(), nullable=True),
            sa.ForeignKeyConstraint(["cell_id"], ["cell.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("cell_id", "model", "model_version"),
        )
    op.create_table(
        "image_embedding",
        sa.Column("image_sha256", sa.CHAR(length=64), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("model_version", sa.Text(), nullable=False),
        sa.Column("embedding", HALFVEC(), nullable=True),
        sa.ForeignKeyConstraint(["image_sha256"], ["image.sha256"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_sha256", "model", "model_version"),
    )
    op.create_table(
        "image_phash",
        sa.Column("image_sha256", sa.CHAR(length=64), nullable=False),
        sa.Column("phash", BIT(64), nullable=True),
        sa.ForeignKeyConstraint(["image_sha256"], ["image.sha256"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_sha256"),
    )


def downgrade() -> None:
    op.drop_table("image_phash")
    op.drop_table("image_embedding")
    op.drop_table("text_embedding")
    op.drop_table("code_embedding")
    op.drop_table("embedding_model")
