"""Reproductions in the API: run requests, runs, their cells and reproduced outputs, scores, facets.

A *run request* is one ``nbatlas reproduce`` (backend, image, limits, selection); it has one *run*
per notebook. A run's cells point at the original cells, so a reproduced output can be read beside
the original one (``RunCell.original``, and from the other side ``Cell.reproductions``). Scores are
those of Pimentel et al. (2019): ran without error, same results, same results ignoring images,
plus same plots; a score is null when there was nothing to compare.

Resolvers are thin: arguments -> ``db.queries.reproduce`` (batched by the DataLoaders below, made
fresh for every request) -> these types.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api import types as t
from api.context import _by_key, _children
from api.ids import db_id, global_id
from api.inputs import NotebookFilterInput, vocabulary_checked
from db.models.reproduce import CELL_STATUSES, RUN_STATUSES
from db.queries import reproduce as q
from db.queries import runs as runs_q

RunStatus = strawberry.enum(
    Enum("RunStatus", {s.upper(): s for s in RUN_STATUSES}),
    description="How a run ended: ok, error (an exception), timeout, oom (out of memory), killed, "
    "infrastructure_error (the sandbox failed, not the notebook).",
)
CellRunStatus = strawberry.enum(
    Enum("CellRunStatus", {s.upper(): s for s in CELL_STATUSES}),
    description="How a cell's re-execution ended: a run status, or not_run (the run stopped before it), "
    "skipped (markdown, raw or empty).",
)


class RunLoaders:
    """The DataLoaders of this module, one set per request (see ``loaders``)."""

    def __init__(self, db) -> None:
        self.run = _by_key(db, q.runs_by_id, Run.from_row)
        self.request = _by_key(db, q.requests_by_id, RunRequest.from_row)
        self.runs_of_notebook = _children(db, q.runs_of_notebooks, Run.from_row, ("request_id",))
        self.runs_of_request = _children(db, q.runs_of_requests, Run.from_row, ("first", "after"))
        self.cells_of_run = _children(db, q.cells_of_runs, RunCell.from_row)
        self.reproductions_of_cell = _children(db, q.run_cells_of_cells, RunCell.from_row, ("request_id",))
        self.outputs_of_run_cell = _children(db, q.outputs_of_run_cells, RunOutput.from_row)
        self.images_of_run_output = _children(db, q.images_of_run_outputs, t.Image.from_row)
        self.full_run = _by_key(db, q.runs_by_id, lambda r: r)  # the long columns lists leave out
        self.summary = _by_key(db, _summaries, lambda r: r)


def _summaries(*, session, ids):
    return q.reproducibility_summary(session=session, request_ids=list(ids))


def loaders(info: Info) -> RunLoaders:
    """This request's run loaders (made on first use: the context is per request)."""
    ctx = info.context
    found = getattr(ctx, "run_loaders", None)
    if found is None:
        found = ctx.run_loaders = RunLoaders(ctx.db)
    return found


def _status(value: str | None, enum_type):
    return enum_type(value) if value is not None else None


@strawberry.type(description="One output of a re-executed cell, shaped like an original `Output`.")
class RunOutput:
    db_id: int
    position: int
    output_type: str = strawberry.field(description="execute_result | display_data | stream | error")
    mime_types: list[str]
    data: JSON | None = strawberry.field(description="The mime bundle without its images (see `images`).")
    metadata: JSON | None
    execution_count: int | None
    name: str | None = strawberry.field(description="stream outputs: stdout | stderr")
    text: str | None
    ename: str | None
    evalue: str | None
    traceback: list[str] | None

    @classmethod
    def from_row(cls, r) -> RunOutput:
        return cls(
            db_id=r.id, position=r.position, output_type=r.output_type,
            mime_types=r.mime_types, data=r.data, metadata=r.metadata, execution_count=r.execution_count,
            name=r.name, text=r.text, ename=r.ename, evalue=r.evalue, traceback=r.traceback,
        )

    @strawberry.field(description="The images of the reproduced bundle.")
    async def images(self, info: Info) -> list[t.Image]:
        return await loaders(info).images_of_run_output.load(self.db_id)


