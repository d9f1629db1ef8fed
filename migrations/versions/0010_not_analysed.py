"""not_analysed: a notebook whose code was not analysed (another kernel language: Julia, R) stores no
stage, plot kind or library, instead of stage "other", kind "other" and no libraries

Revision ID: 0010_not_analysed
Revises: 0009_public_role

``notebook_analysis.libraries`` becomes nullable (NULL: not analysed, which the API shows as
``notebook.libraries: null``). Rows stored before are rewritten here, so no re-analysis is needed:
the notebooks the analyser marked "not analysed: the kernel language is ..." lose their cell_analysis
rows (``cell.analysis`` and ``cell.stage`` read null), their figures keep their rows with no plot kind,
evidence or plotting call (``plotCounts`` counts them under a null kind and stage, apart from the
analysed figures of kind "other"), and their libraries become NULL.

Downgrading makes the column NOT NULL again (NULL becomes '{}'); the deleted cell rows come back
with ``nbatlas analyze --rerun`` under the older code.
"""
from alembic import op

revision = "0010_not_analysed"
down_revision = "0009_public_role"
branch_labels = None
depends_on = None

# exactly the notebooks the analyser (ingest/understand/analyzer.py) did not read: the message it
# gave each of their code cells
NOT_ANALYSED = (
    "SELECT DISTINCT notebook_id FROM cell_analysis WHERE NOT parsed AND parse_error LIKE 'not analysed: the kernel language is %'"
)


def upgrade() -> None:
    op.alter_column("notebook_analysis", "libraries", nullable=True)
    op.execute(f"CREATE TEMP TABLE nbatlas_not_analysed AS {NOT_ANALYSED}")
    op.execute("UPDATE notebook_analysis SET libraries = NULL WHERE notebook_id IN (SELECT notebook_id FROM nbatlas_not_analysed)")
    op.execute("UPDATE output_plot SET plot_kinds = '{}', evidence = NULL, plot_calls = '{}' "
               "WHERE notebook_id IN (SELECT notebook_id FROM nbatlas_not_analysed)")
    op.execute("DELETE FROM cell_analysis WHERE notebook_id IN (SELECT notebook_id FROM nbatlas_not_analysed)")
    op.execute("DROP TABLE nbatlas_not_analysed")


def downgrade() -> None:
    op.execute("UPDATE notebook_analysis SET libraries = '{}' WHERE libraries IS NULL")
    op.alter_column("notebook_analysis", "libraries", nullable=False)
