"""Kaggle in the API: the Kaggle metadata of notebooks (ref, author, votes, competitions...), and
mining runs, the record of how a sample was drawn (specification, listing as seen, pull ledger).

Filters (competition, author, votes range...) are fields of ``NotebookFilter`` and facets entries
of ``FacetField``; this module adds the types, per-request DataLoaders and root fields. The public
server leaves out where a run ran (host, process id) and where files landed on the owner's disk.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api import types as t
from api.context import _by_key, _children
from api.inputs import NotebookFilterInput
from db.queries import kaggle as kaggle_q
from db.queries import mining as mining_q


class KaggleLoaders:
    """This module's DataLoaders, one set per request (see ``loaders``)."""

    def __init__(self, db) -> None:
        self.kernels_of_notebook = _children(db, kaggle_q.kaggle_kernels_by_notebook, KaggleKernel.from_row)
        self.kernel_of_source = _by_key(db, kaggle_q.kaggle_kernels_by_source, KaggleKernel.from_row)
        self.run = _by_key(db, kaggle_q.runs_by_id, MiningRun.from_row)
        self.listings_of_run = _children(
            db, mining_q.listings_of_runs, MiningListing.from_row, ("first", "after", "selected_only")
        )
        self.pulls_of_run = _children(db, mining_q.pulls_of_runs, KagglePull.from_row, ("first", "after", "statuses"))


def loaders(info: Info) -> KaggleLoaders:
    """This request's loaders (made on first use: the context is per request)."""
    ctx = info.context
    found = getattr(ctx, "kaggle_loaders", None)
    if found is None:
        found = ctx.kaggle_loaders = KaggleLoaders(ctx.db)
    return found


def _public(info: Info) -> bool:
    return bool(info.context.db.public)


# spec keys that name folders on the owner's machine (`nbatlas import`: root, meta); other keys are options
_PATH_KEYS = frozenset({"root", "meta", "path", "folder", "dir", "directory", "dest", "destination", "home"})
_PATH_VALUE = re.compile(r"(?:~|[A-Za-z]:)?[\\/]|file:", re.IGNORECASE)
# an absolute path inside a message ("... No such file or directory: '/tmp/x'"); a ref "owner/slug" or a URL is not one
_PATH_IN_TEXT = re.compile(r"(?<![\w:/.~-])(?:~|[A-Za-z]:)?[\\/](?![\\/\s])[^\s'\"()\[\],;]*")


def without_paths(value: Any) -> Any:
    """``value`` (a run's JSON spec) with every local path nulled: keys that name folders, and any string
    that starts like an absolute path, at any depth."""
    if isinstance(value, dict):
        return {k: None if k.lower() in _PATH_KEYS else without_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_paths(v) for v in value]
    if isinstance(value, str) and _PATH_VALUE.match(value):
        return None
    return value


def paths_hidden(text: str | None) -> str | None:
    """``text`` with each absolute path in it replaced by "<path>"."""
    return None if text is None else _PATH_IN_TEXT.sub("<path>", text)


@strawberry.type(description="Kaggle metadata of one place a notebook was found: a Kaggle kernel, or a member of "
                 "a Meta Kaggle Code / KGTorrent archive.")
class KaggleKernel:
    origin: str = strawberry.field(description="api | meta-kaggle-code | kgtorrent")
    ref: str | None = strawberry.field(description="owner/slug; null for an archive file with no metadata row.")
    version: int | None
    kernel_id: int | None = strawberry.field(description="Kaggle's Kernels.Id.")
    kernel_version_id: int | None = strawberry.field(description="Kaggle's KernelVersions.Id.")
    title: str | None
    author: str | None = strawberry.field(description="Kaggle user name.")
    votes: int | None
    views: int | None
    medal: int | None = strawberry.field(description="1 gold, 2 silver, 3 bronze.")
    language: str | None
    kernel_type: str | None = strawberry.field(description="notebook | script")
    last_run_at: datetime | None
    run_time_seconds: float | None
    competitions: list[str] = strawberry.field(description="Competitions whose data it uses (slugs).")
    datasets: list[str] = strawberry.field(description="Datasets it uses (owner/slug).")
    kernel_sources: list[str] = strawberry.field(description="Other kernels' outputs it uses.")
    model_sources: list[str]
    docker_image: str | None = strawberry.field(description="The Kaggle image it last ran in.")
    machine_shape: str | None
    is_private: bool | None
    enable_gpu: bool | None
    enable_internet: bool | None
    extra: JSON | None = strawberry.field(description="What Kaggle sent that has no field here.")
    source_id: strawberry.Private[int]
    notebook_id: strawberry.Private[int]
    mining_run_id: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, r) -> KaggleKernel:
        return cls(
            origin=r.origin, ref=r.ref, version=r.version, kernel_id=r.kernel_id, kernel_version_id=r.kernel_version_id,
            title=r.title, author=r.author, votes=r.votes, views=r.views, medal=r.medal, language=r.language,
            kernel_type=r.kernel_type, last_run_at=r.last_run_at, run_time_seconds=r.run_time_seconds,
            competitions=list(r.competition_sources), datasets=list(r.dataset_sources),
            kernel_sources=list(r.kernel_sources), model_sources=list(r.model_sources), docker_image=r.docker_image,
            machine_shape=r.machine_shape, is_private=r.is_private, enable_gpu=r.enable_gpu,
            enable_internet=r.enable_internet, extra=r.extra, source_id=r.source_id, notebook_id=r.notebook_id,
            mining_run_id=r.mining_run_id,
        )

    @strawberry.field(description="The kernel's page on kaggle.com.")
    async def url(self) -> str | None:
        return f"https://www.kaggle.com/code/{self.ref}" if self.ref else None

    @strawberry.field(description="The run that pulled or imported it.")
    async def mining_run(self, info: Info) -> MiningRun | None:
        return await loaders(info).run.load(self.mining_run_id) if self.mining_run_id is not None else None

    @strawberry.field
    async def source(self, info: Info) -> t.Source:
        return await info.context.loaders.source.load(self.source_id)

    @strawberry.field
    async def notebook(self, info: Info) -> t.Notebook:
        return await info.context.loaders.notebook.load(self.notebook_id)