@strawberry.type(description="One cell of a run: how its re-execution went and how its outputs compare with the original's.")
class RunCell:
    db_id: int
    position: int = strawberry.field(description="The cell's position in the notebook (the original's position).")
    status: CellRunStatus  # type: ignore[valid-type]
    duration_s: float | None = strawberry.field(description="Seconds the cell took to execute.")
    execution_count: int | None
    truncated_bytes: int = strawberry.field(description="Output bytes dropped by the run's output cap.")
    comparison: str | None = strawberry.field(
        description="same | different (also: the cell has no code but the original kept its outputs, which no run "
                    "can reproduce) | not_compared (the original never ran it, or it has no code and no output) | "
                    "missing (the run never reached it)"
    )
    text_same: bool | None = strawberry.field(description="Text outputs equal after normalisation.")
    images_same: bool | None = strawberry.field(description="Every image matched by perceptual hash.")
    n_images_original: int
    n_images_reproduced: int
    max_phash_distance: int | None = strawberry.field(description="Largest pHash Hamming distance (bits) over matched images.")
    max_pixel_diff: float | None = strawberry.field(description="Largest mean absolute pixel difference (0..1) over matched images.")
    difference: str | None = strawberry.field(description="The first difference found, for reading.")
    details: JSON | None
    run_id: strawberry.Private[int]
    cell_id: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, r) -> RunCell:
        return cls(
            db_id=r.id, position=r.position, status=_status(r.status, CellRunStatus),
            duration_s=r.duration_s, execution_count=r.execution_count, truncated_bytes=r.truncated_bytes,
            comparison=r.comparison, text_same=r.text_same, images_same=r.images_same,
            n_images_original=r.n_images_original, n_images_reproduced=r.n_images_reproduced,
            max_phash_distance=r.max_phash_distance, max_pixel_diff=r.max_pixel_diff, difference=r.difference,
            details=r.details, run_id=r.run_id, cell_id=r.cell_id,
        )

    @strawberry.field(description="The original cell this re-executes, with its original outputs.")
    async def original(self, info: Info) -> t.Cell | None:
        if self.cell_id is None:
            return None
        return await info.context.loaders.cell.load(self.cell_id)

    @strawberry.field(description="What the re-executed cell printed or displayed, in order.")
    async def outputs(self, info: Info) -> list[RunOutput]:
        return await loaders(info).outputs_of_run_cell.load(self.db_id)

    @strawberry.field
    async def run(self, info: Info) -> Run:
        return await loaders(info).run.load(self.run_id)


