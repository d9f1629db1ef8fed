"""Kaggle metadata and mining runs: batch loaders, a filter and facets for the API and the CLI.

* Loaders take many ids and answer with one statement (``f(*, session, ids) -> {id: rows}``).
* :class:`KaggleFilter` narrows notebooks by their Kaggle metadata (competition, author, votes range,
  origin, mining run); ``where()`` gives conditions over ``notebook`` like ``NotebookFilter.where()``.
* ``KAGGLE_FACETS`` are :class:`db.queries.facets.Facet` entries (competition, author, votes bucket,
  origin) that count notebooks, for ``facets.FACETS``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Row, Select, case, desc, distinct, exists, func, select
from sqlmodel import Session

from db.models import KaggleKernel, KagglePull, MiningListing, MiningRun
from db.queries.facets import Facet
from db.queries.filters import NotebookFilter, _Filter, notebook_t

kernel_t = KaggleKernel.__table__
run_t = MiningRun.__table__
listing_t = MiningListing.__table__
pull_t = KagglePull.__table__


# --- loaders -------------------------------------------------------------------------------------


def kaggle_kernels_by_notebook(*, session: Session, ids: Sequence[int]) -> dict[int, list[Row]]:
    """Kaggle metadata rows of each notebook (one per Kaggle/archive provenance), most voted first."""
    out: dict[int, list[Row]] = defaultdict(list)
    if not ids:
        return out
    q = select(kernel_t).where(kernel_t.c.notebook_id.in_(list(ids))).order_by(
        kernel_t.c.notebook_id, kernel_t.c.votes.desc().nulls_last(), kernel_t.c.id)
    for row in session.execute(q):
        out[row.notebook_id].append(row)
    return out


def kaggle_kernels_by_source(*, session: Session, ids: Sequence[int]) -> dict[int, Row]:
    """The Kaggle metadata row of each source (provenance) id that has one."""
    if not ids:
        return {}
    return {row.source_id: row for row in session.execute(select(kernel_t).where(kernel_t.c.source_id.in_(list(ids))))}


def runs_by_id(*, session: Session, ids: Sequence[int]) -> dict[int, Row]:
    if not ids:
        return {}
    return {row.id: row for row in session.execute(select(run_t).where(run_t.c.id.in_(list(ids))))}


def latest_runs(*, session: Session, limit: int = 20, after: int | None = None) -> list[Row]:
    """Runs newest first (keyset: ``after`` = the last id seen)."""
    q = select(run_t).order_by(run_t.c.id.desc()).limit(limit)
    if after is not None:
        q = q.where(run_t.c.id < after)
    return list(session.execute(q))


def pulls_by_run(*, session: Session, ids: Sequence[int]) -> dict[int, list[Row]]:
    """Ledger rows last worked on by each run, in the order they were first attempted."""
    out: dict[int, list[Row]] = defaultdict(list)
    if not ids:
        return out
    for row in session.execute(select(pull_t).where(pull_t.c.run_id.in_(list(ids))).order_by(pull_t.c.run_id, pull_t.c.id)):
        out[row.run_id].append(row)
    return out


def listings_by_run(*, session: Session, ids: Sequence[int], selected_only: bool = False) -> dict[int, list[Row]]:
    """The listing of each run as seen, by scope then rank."""
    out: dict[int, list[Row]] = defaultdict(list)
    if not ids:
        return out
    q = select(listing_t).where(listing_t.c.run_id.in_(list(ids)))
    if selected_only:
        q = q.where(listing_t.c.selected)
    for row in session.execute(q.order_by(listing_t.c.run_id, listing_t.c.id)):
        out[row.run_id].append(row)
    return out


# --- filter --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KaggleFilter(_Filter):
    competition: tuple[str, ...] | None = None  # any of these competition slugs among its sources
    dataset: tuple[str, ...] | None = None  # any of these datasets (owner/slug) among its sources
    author: tuple[str, ...] | None = None  # Kaggle user names
    min_votes: int | None = None
    max_votes: int | None = None
    origin: tuple[str, ...] | None = None  # api | meta-kaggle-code | kgtorrent
    mining_run: tuple[int, ...] | None = None  # pulled or imported by these runs

    def kernel_conditions(self, k=kernel_t) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        if self.competition is not None:
            conds.append(k.c.competition_sources.overlap(list(self.competition)))
        if self.dataset is not None:
            conds.append(k.c.dataset_sources.overlap(list(self.dataset)))
        if self.author is not None:
            conds.append(k.c.author.in_(self.author))
        if self.min_votes is not None:
            conds.append(k.c.votes >= self.min_votes)
        if self.max_votes is not None:
            conds.append(k.c.votes <= self.max_votes)
        if self.origin is not None:
            conds.append(k.c.origin.in_(self.origin))
        if self.mining_run is not None:
            conds.append(k.c.mining_run_id.in_(self.mining_run))
        return conds

    def where(self, n=notebook_t) -> list[ColumnElement[bool]]:
        """Notebooks with at least one Kaggle metadata row meeting every criterion."""
        if self.is_empty():
            return []
        k = kernel_t.alias("kk")
        return [exists(select(1).where(k.c.notebook_id == n.c.id, *self.kernel_conditions(k)))]


def notebook_ids_by_kaggle(*, session: Session, filter: KaggleFilter, first: int = 100, after: int | None = None) -> list[int]:
    """Keyset page of notebook ids matching ``filter`` (ids ascending, ``first + 1`` to see a next page)."""
    q = select(notebook_t.c.id).where(*filter.where()).order_by(notebook_t.c.id).limit(first + 1)
    if after is not None:
        q = q.where(notebook_t.c.id > after)
    return list(session.execute(q).scalars())


# --- facets (count notebooks) --------------------------------------------------------------------


def _kernels_of(filter: NotebookFilter | None):
    conds = []
    if filter is not None and not filter.is_empty():
        conds.append(kernel_t.c.notebook_id.in_(filter.notebook_ids()))
    return conds


def _competition(filter: NotebookFilter | None) -> Select:
    value = func.unnest(kernel_t.c.competition_sources).label("value")
    inner = select(kernel_t.c.notebook_id, value).where(*_kernels_of(filter)).subquery("c")
    return select(inner.c.value, func.count(distinct(inner.c.notebook_id)).label("count")).group_by(inner.c.value)


def _author(filter: NotebookFilter | None) -> Select:
    value = kernel_t.c.author.label("value")
    return select(value, func.count(distinct(kernel_t.c.notebook_id)).label("count")).where(*_kernels_of(filter)).group_by(value)


def _origin(filter: NotebookFilter | None) -> Select:
    value = kernel_t.c.origin.label("value")
    return select(value, func.count(distinct(kernel_t.c.notebook_id)).label("count")).where(*_kernels_of(filter)).group_by(value)


VOTE_BUCKETS = ((0, 0, "0"), (1, 9, "1-9"), (10, 99, "10-99"), (100, 999, "100-999"), (1000, None, "1000+"))


def _votes(filter: NotebookFilter | None) -> Select:
    # a notebook counts once, with its most voted Kaggle row
    best = select(kernel_t.c.notebook_id, func.max(kernel_t.c.votes).label("votes")).where(
        *_kernels_of(filter)).group_by(kernel_t.c.notebook_id).subquery("b")
    value = case(
        *[((best.c.votes >= lo) if hi is None else best.c.votes.between(lo, hi), label) for lo, hi, label in VOTE_BUCKETS],
        else_=None,
    ).label("value")
    return select(value, func.count().label("count")).select_from(best).group_by(value)


KAGGLE_FACETS: dict[str, Facet] = {
    "competition": Facet("notebooks", _competition, "competitions whose data the notebook uses"),
    "author": Facet("notebooks", _author, "Kaggle author"),
    "votes": Facet("notebooks", _votes, "votes, in buckets 0, 1-9, 10-99, 100-999, 1000+"),
    "kaggle_origin": Facet("notebooks", _origin, "api, meta-kaggle-code, kgtorrent"),
}


def kaggle_facet_counts(*, session: Session, field: str, filter: NotebookFilter | None = None,
                        first: int = 100) -> list[tuple[str | None, int]]:
    sub = KAGGLE_FACETS[field].build(filter).subquery("f")
    q = select(sub.c.value, sub.c.count).order_by(desc(sub.c.count), sub.c.value).limit(first)
    return [(value, int(n)) for value, n in session.execute(q)]


def votes_range(*, session: Session, filter: NotebookFilter | None = None) -> tuple[int | None, int | None]:
    """Smallest and largest votes among the matching notebooks (for a range slider)."""
    row = session.execute(select(func.min(kernel_t.c.votes), func.max(kernel_t.c.votes)).where(*_kernels_of(filter))).one()
    return row[0], row[1]
