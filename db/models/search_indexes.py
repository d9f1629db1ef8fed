"""What full-text search and keyset paging need on the tables, declared here so models and
migrations agree (``migrations/versions/0002_search.py`` creates them).

``cell.search_vector`` is a stored generated column: the cell's tsvector, markdown with English
stemming, code with the 'simple' configuration (identifiers are not words), NULL for raw cells.
Storing it (instead of indexing an expression) means ranking a thousand hits reads a thousand
vectors instead of re-parsing a thousand sources. Only the first ``FTS_MAX_CHARS`` characters are
indexed: a tsvector is limited to 1 MB, and a cell holding a pasted data file would otherwise make
its notebook fail to load.

The column is added to the table here, outside the ``Cell`` class: nothing in the ORM reads it,
and only the API's search queries it.
"""

from __future__ import annotations

from sqlalchemy import Column, Computed, Index
from sqlalchemy.dialects.postgresql import TSVECTOR

from db.models.image import Image
from db.models.notebook import Cell, Notebook

FTS_MAX_CHARS = 262_144
FTS_CONFIG = {"markdown": "english", "code": "simple"}

SEARCH_VECTOR_SQL = (
    "CASE cell_type"
    + "".join(
        f" WHEN '{kind}' THEN to_tsvector('{config}'::regconfig, left(source, {FTS_MAX_CHARS}))"
        for kind, config in FTS_CONFIG.items()
    )
    + " END"
)

_cell = Cell.__table__
if "search_vector" not in _cell.c:
    _cell.append_column(Column("search_vector", TSVECTOR, Computed(SEARCH_VECTOR_SQL, persisted=True)))

# one GIN index per kind: a markdown search reads only the markdown index
for _kind in FTS_CONFIG:
    Index(
        f"ix_cell_{_kind}_fts",
        _cell.c.search_vector,
        postgresql_using="gin",
        postgresql_where=_cell.c.cell_type == _kind,
    )
# keyset paging within a filter: WHERE filter_column = $1 AND key > $cursor ORDER BY key
Index("ix_cell_type_id", _cell.c.cell_type, _cell.c.id)
Index("ix_image_mime_sha256", Image.__table__.c.mime, Image.__table__.c.sha256)
Index("ix_notebook_language_id", Notebook.__table__.c.language, Notebook.__table__.c.id)
