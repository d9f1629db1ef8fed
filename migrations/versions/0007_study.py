"""study: samples and their items, codebooks and codes, annotators (token hashes), annotations

Revision ID: 0007_study
Revises: 0003a_ingest_storage

The number is the issue's; the chain is linear, so it follows whatever was head when it was written.
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0007_study"
down_revision = "0003a_ingest_storage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "annotator",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.CHAR(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "codebook",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "code",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("codebook_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("position", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["codebook_id"], ["codebook.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("codebook_id", "key", name="uq_code_key"),
        sa.UniqueConstraint("codebook_id", "name", name="uq_code_name"),
    )
    op.create_table(
        "sample",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("unit", sa.Text(), nullable=False),
        sa.Column("spec", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("command", sa.Text(), server_default="", nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("population", sa.Integer(), server_default="0", nullable=False),
        sa.Column("strata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("n_items", sa.Integer(), server_default="0", nullable=False),
        sa.Column("codebook_id", sa.BigInteger(), nullable=True),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["codebook_id"], ["codebook.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["created_by"], ["annotator.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "sample_item",
        sa.Column("sample_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("image_sha256", sa.CHAR(length=64), nullable=True),
        sa.Column("notebook_id", sa.BigInteger(), nullable=True),
        sa.Column("stratum", sa.Text(), nullable=True),
        sa.CheckConstraint("num_nonnulls(image_sha256, notebook_id) = 1", name="ck_sample_item_one_unit"),
        sa.ForeignKeyConstraint(["image_sha256"], ["image.sha256"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["notebook_id"], ["notebook.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["sample_id"], ["sample.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("sample_id", "position"),
        sa.UniqueConstraint("sample_id", "image_sha256", name="uq_sample_item_image"),
        sa.UniqueConstraint("sample_id", "notebook_id", name="uq_sample_item_notebook"),
    )
    op.create_index("ix_sample_item_image", "sample_item", ["image_sha256"])
    op.create_index("ix_sample_item_notebook", "sample_item", ["notebook_id"])
    op.create_table(
        "annotation",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("code_id", sa.BigInteger(), nullable=False),
        sa.Column("annotator_id", sa.BigInteger(), nullable=False),
        sa.Column("target_kind", sa.Text(), nullable=False),
        sa.Column("image_sha256", sa.CHAR(length=64), nullable=True),
        sa.Column("cell_id", sa.BigInteger(), nullable=True),
        sa.Column("notebook_id", sa.BigInteger(), nullable=True),
        sa.Column("sample_id", sa.BigInteger(), nullable=True),
        sa.Column("memo", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(target_kind = 'image' AND image_sha256 IS NOT NULL AND cell_id IS NULL AND notebook_id IS NULL) OR "
            "(target_kind = 'cell' AND cell_id IS NOT NULL AND notebook_id IS NOT NULL AND image_sha256 IS NULL) OR "
            "(target_kind = 'notebook' AND notebook_id IS NOT NULL AND cell_id IS NULL AND image_sha256 IS NULL)",
            name="ck_annotation_target",
        ),
        sa.ForeignKeyConstraint(["annotator_id"], ["annotator.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["cell_id"], ["cell.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["code_id"], ["code.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["image_sha256"], ["image.sha256"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["notebook_id"], ["notebook.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["sample_id"], ["sample.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_annotation_cell", "annotation", ["cell_id"])
    op.create_index("ix_annotation_code", "annotation", ["code_id"])
    op.create_index("ix_annotation_image", "annotation", ["image_sha256"])
    op.create_index("ix_annotation_notebook", "annotation", ["notebook_id"])
    op.create_index(
        "uq_annotation", "annotation", ["annotator_id", "code_id", "image_sha256", "cell_id", "notebook_id"],
        unique=True, postgresql_nulls_not_distinct=True,
    )


def downgrade() -> None:
    op.drop_table("annotation")
    op.drop_table("sample_item")
    op.drop_table("sample")
    op.drop_table("code")
    op.drop_table("codebook")
    op.drop_table("annotator")