@strawberry.type(description="A kernel as a run's listing showed it (ref, version, votes, rank in its scope).")
class MiningListing:
    scope: str = strawberry.field(description="competition:<slug> | dataset:<owner/slug> | search:<term> | user:<name> | archive")
    rank: int = strawberry.field(description="1-based position in the scope's listing, in the run's sort order.")
    ref: str
    version: int | None
    title: str | None
    author: str | None
    votes: int | None
    language: str | None
    kernel_type: str | None
    last_run_at: datetime | None
    selected: bool = strawberry.field(description="Chosen by the run's --limit / --top-percent / --sample.")
    seen_at: datetime
    row_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, r) -> MiningListing:
        return cls(
            row_id=r.id, scope=r.scope, rank=r.rank, ref=r.ref, version=r.version, title=r.title, author=r.author, votes=r.votes,
            language=r.language, kernel_type=r.kernel_type, last_run_at=r.last_run_at, selected=r.selected,
            seen_at=r.seen_at,
        )


@strawberry.type(description="One kernel version a run asked for, in the ledger that keeps anything from being pulled twice.")
class KagglePull:
    ref: str
    version: int | None
    status: str = strawberry.field(
        description="pulled | invalid (not a notebook nbformat reads: a problem says why) | skipped (not a Python "
        "notebook) | failed (could not be downloaded; a re-run tries again)"
    )
    reason: str | None
    attempts: int
    with_outputs: bool
    with_data: bool
    first_at: datetime
    updated_at: datetime
    notebook_id: strawberry.Private[int | None]
    row_id: strawberry.Private[int]
    file_path: strawberry.Private[str | None]

    @classmethod
    def from_row(cls, r) -> KagglePull:
        return cls(
            row_id=r.id, file_path=r.path, ref=r.ref, version=r.version, status=r.status, reason=r.reason, attempts=r.attempts,
            with_outputs=r.with_outputs, with_data=r.with_data, first_at=r.first_at, updated_at=r.updated_at,
            notebook_id=r.notebook_id,
        )

    @strawberry.field(description="Where the download was saved (null on the public server).")
    async def path(self, info: Info) -> str | None:
        return None if _public(info) else self.file_path

    @strawberry.field(description="The notebook it became (null unless pulled).")
    async def notebook(self, info: Info) -> t.Notebook | None:
        return await info.context.loaders.notebook.load(self.notebook_id) if self.notebook_id is not None else None


# the public server leaves out the folders an import read (spec.root, spec.meta), wherever they hide
async def _run_spec(root: strawberry.Parent[MiningRun], info: Info) -> JSON:
    return without_paths(root.spec_stored) if _public(info) else root.spec_stored


async def _run_resolved(root: strawberry.Parent[MiningRun], info: Info) -> JSON | None:
    return without_paths(root.resolved_stored) if _public(info) else root.resolved_stored


async def _run_error(root: strawberry.Parent[MiningRun], info: Info) -> str | None:
    return paths_hidden(root.error_text) if _public(info) else root.error_text


@strawberry.type(description="One `nbatlas mine kaggle` / `nbatlas import` invocation (a resumed run keeps its record): "
                 "enough to re-draw the same sample.")
