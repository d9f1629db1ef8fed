"""schema v1: notebooks, cells, outputs, images, provenance, problems

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 13:44:58.303177
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # pgvector for the embeddings, pg_trgm for substring search over code and markdown
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table('image',
    sa.Column('sha256', sa.CHAR(length=64), nullable=False),
    sa.Column('mime', sa.Text(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=True),
    sa.Column('svg', sa.Text(), nullable=True),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sha256')
    )
    op.create_index(op.f('ix_image_mime'), 'image', ['mime'], unique=False)
    op.create_table('ingest_run',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('args', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('files_seen', sa.Integer(), nullable=False),
    sa.Column('notebooks_added', sa.Integer(), nullable=False),
    sa.Column('sources_added', sa.Integer(), nullable=False),
    sa.Column('problems', sa.Integer(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('notebook',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('sha256', sa.CHAR(length=64), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('nbformat', sa.Integer(), nullable=False),
    sa.Column('nbformat_minor', sa.Integer(), nullable=False),
    sa.Column('original_nbformat', sa.Integer(), nullable=False),
    sa.Column('kernel_name', sa.Text(), nullable=True),
    sa.Column('language', sa.Text(), nullable=True),
    sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('n_cells', sa.Integer(), nullable=False),
    sa.Column('n_outputs', sa.Integer(), nullable=False),
    sa.Column('n_image_outputs', sa.Integer(), nullable=False),
    sa.Column('extra', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('text_escape', sa.Text(), nullable=True),
    sa.Column('run_id', sa.BigInteger(), nullable=True),
    sa.Column('ingested_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['ingest_run.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sha256')
    )
    op.create_index(op.f('ix_notebook_language'), 'notebook', ['language'], unique=False)
    op.create_index(op.f('ix_notebook_run_id'), 'notebook', ['run_id'], unique=False)
    op.create_table('cell',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('notebook_id', sa.BigInteger(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('cell_type', sa.Text(), nullable=False),
    sa.Column('cell_key', sa.Text(), nullable=True),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('execution_count', sa.Integer(), nullable=True),
    sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('attachments', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('extra', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.ForeignKeyConstraint(['notebook_id'], ['notebook.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('notebook_id', 'position')
    )
    op.create_index('ix_cell_type', 'cell', ['cell_type'], unique=False)
    op.create_table('problem',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('run_id', sa.BigInteger(), nullable=True),
    sa.Column('location', sa.Text(), nullable=False),
    sa.Column('member', sa.Text(), server_default='', nullable=False),
    sa.Column('file_sha256', sa.CHAR(length=64), nullable=True),
    sa.Column('notebook_id', sa.BigInteger(), nullable=True),
    sa.Column('stage', sa.Text(), nullable=False),
    sa.Column('severity', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('found_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['notebook_id'], ['notebook.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['ingest_run.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_problem_notebook_id'), 'problem', ['notebook_id'], unique=False)
    op.create_index(op.f('ix_problem_run_id'), 'problem', ['run_id'], unique=False)
    op.create_index('uq_problem', 'problem', ['location', 'member', 'file_sha256', 'stage', 'severity'], unique=True, postgresql_nulls_not_distinct=True)
    op.create_table('source',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('notebook_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('location', sa.Text(), nullable=False),
    sa.Column('member', sa.Text(), server_default='', nullable=False),
    sa.Column('fetched_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('run_id', sa.BigInteger(), nullable=True),
    sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.ForeignKeyConstraint(['notebook_id'], ['notebook.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['ingest_run.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('notebook_id', 'kind', 'location', 'member', name='uq_source_place')
    )
    op.create_index(op.f('ix_source_kind'), 'source', ['kind'], unique=False)
    op.create_index(op.f('ix_source_notebook_id'), 'source', ['notebook_id'], unique=False)
    op.create_index(op.f('ix_source_run_id'), 'source', ['run_id'], unique=False)
    op.create_table('output',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('cell_id', sa.BigInteger(), nullable=False),
    sa.Column('notebook_id', sa.BigInteger(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('output_type', sa.Text(), nullable=False),
    sa.Column('mime_types', postgresql.ARRAY(sa.Text()), nullable=False),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('execution_count', sa.Integer(), nullable=True),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('ename', sa.Text(), nullable=True),
    sa.Column('evalue', sa.Text(), nullable=True),
    sa.Column('traceback', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('extra', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.ForeignKeyConstraint(['cell_id'], ['cell.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['notebook_id'], ['notebook.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('cell_id', 'position')
    )
    op.create_index('ix_output_notebook', 'output', ['notebook_id'], unique=False)
    op.create_table('output_image',
    sa.Column('output_id', sa.BigInteger(), nullable=False),
    sa.Column('mime', sa.Text(), nullable=False),
    sa.Column('image_sha256', sa.CHAR(length=64), nullable=False),
    sa.Column('b64_layout', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['image_sha256'], ['image.sha256'], ),
    sa.ForeignKeyConstraint(['output_id'], ['output.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('output_id', 'mime')
    )
    op.create_index(op.f('ix_output_image_image_sha256'), 'output_image', ['image_sha256'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_output_image_image_sha256'), table_name='output_image')
    op.drop_table('output_image')
    op.drop_index('ix_output_notebook', table_name='output')
    op.drop_table('output')
    op.drop_index(op.f('ix_source_run_id'), table_name='source')
    op.drop_index(op.f('ix_source_notebook_id'), table_name='source')
    op.drop_index(op.f('ix_source_kind'), table_name='source')
    op.drop_table('source')
    op.drop_index('uq_problem', table_name='problem', postgresql_nulls_not_distinct=True)
    op.drop_index(op.f('ix_problem_run_id'), table_name='problem')
    op.drop_index(op.f('ix_problem_notebook_id'), table_name='problem')
    op.drop_table('problem')
    op.drop_index('ix_cell_type', table_name='cell')
    op.drop_table('cell')
    op.drop_index(op.f('ix_notebook_run_id'), table_name='notebook')
    op.drop_index(op.f('ix_notebook_language'), table_name='notebook')
    op.drop_table('notebook')
    op.drop_table('ingest_run')
    op.drop_index(op.f('ix_image_mime'), table_name='image')
    op.drop_table('image')
    op.execute("DROP EXTENSION IF EXISTS pg_trgm")
    op.execute("DROP EXTENSION IF EXISTS vector")
