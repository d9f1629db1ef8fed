"""Indexes the API needs (full-text search, keyset paging), declared here so models and migrations agree.

The full-text indexes are expression indexes: a query uses them only when it repeats the indexed
expression exactly, so ``db.queries.search`` builds its ``to_tsvector`` from the same constants.
Markdown is prose (English stemming); code is identifiers, where stemming only hurts ('simple').
Only the first ``FTS_MAX_CHARS`` characters are indexed: a tsvector is limited to 1 MB, and a cell
holding a pasted data file would otherwise make its notebook fail to load.
"""

from __future__ import annotations

from sqlalchemy import Index, func, literal_column, text

from db.models.image import Image
from db.models.notebook import Cell, Notebook

FTS_MAX_CHARS = 262_144
FTS_CONFIG = {"markdown": "english", "code": "simple"}


def cell_tsvector(cell_type: str, source=None):
    """``to_tsvector(config, left(source, N))`` exactly as the index for ``cell_type`` declares it."""
    source = Cell.__table__.c.source if source is None else source
    config = text(f"'{FTS_CONFIG[cell_type]}'::regconfig")
    # the length as a literal: a bound parameter would not match the index expression
    return func.to_tsvector(config, func.left(source, literal_column(str(FTS_MAX_CHARS))))


_cell = Cell.__table__
Index(
    "ix_cell_markdown_fts",
    cell_tsvector("markdown"),
    postgresql_using="gin",
    postgresql_where=_cell.c.cell_type == "markdown",
)
Index(
    "ix_cell_code_fts",
    cell_tsvector("code"),
    postgresql_using="gin",
    postgresql_where=_cell.c.cell_type == "code",
)
# keyset paging within a filter: WHERE filter_column = $1 AND key > $cursor ORDER BY key
Index("ix_cell_type_id", _cell.c.cell_type, _cell.c.id)
Index("ix_image_mime_sha256", Image.__table__.c.mime, Image.__table__.c.sha256)
Index("ix_notebook_language_id", Notebook.__table__.c.language, Notebook.__table__.c.id)
