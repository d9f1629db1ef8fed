"""The owner's edits to the corpus (private API only)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import BigInteger
from sqlmodel import Session

_DELETE = text(
    """
    WITH gone AS (DELETE FROM notebook WHERE id = ANY(:ids) RETURNING id)
    SELECT id FROM gone
    """
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))

# images are shared between notebooks: one goes only when no output shows it any more
_ORPHAN_IMAGES = text(
    "DELETE FROM image i WHERE NOT EXISTS (SELECT 1 FROM output_image oi WHERE oi.image_sha256 = i.sha256)"
)


def delete_notebooks(*, session: Session, ids: Sequence[int]) -> list[int]:
    """Remove notebooks with their cells, outputs and sources, and the images nothing else shows."""
    deleted = [row.id for row in session.execute(_DELETE, {"ids": list(ids)})]
    if deleted:
        session.execute(_ORPHAN_IMAGES)
    return deleted
