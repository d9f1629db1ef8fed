"""kaggle: mining runs, the listing as seen, the pull ledger, Kaggle metadata per provenance row

Revision ID: 0004_kaggle
Revises: 0002_search
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0004_kaggle"
down_revision = "0002_search"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mining_run",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("spec", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("spec_hash", sa.Text(), nullable=False),
        sa.Column("resolved", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("command", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("listed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("host", sa.Text(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("resumed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("listed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("selected", sa.Integer(), server_default="0", nullable=False),
        sa.Column("pulled", sa.Integer(), server_default="0", nullable=False),
        sa.Column("skipped", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("retries", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_mining_run_kind"), "mining_run", ["kind"], unique=False)
    op.create_index(op.f("ix_mining_run_spec_hash"), "mining_run", ["spec_hash"], unique=False)
    op.create_index(op.f("ix_mining_run_status"), "mining_run", ["status"], unique=False)

    op.create_table(
        "mining_listing",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("author", sa.Text(), nullable=True),
        sa.Column("votes", sa.Integer(), nullable=True),
        sa.Column("language", sa.Text(), nullable=True),
        sa.Column("kernel_type", sa.Text(), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("selected", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["mining_run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_mining_listing_ref"), "mining_listing", ["ref"], unique=False)
    op.create_index("uq_mining_listing", "mining_listing", ["run_id", "scope", "ref", "version"], unique=True, postgresql_nulls_not_distinct=True)

    op.create_table(
        "kaggle_pull",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("notebook_id", sa.BigInteger(), nullable=True),
        sa.Column("with_outputs", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("with_data", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["notebook_id"], ["notebook.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["run_id"], ["mining_run.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_kaggle_pull_notebook_id"), "kaggle_pull", ["notebook_id"], unique=False)
    op.create_index(op.f("ix_kaggle_pull_run_id"), "kaggle_pull", ["run_id"], unique=False)
    op.create_index(op.f("ix_kaggle_pull_status"), "kaggle_pull", ["status"], unique=False)
    op.create_index("uq_kaggle_pull", "kaggle_pull", ["ref", "version"], unique=True, postgresql_nulls_not_distinct=True)

    op.create_table(
        "kaggle_kernel",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=False),
        sa.Column("notebook_id", sa.BigInteger(), nullable=False),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("ref", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("kernel_id", sa.BigInteger(), nullable=True),
        sa.Column("kernel_version_id", sa.BigInteger(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("author", sa.Text(), nullable=True),
        sa.Column("votes", sa.Integer(), nullable=True),
        sa.Column("language", sa.Text(), nullable=True),
        sa.Column("kernel_type", sa.Text(), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("competition_sources", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("dataset_sources", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("kernel_sources", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("model_sources", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("docker_image", sa.Text(), nullable=True),
        sa.Column("machine_shape", sa.Text(), nullable=True),
        sa.Column("is_private", sa.Boolean(), nullable=True),
        sa.Column("enable_gpu", sa.Boolean(), nullable=True),
        sa.Column("enable_internet", sa.Boolean(), nullable=True),
        sa.Column("medal", sa.Integer(), nullable=True),
        sa.Column("views", sa.Integer(), nullable=True),
        sa.Column("run_time_seconds", sa.Float(), nullable=True),
        sa.Column("mining_run_id", sa.BigInteger(), nullable=True),
        sa.Column("extra", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["mining_run_id"], ["mining_run.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["notebook_id"], ["notebook.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["source_id"], ["source.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_id", name="uq_kaggle_kernel_source"),
    )
    op.create_index(op.f("ix_kaggle_kernel_notebook_id"), "kaggle_kernel", ["notebook_id"], unique=False)
    op.create_index(op.f("ix_kaggle_kernel_ref"), "kaggle_kernel", ["ref"], unique=False)
    op.create_index(op.f("ix_kaggle_kernel_author"), "kaggle_kernel", ["author"], unique=False)
    op.create_index(op.f("ix_kaggle_kernel_votes"), "kaggle_kernel", ["votes"], unique=False)
    op.create_index(op.f("ix_kaggle_kernel_kernel_version_id"), "kaggle_kernel", ["kernel_version_id"], unique=False)
    op.create_index(op.f("ix_kaggle_kernel_mining_run_id"), "kaggle_kernel", ["mining_run_id"], unique=False)
    op.create_index("ix_kaggle_kernel_competitions", "kaggle_kernel", ["competition_sources"], unique=False, postgresql_using="gin")
    op.create_index("ix_kaggle_kernel_datasets", "kaggle_kernel", ["dataset_sources"], unique=False, postgresql_using="gin")


def downgrade() -> None:
    op.drop_table("kaggle_kernel")
    op.drop_table("kaggle_pull")
    op.drop_table("mining_listing")
    op.drop_table("mining_run")