class MiningRun:
    id: int = strawberry.field(description="The run id `nbatlas mine` prints (NotebookFilter.miningRun takes it).")
    kind: str = strawberry.field(description="kaggle | meta-kaggle-code | kgtorrent")
    spec: JSON = strawberry.field(resolver=_run_spec, description="Every option that decides the sample, as given.")
    resolved: JSON | None = strawberry.field(
        resolver=_run_resolved, description="What the spec resolved to when listing (e.g. the top competitions then).")
    command: str | None = strawberry.field(description="The equivalent command line.")
    status: str = strawberry.field(description="running | finished | failed | interrupted")
    error: str | None = strawberry.field(resolver=_run_error)
    started_at: datetime
    listed_at: datetime | None
    finished_at: datetime | None
    resumed: int = strawberry.field(description="How many times it was resumed.")
    listed: int
    selected: int
    pulled: int
    skipped: int
    failed: int
    retries: int = strawberry.field(description="HTTP calls retried after a 429 / 5xx / connection error.")
    host_name: strawberry.Private[str | None]
    process_id: strawberry.Private[int | None]
    spec_stored: strawberry.Private[Any]
    resolved_stored: strawberry.Private[Any]
    error_text: strawberry.Private[str | None]

    @classmethod
    def from_row(cls, r) -> MiningRun:
        return cls(
            id=r.id, kind=r.kind, spec_stored=r.spec, resolved_stored=r.resolved, command=r.command, status=r.status,
            error_text=r.error,
            started_at=r.started_at, listed_at=r.listed_at, finished_at=r.finished_at, resumed=r.resumed,
            listed=r.listed, selected=r.selected, pulled=r.pulled, skipped=r.skipped, failed=r.failed,
            retries=r.retries, host_name=r.host, process_id=r.pid,
        )

    @strawberry.field(description="The machine it ran on (null on the public server).")
    async def host(self, info: Info) -> str | None:
        return None if _public(info) else self.host_name

    @strawberry.field(description="Its process id (null on the public server).")
    async def pid(self, info: Info) -> int | None:
        return None if _public(info) else self.process_id

    @strawberry.field(description="The listing as the run saw it, scope by scope in rank order, a page at a time.")
    async def listings(
        self, info: Info, first: int | None = None, after: str | None = None, selected_only: bool = False
    ) -> t.Connection[MiningListing]:
        ctx = info.context
        first = ctx.page_size(first)
        (after_id,) = ctx.cursor(after, "listing", (int,)) or (None,)
        rows = await loaders(info).listings_of_run.load((self.id, first, after_id, selected_only))
        return t.make_connection(rows, [ctx.encode_cursor("listing", r.row_id) for r in rows], first=first, after=after)

    @strawberry.field(description="The ledger rows this run last worked on, in the order first attempted, a page at a time.")
    async def pulls(
        self, info: Info, first: int | None = None, after: str | None = None, status: list[str] | None = None
    ) -> t.Connection[KagglePull]:
        ctx = info.context
        first = ctx.page_size(first)
        (after_id,) = ctx.cursor(after, "pull", (int,)) or (None,)
        rows = await loaders(info).pulls_of_run.load((self.id, first, after_id, tuple(status) if status else None))
        return t.make_connection(rows, [ctx.encode_cursor("pull", r.row_id) for r in rows], first=first, after=after)


@strawberry.type(description="The smallest and largest Kaggle votes among notebooks (for a range slider).")
class VotesRange:
    min: int | None
    max: int | None


@strawberry.type
class KaggleQuery:
    @strawberry.field(description="Mining runs, newest first, a page at a time.")
    async def mining_runs(self, info: Info, first: int | None = None, after: str | None = None) -> t.Connection[MiningRun]:
        ctx = info.context
        first = ctx.page_size(first)
        (after_id,) = ctx.cursor(after, "mining_run", (int,)) or (None,)
        rows = await ctx.db.read(kaggle_q.latest_runs, limit=first + 1, after=after_id)

        async def count() -> int:
            return await ctx.db.read(mining_q.count_runs)

        return t.make_connection(
            [MiningRun.from_row(r) for r in rows], [ctx.encode_cursor("mining_run", r.id) for r in rows],
            first=first, after=after, count=count,
        )

    @strawberry.field(description="One mining run, by the id `nbatlas mine` printed.")
    async def mining_run(self, info: Info, id: int) -> MiningRun | None:
        return await loaders(info).run.load(id)

    @strawberry.field(description="The smallest and largest Kaggle votes among the matching notebooks.")
    async def votes_range(self, info: Info, filter: NotebookFilterInput | None = None) -> VotesRange:
        low, high = await info.context.db.read(
            kaggle_q.votes_range, filter=filter.to_filter() if filter is not None else None
        )
        return VotesRange(min=low, max=high)


# --- fields on the corpus's own types (Notebook.kaggle, Source.kaggle) resolve through these -------------

async def notebook_kaggle(info: Info, notebook_id: int) -> list[KaggleKernel]:
    return await loaders(info).kernels_of_notebook.load(notebook_id)


async def source_kaggle(info: Info, source_id: int) -> KaggleKernel | None:
    return await loaders(info).kernel_of_source.load(source_id)