@strawberry.type(description="One notebook re-executed for one run request: outcome, timings, scores, cells.")
class Run(t.Node):
    id: strawberry.ID
    db_id: int = strawberry.field(description="Row id (run.id).")
    backend: str = strawberry.field(description="docker | local")
    image: str | None = strawberry.field(description="The runner image (docker) or interpreter (local:...).")
    image_digest: str | None = strawberry.field(description="The image's repo digest, or the engine's image id.")
    worker: str | None = strawberry.field(description="host:pid:start of the worker that ran it.")
    attempt: int
    status: RunStatus  # type: ignore[valid-type]
    ename: str | None = strawberry.field(description="The exception class that stopped the run.")
    evalue: str | None
    failing_cell_position: int | None = strawberry.field(description="Position of the cell that failed.")
    failure_class: str | None = strawberry.field(
        description="Why it failed: missing_module, missing_data_file, name_error, out_of_order, python2, "
        "syntax_error, library_api_change, network, timeout, memory, killed, exception, infrastructure..."
    )
    failure_detail: str | None = strawberry.field(description="E.g. the missing module's name, the missing file.")
    started_at: datetime | None
    finished_at: datetime | None
    wall_s: float | None = strawberry.field(description="Seconds from start to end, sandbox included.")
    run_s: float | None = strawberry.field(description="Seconds executing cells.")
    kernel_startup_s: float | None
    overhead_s: float | None = strawberry.field(description="wall_s - run_s: what the sandbox costs.")
    exit_code: int | None
    oom_killed: bool
    timed_out: bool
    output_truncated: bool
    output_bytes: int | None
    n_code_cells: int
    n_cells_run: int
    n_cells_ok: int
    detail: str | None = strawberry.field(description="What nbatlas observed (e.g. why the sandbox failed).")
    ran_without_error: bool = strawberry.field(description="Pimentel et al.: the whole notebook ran without an exception.")
    same_results: bool | None = strawberry.field(
        description="Pimentel et al.: every cell the original executed gave equivalent outputs (null: nothing to compare)."
    )
    same_results_ignoring_images: bool | None
    same_plots: bool | None = strawberry.field(description="Every original plot matched by perceptual hash (null: no plots).")
    n_cells_compared: int
    n_cells_same: int
    n_images_compared: int
    n_images_same: int
    created_at: datetime
    request_id: strawberry.Private[int]
    notebook_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, r) -> Run:
        return cls(
            id=global_id("Run", r.id), db_id=r.id, backend=r.backend, image=r.image, image_digest=r.image_digest,
            worker=r.worker, attempt=r.attempt, status=_status(r.status, RunStatus), ename=r.ename, evalue=r.evalue,
            failing_cell_position=r.failing_cell_position, failure_class=r.failure_class,
            failure_detail=r.failure_detail, started_at=r.started_at, finished_at=r.finished_at, wall_s=r.wall_s,
            run_s=r.run_s, kernel_startup_s=r.kernel_startup_s, overhead_s=r.overhead_s, exit_code=r.exit_code,
            oom_killed=r.oom_killed, timed_out=r.timed_out, output_truncated=r.output_truncated,
            output_bytes=r.output_bytes, n_code_cells=r.n_code_cells, n_cells_run=r.n_cells_run,
            n_cells_ok=r.n_cells_ok, detail=r.detail, ran_without_error=r.ran_without_error,
            same_results=r.same_results, same_results_ignoring_images=r.same_results_ignoring_images,
            same_plots=r.same_plots, n_cells_compared=r.n_cells_compared, n_cells_same=r.n_cells_same,
            n_images_compared=r.n_images_compared, n_images_same=r.n_images_same, created_at=r.created_at,
            request_id=r.request_id, notebook_id=r.notebook_id,
        )

    @strawberry.field
    async def notebook(self, info: Info) -> t.Notebook:
        return await info.context.loaders.notebook.load(self.notebook_id)

    @strawberry.field
    async def request(self, info: Info) -> RunRequest:
        return await loaders(info).request.load(self.request_id)

    @strawberry.field(description="Every cell of the notebook as re-executed, in order.")
    async def cells(self, info: Info) -> list[RunCell]:
        return await loaders(info).cells_of_run.load(self.db_id)

    @strawberry.field(description="The original cell where the run stopped.")
    async def failing_cell(self, info: Info) -> t.Cell | None:
        if self.failing_cell_position is None:
            return None
        cells = await loaders(info).cells_of_run.load(self.db_id)
        cell = next((c for c in cells if c.position == self.failing_cell_position), None)
        if cell is None or cell.cell_id is None:
            return None
        return await info.context.loaders.cell.load(cell.cell_id)

    @strawberry.field(description="The traceback of the exception that stopped the run.")
    async def traceback(self, info: Info) -> list[str] | None:
        row = await loaders(info).full_run.load(self.db_id)
        return row.traceback if row is not None else None

    @strawberry.field(description="The last lines the kernel and sandbox logged.")
    async def log_tail(self, info: Info) -> str | None:
        row = await loaders(info).full_run.load(self.db_id)
        return row.log_tail if row is not None else None

    @strawberry.field(description="The interpreter and package versions the run used.")
    async def environment(self, info: Info) -> JSON | None:
        row = await loaders(info).full_run.load(self.db_id)
        return row.environment if row is not None else None


