"""public_role: the public read-only API's own role, SELECT-only (db.roles)

Revision ID: 0009_public_role
Revises: 0007_study

The role's name and password come from NBATLAS_PUBLIC_ROLE / NBATLAS_PUBLIC_ROLE_PASSWORD when the
migration runs (docker compose passes them to the private api service, which migrates on first
start). Without a password the role is NOLOGIN: it exists and holds its grants, ready for
`ALTER ROLE ... LOGIN PASSWORD ...` when a public service is wanted.
"""
from alembic import op

from db.roles import ensure_public_role, public_role_from_env, revoke_public_role

revision = "0009_public_role"
down_revision = "0007_study"
branch_labels = None
depends_on = None


def upgrade() -> None:
    name, password = public_role_from_env()
    ensure_public_role(op.get_bind(), name, password)


def downgrade() -> None:
    name, _ = public_role_from_env()
    revoke_public_role(op.get_bind(), name)
