"""understand: per-cell code facts (imports, calls, libraries, stage), plot kinds per figure output, analysis state

Revision ID: 0003_understand
Revises: 0006_embeddings

The number is the issue's; the chain is linear, so it follows whatever was head when it was written.
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0003_understand"
down_revision = "0006_embeddings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notebook_analysis",
        sa.Column("notebook_id", sa.BigInteger(), nullable=False),
        sa.Column("analyzer_version", sa.Integer(), nullable=False),
        sa.Column("analyzed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("libraries", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("n_code_cells", sa.Integer(), nullable=False),
        sa.Column("n_unparsed_cells", sa.Integer(), nullable=False),
        sa.Column("n_visualisation_cells", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["notebook_id"], ["notebook.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("notebook_id"),
    )
    op.create_index("ix_notebook_analysis_analyzer_version", "notebook_analysis", ["analyzer_version"])
    op.create_index("ix_notebook_analysis_libraries", "notebook_analysis", ["libraries"], postgresql_using="gin")

    op.create_table(
        "cell_analysis",
        sa.Column("cell_id", sa.BigInteger(), nullable=False),
        sa.Column("notebook_id", sa.BigInteger(), nullable=False),
        sa.Column("analyzer_version", sa.Integer(), nullable=False),
        sa.Column("parsed", sa.Boolean(), nullable=False),
        sa.Column("parse_error", sa.Text(), nullable=True),
        sa.Column("ipython_syntax", sa.Boolean(), nullable=False),
        sa.Column("imports", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("calls", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("call_names", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("libraries", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("stage_evidence", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("is_visualisation", sa.Boolean(), nullable=False),
        sa.Column("plot_kinds", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(["cell_id"], ["cell.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["notebook_id"], ["notebook.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("cell_id"),
    )
    op.create_index("ix_cell_analysis_notebook_id", "cell_analysis", ["notebook_id"])
    op.create_index("ix_cell_analysis_libraries", "cell_analysis", ["libraries"], postgresql_using="gin")
    op.create_index("ix_cell_analysis_call_names", "cell_analysis", ["call_names"], postgresql_using="gin")
    op.create_index("ix_cell_analysis_plot_kinds", "cell_analysis", ["plot_kinds"], postgresql_using="gin")
    op.create_index("ix_cell_analysis_stage", "cell_analysis", ["stage", "cell_id"])

    op.create_table(
        "output_plot",
        sa.Column("output_id", sa.BigInteger(), nullable=False),
        sa.Column("mime", sa.Text(), nullable=False),
        sa.Column("cell_id", sa.BigInteger(), nullable=False),
        sa.Column("notebook_id", sa.BigInteger(), nullable=False),
        sa.Column("image_sha256", sa.CHAR(length=64), nullable=True),
        sa.Column("interactive", sa.Boolean(), nullable=False),
        sa.Column("analyzer_version", sa.Integer(), nullable=False),
        sa.Column("plot_kinds", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("evidence", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("plot_calls", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=True),
        sa.Column("context_before", sa.Text(), nullable=True),
        sa.Column("context_after", sa.Text(), nullable=True),
        sa.Column("analyzed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["output_id"], ["output.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["cell_id"], ["cell.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["notebook_id"], ["notebook.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["image_sha256"], ["image.sha256"]),
        sa.PrimaryKeyConstraint("output_id", "mime"),
    )
    op.create_index("ix_output_plot_kinds", "output_plot", ["plot_kinds"], postgresql_using="gin")
    op.create_index("ix_output_plot_cell", "output_plot", ["cell_id"])
    op.create_index("ix_output_plot_notebook", "output_plot", ["notebook_id"])
    op.create_index("ix_output_plot_image", "output_plot", ["image_sha256"])


def downgrade() -> None:
    op.drop_table("output_plot")
    op.drop_table("cell_analysis")
    op.drop_table("notebook_analysis")