@strawberry.type(description="Pimentel et al.'s measures over the runs of one request (rates over the runs so far).")
class ReproducibilitySummary:
    n_notebooks: int = strawberry.field(description="Notebooks the request asked for.")
    n_runs: int = strawberry.field(description="Runs recorded so far.")
    ok: int
    error: int
    timeout: int
    oom: int
    killed: int
    infrastructure_error: int
    no_code: int = strawberry.field(
        description="Runs of notebooks with no code cell to run (markdown only, or only empty code cells): their "
                    "status is ok, and they are counted in `ok` and `okRate`.")
    runs_with_code: int = strawberry.field(description="Runs of notebooks with at least one code cell to run (nRuns - noCode).")
    ok_with_code: int = strawberry.field(description="Ran without error, among the runs of notebooks with code.")
    same_results: int
    same_results_ignoring_images: int
    same_plots: int
    with_plots: int = strawberry.field(description="Runs whose original had plots to compare.")
    ok_rate: float | None = strawberry.field(
        description="Ran without error / runs, counting notebooks with no code as ok: quote okRateWithCode.")
    ok_rate_with_code: float | None = strawberry.field(
        description="Ran without error / runs, over the notebooks that have code (okWithCode / runsWithCode): "
                    "the rate to quote.")
    same_results_rate: float | None
    same_results_ignoring_images_rate: float | None
    same_plots_rate: float | None = strawberry.field(description="Same plots / runs with plots.")
    mean_run_s: float | None
    mean_overhead_s: float | None

    @classmethod
    def from_dict(cls, d: dict) -> ReproducibilitySummary:
        names = cls.__annotations__
        return cls(**{k: (float(d[k]) if d[k] is not None and k.startswith("mean") else d[k]) for k in names})


@strawberry.type(description="One `nbatlas reproduce`: the backend, image and limits its runs used, and what it selected.")
class RunRequest(t.Node):
    id: strawberry.ID
    db_id: int
    created_at: datetime
    backend: str
    image: str
    timeout_s: float
    limits: JSON = strawberry.field(description="Memory, CPU, pids and output limits of each run.")
    selection: JSON = strawberry.field(description="The notebook filter, sample size and seed as given.")
    n_notebooks: int
    note: str | None

    @classmethod
    def from_row(cls, r) -> RunRequest:
        return cls(
            id=global_id("RunRequest", r.id), db_id=r.id, created_at=r.created_at, backend=r.backend, image=r.image,
            timeout_s=r.timeout_s, limits=r.limits, selection=r.selection, n_notebooks=r.n_notebooks, note=r.note,
        )

    @strawberry.field(description="The request's runs in id order, a page at a time.")
    async def runs(self, info: Info, first: int | None = None, after: str | None = None) -> t.Connection[Run]:
        ctx = info.context
        first = ctx.page_size(first)
        (after_id,) = ctx.cursor(after, "run", (int,)) or (None,)
        runs = await loaders(info).runs_of_request.load((self.db_id, first, after_id))
        return t.make_connection(runs, [ctx.encode_cursor("run", r.db_id) for r in runs], first=first, after=after)

    @strawberry.field(description="Counts and Pimentel et al. rates over the runs so far.")
    async def summary(self, info: Info) -> ReproducibilitySummary:
        d = await loaders(info).summary.load(self.db_id)
        return ReproducibilitySummary.from_dict(d)


@strawberry.input(name="RunFilter", description="Runs matching every criterion given (a list matches any of its values).")
@vocabulary_checked
class RunFilterInput:
    request_id: list[strawberry.ID] | None = strawberry.field(default=None, description="Run request ids (or row ids).")
    status: list[RunStatus] | None = None  # type: ignore[valid-type]
    failure_class: list[str] | None = None
    backend: list[str] | None = strawberry.field(default=None, description="docker | local")
    ran_without_error: bool | None = None
    same_results: bool | None = None
    same_results_ignoring_images: bool | None = None
    same_plots: bool | None = None
    notebook: NotebookFilterInput | None = strawberry.field(default=None, description="Only runs of these notebooks.")

    def to_filter(self) -> q.RunFilter:
        def values(v):
            return tuple(x.value if isinstance(x, Enum) else x for x in v) if v is not None else None

        return q.RunFilter(
            request_id=tuple(db_id(i, "RunRequest") for i in self.request_id) if self.request_id is not None else None,
            status=values(self.status), failure_class=values(self.failure_class), backend=values(self.backend),
            ran_without_error=self.ran_without_error, same_results=self.same_results,
            same_results_ignoring_images=self.same_results_ignoring_images, same_plots=self.same_plots,
            notebook=self.notebook.to_filter() if self.notebook is not None else None,
        )


