"""reproduce: run requests, runs, reproduced cells/outputs/images, and Procrastinate's job queue

Revision ID: 0005_reproduce
Revises: 0003_understand

Procrastinate (the durable job queue of `nbatlas reproduce` / `nbatlas worker`) ships its schema
as SQL; it is applied here, in its own PostgreSQL schema ``procrastinate`` so its tables, types and
functions stay apart from nbatlas's (the workers connect with ``search_path=procrastinate,public``).
A later Procrastinate release with schema changes needs a migration applying its
``procrastinate/sql/migrations/*.sql`` the same way.
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0005_reproduce"
down_revision = "0003_understand"
branch_labels = None
depends_on = None

PROCRASTINATE_SCHEMA = "procrastinate"


def _apply_procrastinate_schema() -> None:
    from procrastinate.schema import SchemaManager

    bind = op.get_bind()
    previous = bind.exec_driver_sql("SHOW search_path").scalar()
    bind.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {PROCRASTINATE_SCHEMA}")
    bind.exec_driver_sql(f"SET LOCAL search_path TO {PROCRASTINATE_SCHEMA}, public")
    # SQLAlchemy passes (empty) parameters, so psycopg reads % as a placeholder: double them,
    # as Procrastinate's own SchemaManager.apply_schema does
    bind.exec_driver_sql(SchemaManager.get_schema().replace("%", "%%"))
    # the migrations after this one run in the same transaction: give them their search_path back
    bind.execute(sa.text("SELECT set_config('search_path', :path, true)"), {"path": previous})


def upgrade() -> None:
    op.create_table(
        "run_request",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("backend", sa.Text(), nullable=False),
        sa.Column("image", sa.Text(), nullable=False),
        sa.Column("timeout_s", sa.Double(), nullable=False),
        sa.Column("limits", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("data_dir", sa.Text(), nullable=True),
        sa.Column("selection", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("n_notebooks", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "run",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("request_id", sa.BigInteger(), nullable=False),
        sa.Column("notebook_id", sa.BigInteger(), nullable=False),
        sa.Column("backend", sa.Text(), nullable=False),
        sa.Column("image", sa.Text(), nullable=True),
        sa.Column("image_digest", sa.Text(), nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("ename", sa.Text(), nullable=True),
        sa.Column("evalue", sa.Text(), nullable=True),
        sa.Column("traceback", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("failing_cell_position", sa.Integer(), nullable=True),
        sa.Column("failure_class", sa.Text(), nullable=True),
        sa.Column("failure_detail", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("wall_s", sa.Double(), nullable=True),
        sa.Column("run_s", sa.Double(), nullable=True),
        sa.Column("kernel_startup_s", sa.Double(), nullable=True),
        sa.Column("overhead_s", sa.Double(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("oom_killed", sa.Boolean(), nullable=False),
        sa.Column("timed_out", sa.Boolean(), nullable=False),
        sa.Column("output_truncated", sa.Boolean(), nullable=False),
        sa.Column("output_bytes", sa.BigInteger(), nullable=True),
        sa.Column("n_code_cells", sa.Integer(), nullable=False),
        sa.Column("n_cells_run", sa.Integer(), nullable=False),
        sa.Column("n_cells_ok", sa.Integer(), nullable=False),
        sa.Column("environment", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("log_tail", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("ran_without_error", sa.Boolean(), nullable=False),
        sa.Column("same_results", sa.Boolean(), nullable=True),
        sa.Column("same_results_ignoring_images", sa.Boolean(), nullable=True),
        sa.Column("same_plots", sa.Boolean(), nullable=True),
        sa.Column("n_cells_compared", sa.Integer(), nullable=False),
        sa.Column("n_cells_same", sa.Integer(), nullable=False),
        sa.Column("n_images_compared", sa.Integer(), nullable=False),
        sa.Column("n_images_same", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["notebook_id"], ["notebook.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["request_id"], ["run_request.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id", "notebook_id", name="uq_run_request_notebook"),
    )
    op.create_index("ix_run_failure_class", "run", ["failure_class"], unique=False)
    op.create_index("ix_run_notebook", "run", ["notebook_id"], unique=False)
    op.create_index("ix_run_request_status", "run", ["request_id", "status"], unique=False)
    op.create_index(op.f("ix_run_status"), "run", ["status"], unique=False)
    op.create_table(
        "run_cell",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("cell_id", sa.BigInteger(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("duration_s", sa.Double(), nullable=True),
        sa.Column("execution_count", sa.Integer(), nullable=True),
        sa.Column("truncated_bytes", sa.BigInteger(), nullable=False),
        sa.Column("comparison", sa.Text(), nullable=True),
        sa.Column("text_same", sa.Boolean(), nullable=True),
        sa.Column("images_same", sa.Boolean(), nullable=True),
        sa.Column("n_images_original", sa.Integer(), nullable=False),
        sa.Column("n_images_reproduced", sa.Integer(), nullable=False),
        sa.Column("max_phash_distance", sa.Integer(), nullable=True),
        sa.Column("max_pixel_diff", sa.Double(), nullable=True),
        sa.Column("difference", sa.Text(), nullable=True),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.ForeignKeyConstraint(["cell_id"], ["cell.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "position"),
    )
    op.create_index("ix_run_cell_cell", "run_cell", ["cell_id"], unique=False)
    op.create_table(
        "run_output",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("run_cell_id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("output_type", sa.Text(), nullable=False),
        sa.Column("mime_types", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("execution_count", sa.Integer(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("ename", sa.Text(), nullable=True),
        sa.Column("evalue", sa.Text(), nullable=True),
        sa.Column("traceback", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("extra", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.ForeignKeyConstraint(["run_cell_id"], ["run_cell.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_cell_id", "position"),
    )
    op.create_index("ix_run_output_run", "run_output", ["run_id"], unique=False)
    op.create_table(
        "run_output_image",
        sa.Column("run_output_id", sa.BigInteger(), nullable=False),
        sa.Column("mime", sa.Text(), nullable=False),
        sa.Column("image_sha256", sa.CHAR(length=64), nullable=False),
        sa.Column("b64_layout", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["image_sha256"], ["image.sha256"]),
        sa.ForeignKeyConstraint(["run_output_id"], ["run_output.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_output_id", "mime"),
    )
    op.create_index(op.f("ix_run_output_image_image_sha256"), "run_output_image", ["image_sha256"], unique=False)
    _apply_procrastinate_schema()


def downgrade() -> None:
    op.execute(f"DROP SCHEMA IF EXISTS {PROCRASTINATE_SCHEMA} CASCADE")
    op.drop_index(op.f("ix_run_output_image_image_sha256"), table_name="run_output_image")
    op.drop_table("run_output_image")
    op.drop_index("ix_run_output_run", table_name="run_output")
    op.drop_table("run_output")
    op.drop_index("ix_run_cell_cell", table_name="run_cell")
    op.drop_table("run_cell")
    op.drop_index(op.f("ix_run_status"), table_name="run")
    op.drop_index("ix_run_request_status", table_name="run")
    op.drop_index("ix_run_notebook", table_name="run")
    op.drop_index("ix_run_failure_class", table_name="run")
    op.drop_table("run")
    op.drop_table("run_request")
