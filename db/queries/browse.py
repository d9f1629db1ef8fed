"""Reading the corpus a page at a time: keyset pages of the root lists, and batch loaders.

Pages are keyset pages: ``WHERE key > :after ORDER BY key LIMIT first + 1`` (the extra row tells the
caller whether there is a next page), so page 1,000 costs what page 1 costs and a row inserted
meanwhile never shifts the pages. Loaders take many parent ids at once and answer with one
statement, which is what keeps a GraphQL page of 100 notebooks with their cells, outputs and images
at a handful of statements. Rows come back as SQLAlchemy ``Row``s; nothing here knows about GraphQL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import CHAR, BigInteger, Text
from sqlmodel import Session

from db.queries.filters import (
    CellFilter,
    ImageFilter,
    NotebookFilter,
    OutputFilter,
    cell_t,
    image_t,
    notebook_t,
    output_t,
    source_t,
)

NOTEBOOK_COLUMNS = (
    "id", "sha256", "size_bytes", "nbformat", "nbformat_minor", "original_nbformat", "kernel_name",
    "language", "metadata", "n_cells", "n_outputs", "n_image_outputs", "ingested_at",
)
CELL_COLUMNS = (
    "id", "notebook_id", "position", "cell_type", "cell_key", "source", "execution_count", "metadata",
    "attachments",
)
OUTPUT_COLUMNS = (
    "id", "cell_id", "notebook_id", "position", "output_type", "mime_types", "data", "metadata",
    "execution_count", "name", "text", "ename", "evalue", "traceback",
)
IMAGE_COLUMNS = ("sha256", "mime", "size_bytes", "width", "height")
SOURCE_COLUMNS = ("id", "notebook_id", "kind", "location", "member", "fetched_at", "metadata")


def _cols(table, names: Sequence[str]):
    return [table.c[name] for name in names]


def _sql_cols(alias: str, names: Sequence[str]) -> str:
    return ", ".join(f"{alias}.{name}" for name in names)


_IDS = bindparam("ids", type_=ARRAY(BigInteger))
# CHAR(64), like the column: compared with text[] the sha256 indexes would not be used
_SHAS = bindparam("ids", type_=ARRAY(CHAR(64)))


# --- root pages ---------------------------------------------------------------------------------

def notebook_page(
    *, session: Session, filter: NotebookFilter | None = None, first: int, after: int | None = None
) -> list[Row]:
    q = select(*_cols(notebook_t, NOTEBOOK_COLUMNS)).where(*(filter.where() if filter else []))
    if after is not None:
        q = q.where(notebook_t.c.id > after)
    return list(session.execute(q.order_by(notebook_t.c.id).limit(first + 1)))


def cell_page(*, session: Session, filter: CellFilter | None = None, first: int, after: int | None = None) -> list[Row]:
    q = select(*_cols(cell_t, CELL_COLUMNS)).where(*(filter.where() if filter else []))
    if after is not None:
        q = q.where(cell_t.c.id > after)
    return list(session.execute(q.order_by(cell_t.c.id).limit(first + 1)))


def output_page(
    *, session: Session, filter: OutputFilter | None = None, first: int, after: int | None = None
) -> list[Row]:
    q = select(*_cols(output_t, OUTPUT_COLUMNS)).where(*(filter.where() if filter else []))
    if after is not None:
        q = q.where(output_t.c.id > after)
    return list(session.execute(q.order_by(output_t.c.id).limit(first + 1)))


def image_page(*, session: Session, filter: ImageFilter | None = None, first: int, after: str | None = None) -> list[Row]:
    q = select(*_cols(image_t, IMAGE_COLUMNS)).where(*(filter.where() if filter else []))
    if after is not None:
        q = q.where(image_t.c.sha256 > after)
    return list(session.execute(q.order_by(image_t.c.sha256).limit(first + 1)))


def count(*, session: Session, table: str, filter: Any = None) -> int:
    """How many rows of ``table`` ('notebook', 'cell', 'output', 'image') match ``filter``."""
    t = {"notebook": notebook_t, "cell": cell_t, "output": output_t, "image": image_t}[table]
    q = select(func.count()).select_from(t).where(*(filter.where() if filter else []))
    return int(session.execute(q).scalar_one())


# --- by id ----------------------------------------------------------------------------------------

_BY_ID = {
    "notebook": text(f"SELECT {_sql_cols('n', NOTEBOOK_COLUMNS)} FROM notebook n WHERE n.id = ANY(:ids)").bindparams(_IDS),
    "cell": text(f"SELECT {_sql_cols('c', CELL_COLUMNS)} FROM cell c WHERE c.id = ANY(:ids)").bindparams(_IDS),
    "output": text(f"SELECT {_sql_cols('o', OUTPUT_COLUMNS)} FROM output o WHERE o.id = ANY(:ids)").bindparams(_IDS),
    "source": text(f"SELECT {_sql_cols('s', SOURCE_COLUMNS)} FROM source s WHERE s.id = ANY(:ids)").bindparams(_IDS),
}


def _by_id(session: Session, table: str, ids: Sequence[int]) -> dict[int, Row]:
    return {row.id: row for row in session.execute(_BY_ID[table], {"ids": list(ids)})}


def notebooks_by_id(*, session: Session, ids: Sequence[int]) -> dict[int, Row]:
    return _by_id(session, "notebook", ids)


def cells_by_id(*, session: Session, ids: Sequence[int]) -> dict[int, Row]:
    return _by_id(session, "cell", ids)


def outputs_by_id(*, session: Session, ids: Sequence[int]) -> dict[int, Row]:
    return _by_id(session, "output", ids)


def sources_by_id(*, session: Session, ids: Sequence[int]) -> dict[int, Row]:
    return _by_id(session, "source", ids)


_IMAGES_BY_SHA = text(f"SELECT {_sql_cols('i', IMAGE_COLUMNS)} FROM image i WHERE i.sha256 = ANY(:ids)").bindparams(_SHAS)


def images_by_sha256(*, session: Session, ids: Sequence[str]) -> dict[str, Row]:
    return {row.sha256: row for row in session.execute(_IMAGES_BY_SHA, {"ids": [s.lower() for s in ids]})}


def notebook_ids_by_sha256(*, session: Session, ids: Sequence[str]) -> dict[str, int]:
    q = select(notebook_t.c.sha256, notebook_t.c.id).where(notebook_t.c.sha256.in_([s.lower() for s in ids]))
    return {sha: id_ for sha, id_ in session.execute(q)}


# --- children of many parents at once -------------------------------------------------------------

def _grouped(rows, key: str) -> dict[Any, list[Row]]:
    out: dict[Any, list[Row]] = defaultdict(list)
    for row in rows:
        out[getattr(row, key)].append(row)
    return out


# one index probe per notebook on (notebook_id, position), instead of sorting all their cells
_CELLS_OF_NOTEBOOKS = text(
    f"""
    SELECT {_sql_cols('c', CELL_COLUMNS)}
    FROM unnest(:ids) AS k(id)
    CROSS JOIN LATERAL (
        SELECT {_sql_cols('cell', CELL_COLUMNS)} FROM cell
        WHERE cell.notebook_id = k.id AND cell.position > :after
          AND (CAST(:cell_types AS text[]) IS NULL OR cell.cell_type = ANY(:cell_types))
        ORDER BY cell.position
        LIMIT :limit
    ) c
    """
).bindparams(_IDS, bindparam("cell_types", type_=ARRAY(Text)))


def cells_of_notebooks(
    *,
    session: Session,
    ids: Sequence[int],
    first: int,
    after_position: int | None = None,
    cell_types: Sequence[str] | None = None,
) -> dict[int, list[Row]]:
    """Up to ``first + 1`` cells of each notebook, in notebook order, after ``after_position``."""
    rows = session.execute(
        _CELLS_OF_NOTEBOOKS,
        {
            "ids": list(ids),
            "after": -1 if after_position is None else after_position,
            "limit": first + 1,
            "cell_types": list(cell_types) if cell_types else None,
        },
    )
    return _grouped(rows, "notebook_id")


_OUTPUTS_OF_CELLS = text(
    f"SELECT {_sql_cols('o', OUTPUT_COLUMNS)} FROM output o WHERE o.cell_id = ANY(:ids) ORDER BY o.cell_id, o.position"
).bindparams(_IDS)


def outputs_of_cells(*, session: Session, ids: Sequence[int]) -> dict[int, list[Row]]:
    return _grouped(session.execute(_OUTPUTS_OF_CELLS, {"ids": list(ids)}), "cell_id")


_IMAGES_OF_OUTPUTS = text(
    f"""
    SELECT oi.output_id, {_sql_cols('i', IMAGE_COLUMNS)}
    FROM output_image oi JOIN image i ON i.sha256 = oi.image_sha256
    WHERE oi.output_id = ANY(:ids)
    ORDER BY oi.output_id, oi.mime
    """
).bindparams(_IDS)


def images_of_outputs(*, session: Session, ids: Sequence[int]) -> dict[int, list[Row]]:
    return _grouped(session.execute(_IMAGES_OF_OUTPUTS, {"ids": list(ids)}), "output_id")


_SOURCES_OF_NOTEBOOKS = text(
    f"SELECT {_sql_cols('s', SOURCE_COLUMNS)} FROM source s WHERE s.notebook_id = ANY(:ids) ORDER BY s.notebook_id, s.id"
).bindparams(_IDS)


def sources_of_notebooks(*, session: Session, ids: Sequence[int]) -> dict[int, list[Row]]:
    return _grouped(session.execute(_SOURCES_OF_NOTEBOOKS, {"ids": list(ids)}), "notebook_id")


_IMAGES_OF_NOTEBOOKS = text(
    f"""
    SELECT k.id AS notebook_id, {_sql_cols('x', IMAGE_COLUMNS)}
    FROM unnest(:ids) AS k(id)
    CROSS JOIN LATERAL (
        SELECT {_sql_cols('i', IMAGE_COLUMNS)}
        FROM output o
        JOIN output_image oi ON oi.output_id = o.id
        JOIN image i ON i.sha256 = oi.image_sha256
        WHERE o.notebook_id = k.id
        ORDER BY o.id, oi.mime
        LIMIT :limit
    ) x
    """
).bindparams(_IDS)


def images_of_notebooks(*, session: Session, ids: Sequence[int], first: int) -> dict[int, list[Row]]:
    """The first ``first`` images each notebook drew, in notebook order (a repeated plot repeats)."""
    return _grouped(session.execute(_IMAGES_OF_NOTEBOOKS, {"ids": list(ids), "limit": first}), "notebook_id")


_OUTPUTS_OF_IMAGES = text(
    f"""
    SELECT k.sha256 AS image_sha256, {_sql_cols('x', OUTPUT_COLUMNS)}
    FROM unnest(:ids) AS k(sha256)
    CROSS JOIN LATERAL (
        SELECT {_sql_cols('o', OUTPUT_COLUMNS)}
        FROM output_image oi JOIN output o ON o.id = oi.output_id
        WHERE oi.image_sha256 = k.sha256
        ORDER BY o.id
        LIMIT :limit
    ) x
    """
).bindparams(_SHAS)


def outputs_of_images(*, session: Session, ids: Sequence[str], first: int) -> dict[str, list[Row]]:
    """The first ``first`` outputs that show each image: where the plot was drawn."""
    return _grouped(session.execute(_OUTPUTS_OF_IMAGES, {"ids": list(ids), "limit": first}), "image_sha256")


def ping(*, session: Session) -> str | None:
    """The database's schema revision (a round trip that proves it answers)."""
    return session.execute(text("SELECT version_num FROM alembic_version")).scalar()