RunFacetField = strawberry.enum(
    Enum("RunFacetField", {name.upper(): name for name in q.FACETS}),
    description="A field of runs to count values of (failure_detail: e.g. which modules were missing).",
)


@strawberry.type(description="How the matching runs spread over one field.")
class RunFacet:
    field: RunFacetField  # type: ignore[valid-type]
    values: list[t.FacetValue]


def _facet_value(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@strawberry.type
class ReproduceQuery:
    @strawberry.field(description="Reproduction runs in id order, a page at a time.")
    async def runs(
        self, info: Info, first: int | None = None, after: str | None = None, filter: RunFilterInput | None = None
    ) -> t.Connection[Run]:
        ctx = info.context
        first = ctx.page_size(first)
        (after_id,) = ctx.cursor(after, "run", (int,)) or (None,)
        flt = filter.to_filter() if filter is not None else None
        rows = await ctx.db.read(q.run_page, filter=flt, first=first, after=after_id)

        async def count() -> int:
            return await ctx.db.read(runs_q.count_runs, filter=flt)

        return t.make_connection(
            [Run.from_row(r) for r in rows], [ctx.encode_cursor("run", r.id) for r in rows],
            first=first, after=after, count=count,
        )

    @strawberry.field(description="One run, by its id.")
    async def run(self, info: Info, id: strawberry.ID) -> Run | None:
        return await loaders(info).run.load(db_id(id, "Run"))

    @strawberry.field(description="Run requests (`nbatlas reproduce` invocations) in id order, a page at a time.")
    async def run_requests(self, info: Info, first: int | None = None, after: str | None = None) -> t.Connection[RunRequest]:
        ctx = info.context
        first = ctx.page_size(first)
        (after_id,) = ctx.cursor(after, "run_request", (int,)) or (None,)
        rows = await ctx.db.read(q.request_page, first=first, after=after_id)

        async def count() -> int:
            return await ctx.db.read(runs_q.count_requests)

        return t.make_connection(
            [RunRequest.from_row(r) for r in rows], [ctx.encode_cursor("run_request", r.id) for r in rows],
            first=first, after=after, count=count,
        )

    @strawberry.field(description="How the matching runs spread over each field asked: value/count pairs, most frequent first.")
    async def run_facets(
        self, info: Info, fields: list[RunFacetField], filter: RunFilterInput | None = None,  # type: ignore[valid-type]
        first: int | None = None,
    ) -> list[RunFacet]:
        ctx = info.context
        first = ctx.page_size(first, default=ctx.max_page_size)
        names = [f.value if isinstance(f, Enum) else f for f in fields]
        counts = await ctx.db.read(
            q.run_facets, filter=filter.to_filter() if filter is not None else None, fields=names, top=first
        )
        return [
            RunFacet(field=RunFacetField(name), values=[t.FacetValue(value=_facet_value(v), count=n) for v, n in counts[name]])
            for name in names
        ]


# --- fields on the corpus's own types (Notebook.runs, Cell.reproductions) resolve through these ---------

async def runs_of_notebook(info: Info, notebook_id: int, request_id: strawberry.ID | None) -> list[Run]:
    key = db_id(request_id, "RunRequest") if request_id is not None else None
    return await loaders(info).runs_of_notebook.load((notebook_id, key))


async def reproductions_of_cell(info: Info, cell_id: int, request_id: strawberry.ID | None) -> list[RunCell]:
    key = db_id(request_id, "RunRequest") if request_id is not None else None
    return await loaders(info).reproductions_of_cell.load((cell_id, key))
