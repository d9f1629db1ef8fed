"""Full-text search over markdown and code cells: ranked hits with highlighted snippets.

Each kind is searched through its own GIN index over ``cell.search_vector``
(``db.models.search_indexes``): markdown with English stemming, code with the 'simple'
configuration (identifiers are not words).
The user's text goes through ``websearch_to_tsquery``, which accepts anything a person types
("quoted phrases", -exclusions, or) without ever raising a syntax error, and only ever as a bound
parameter. Ranking is ``ts_rank``; pages are keyset pages on (rank desc, cell id), and snippets
(``ts_headline``, the expensive part) are made only for the rows of the page.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Row, and_, bindparam, case, cast, func, literal_column, or_, select, text, union_all
from sqlalchemy.types import Float
from sqlmodel import Session

from db.models.search_indexes import FTS_CONFIG, FTS_MAX_CHARS
from db.queries.browse import CELL_COLUMNS
from db.queries.filters import NotebookFilter, cell_t

KINDS = tuple(FTS_CONFIG)  # ("markdown", "code")

# the highlighted words are wrapped in these private-use characters, which the caller turns into
# markup after escaping the text around them (cell sources are untrusted HTML)
HIGHLIGHT_START = "\ue000"
HIGHLIGHT_STOP = "\ue001"
_HEADLINE_OPTIONS = (
    f"StartSel={HIGHLIGHT_START}, StopSel={HIGHLIGHT_STOP}, MaxWords=35, MinWords=12, "
    'MaxFragments=2, FragmentDelimiter=" … "'
)


def _tsquery(kind: str):
    return func.websearch_to_tsquery(text(f"'{FTS_CONFIG[kind]}'::regconfig"), bindparam("q"))


def _matches(kind: str, notebook: NotebookFilter | None) -> list:
    vector = cell_t.c.search_vector
    query = _tsquery(kind)
    conds = [
        # a literal, not a parameter, so the planner can match the partial index's predicate
        cell_t.c.cell_type == literal_column(f"'{kind}'"),
        vector.op("@@")(query),
    ]
    if notebook is not None and not notebook.is_empty():
        conds.append(cell_t.c.notebook_id.in_(notebook.notebook_ids()))
    return conds


def _hits(kind: str, notebook: NotebookFilter | None):
    vector = cell_t.c.search_vector
    query = _tsquery(kind)
    return select(
        cell_t.c.id.label("id"),
        literal_column(f"'{kind}'").label("kind"),
        # float8: a float4 rank would come back rounded, and the cursor would no longer equal it
        cast(func.ts_rank(vector, query), Float(53)).label("rank"),
    ).where(*_matches(kind, notebook))


def search_count(
    *, session: Session, query: str, kinds: Sequence[str] = KINDS, notebook: NotebookFilter | None = None
) -> int:
    """How many cells ``search_cells`` pages through: the matches, without ranks or snippets (a
    bitmap scan of the same GIN indexes)."""
    kinds = [k for k in KINDS if k in set(kinds)]
    if not kinds or not query.strip():
        return 0
    hits = union_all(*(select(cell_t.c.id).where(*_matches(kind, notebook)) for kind in kinds)).subquery("hits")
    return int(session.execute(select(func.count()).select_from(hits), {"q": query}).scalar_one())


def search_cells(
    *,
    session: Session,
    query: str,
    kinds: Sequence[str] = KINDS,
    first: int = 20,
    after: tuple[float, int] | None = None,
    notebook: NotebookFilter | None = None,
) -> list[Row]:
    """Up to ``first + 1`` hits, best first: the cell's columns plus ``kind``, ``rank`` and ``snippet``."""
    kinds = [k for k in KINDS if k in set(kinds)]
    if not kinds or not query.strip():
        return []
    hits = union_all(*(_hits(kind, notebook) for kind in kinds)).subquery("hits")
    page = select(hits)
    if after is not None:
        rank, cell_id = after
        after_rank = bindparam("after_rank", rank, type_=Float(53))
        page = page.where(or_(hits.c.rank < after_rank, and_(hits.c.rank == after_rank, hits.c.id > cell_id)))
    page = page.order_by(hits.c.rank.desc(), hits.c.id).limit(first + 1).subquery("page")

    source = func.left(cell_t.c.source, literal_column(str(FTS_MAX_CHARS)))
    snippet = case(
        *(
            (page.c.kind == literal_column(f"'{kind}'"),
             func.ts_headline(text(f"'{FTS_CONFIG[kind]}'::regconfig"), source, _tsquery(kind), _HEADLINE_OPTIONS))
            for kind in kinds
        ),
    )
    q = (
        select(page.c.kind, page.c.rank, *(cell_t.c[name] for name in CELL_COLUMNS), snippet.label("snippet"))
        .select_from(page.join(cell_t, cell_t.c.id == page.c.id))
        .order_by(page.c.rank.desc(), page.c.id)
    )
    return list(session.execute(q, {"q": query}))
