"""Filter inputs. Each mirrors a filter dataclass of ``db.queries.filters`` field for field, so a
criterion added there (library, plot kind, stage, competition, votes...) is one field added here."""

from __future__ import annotations

from dataclasses import fields
from enum import Enum
from typing import Annotated

import strawberry

from api.database import UserError
from api.ids import db_id
from db import vocab
from db.queries import filters as f


def _tuple(values):
    return tuple(values) if values is not None else None


def _words(values, known: tuple[str, ...], what: str):
    """A criterion whose values come from a vocabulary: a typo is an error, not an empty result."""
    if values is None:
        return None
    unknown = [v for v in values if v not in known]
    if unknown:
        raise UserError(f"unknown {what} {unknown[0]!r}; known: {', '.join(known)}")
    return tuple(values)


def _kinds(values):
    return _words(values, vocab.PLOT_KINDS, "plot kind")


def _stages(values):
    return _words(values, vocab.STAGES, "stage")


def _values(values):
    return tuple(v.value if isinstance(v, Enum) else v for v in values) if values is not None else None


def vocabulary_checked(cls):
    """Closed vocabularies beyond plot kind and stage (cell type, output type, image format, source
    kind, failure class) refuse a typo here too, as the HTTP export and the CLI do: a value nobody
    stores would otherwise match nothing, silently."""
    build = cls.to_filter

    def to_filter(self):
        built = build(self)
        try:
            f.check_vocabularies(built)
        except f.FilterParamError as e:
            raise UserError(str(e)) from None
        return built

    to_filter.__doc__ = build.__doc__
    cls.to_filter = to_filter
    return cls


@strawberry.input(
    name="ReproductionFilter",
    description="Notebooks by how their reproduction went: the run of one of `requestId` when given, else each "
    "notebook's latest run.",
)
class ReproductionFilterInput:
    request_id: list[strawberry.ID] | None = strawberry.field(default=None, description="Run request ids (or row ids).")
    status: list[Annotated["RunStatus", strawberry.lazy("api.reproduce")]] | None = None
    failure_class: list[str] | None = strawberry.field(
        default=None, description="missing_module | missing_data_file | name_error | out_of_order | timeout | memory | ..."
    )
    ran_without_error: bool | None = None
    same_results: bool | None = None
    same_results_ignoring_images: bool | None = None
    same_plots: bool | None = None

    def to_filter(self) -> f.ReproductionFilter:
        return f.ReproductionFilter(
            request_id=tuple(db_id(i, "RunRequest") for i in self.request_id) if self.request_id is not None else None,
            status=_values(self.status), failure_class=_tuple(self.failure_class),
            ran_without_error=self.ran_without_error, same_results=self.same_results,
            same_results_ignoring_images=self.same_results_ignoring_images, same_plots=self.same_plots,
        )


@strawberry.input(name="NotebookFilter", description="Notebooks matching every criterion given (a list matches any of its values).")
@vocabulary_checked
class NotebookFilterInput:
    ids: list[strawberry.ID] | None = None
    sha256: list[str] | None = None
    language: list[str] | None = None
    kernel_name: list[str] | None = None
    nbformat: list[int] | None = strawberry.field(default=None, description="nbformat major version on disk (3 or 4).")
    source_kind: list[str] | None = strawberry.field(default=None, description="local | archive | kaggle")
    location_contains: str | None = strawberry.field(
        default=None, description="Case-insensitive substring of a source's path or Kaggle ref (on the public "
        "server, of a file's or an archive's name: the folders are not shown there, nor searched)."
    )
    has_images: bool | None = None
    min_cells: int | None = None
    max_cells: int | None = None
    library: list[str] | None = strawberry.field(
        default=None, description="Imports or calls any of these top-level libraries (sklearn, xgboost, seaborn...)."
    )
    competition: list[str] | None = strawberry.field(
        default=None, description="Kaggle: uses any of these competitions' data (slugs). The Kaggle criteria "
        "(competition to miningRun) must all hold for one Kaggle record of the notebook."
    )
    dataset: list[str] | None = strawberry.field(default=None, description="Kaggle: uses any of these datasets (owner/slug).")
    author: list[str] | None = strawberry.field(default=None, description="Kaggle user names.")
    min_votes: int | None = strawberry.field(default=None, description="Kaggle votes, at least.")
    max_votes: int | None = strawberry.field(default=None, description="Kaggle votes, at most.")
    kaggle_origin: list[str] | None = strawberry.field(default=None, description="api | meta-kaggle-code | kgtorrent")
    mining_run: list[int] | None = strawberry.field(default=None, description="Pulled or imported by these mining runs.")
    reproduction: ReproductionFilterInput | None = strawberry.field(
        default=None, description="How the notebook's (latest) reproduction run went."
    )

    def to_filter(self) -> f.NotebookFilter:
        return f.NotebookFilter(
            ids=tuple(db_id(i, "Notebook") for i in self.ids) if self.ids is not None else None,
            sha256=_tuple(self.sha256), language=_tuple(self.language), kernel_name=_tuple(self.kernel_name),
            nbformat=_tuple(self.nbformat), source_kind=_tuple(self.source_kind),
            location_contains=self.location_contains, has_images=self.has_images,
            min_cells=self.min_cells, max_cells=self.max_cells,
            library=_tuple(self.library), competition=_tuple(self.competition), dataset=_tuple(self.dataset),
            author=_tuple(self.author), min_votes=self.min_votes, max_votes=self.max_votes,
            kaggle_origin=_tuple(self.kaggle_origin), mining_run=_tuple(self.mining_run),
            reproduction=self.reproduction.to_filter() if self.reproduction is not None else None,
        )


def _notebook(value: NotebookFilterInput | None) -> f.NotebookFilter | None:
    return value.to_filter() if value is not None else None


@strawberry.input(name="CellFilter", description="Cells matching every criterion given.")
@vocabulary_checked
class CellFilterInput:
    ids: list[strawberry.ID] | None = None
    cell_type: list[str] | None = strawberry.field(default=None, description="code | markdown | raw")
    source_contains: str | None = strawberry.field(default=None, description="Case-insensitive substring of the source.")
    executed: bool | None = strawberry.field(default=None, description="Has an execution count.")
    has_outputs: bool | None = None
    has_images: bool | None = None
    library: list[str] | None = strawberry.field(default=None, description="Uses any of these top-level libraries.")
    stage: list[str] | None = strawberry.field(default=None, description="ML pipeline stage: `vocabulary.stages`.")
    plot_kind: list[str] | None = strawberry.field(default=None, description="Draws any of these: `vocabulary.plotKinds`.")
    call: list[str] | None = strawberry.field(
        default=None, description="Calls any of these, by resolved name (matplotlib.pyplot.plot, seaborn.heatmap)."
    )
    is_visualisation: bool | None = strawberry.field(default=None, description="Drew a figure or calls a plotting API.")
    notebook: NotebookFilterInput | None = strawberry.field(default=None, description="Only cells of these notebooks.")

    def to_filter(self) -> f.CellFilter:
        return f.CellFilter(
            ids=tuple(db_id(i, "Cell") for i in self.ids) if self.ids is not None else None,
            cell_type=_tuple(self.cell_type), source_contains=self.source_contains, executed=self.executed,
            has_outputs=self.has_outputs, has_images=self.has_images, library=_tuple(self.library),
            stage=_stages(self.stage), plot_kind=_kinds(self.plot_kind), call=_tuple(self.call),
            is_visualisation=self.is_visualisation, notebook=_notebook(self.notebook),
        )


@strawberry.input(name="OutputFilter", description="Outputs matching every criterion given.")
@vocabulary_checked
class OutputFilterInput:
    output_type: list[str] | None = strawberry.field(
        default=None, description="execute_result | display_data | stream | error"
    )
    mime_type: list[str] | None = strawberry.field(default=None, description="Any of these in the bundle.")
    has_images: bool | None = None
    ename: list[str] | None = strawberry.field(default=None, description="Error outputs: the exception class.")
    plot_kind: list[str] | None = strawberry.field(default=None, description="Shows a figure of any of these plot kinds.")
    notebook: NotebookFilterInput | None = None

    def to_filter(self) -> f.OutputFilter:
        return f.OutputFilter(
            output_type=_tuple(self.output_type), mime_type=_tuple(self.mime_type), has_images=self.has_images,
            ename=_tuple(self.ename), plot_kind=_kinds(self.plot_kind), notebook=_notebook(self.notebook),
        )


@strawberry.input(name="ImageFilter", description="Images matching every criterion given.")
@vocabulary_checked
class ImageFilterInput:
    sha256: list[str] | None = None
    mime: list[str] | None = strawberry.field(default=None, description="image/png | image/jpeg | image/gif | image/svg+xml")
    min_width: int | None = None
    max_width: int | None = None
    min_height: int | None = None
    max_height: int | None = None
    min_bytes: int | None = None
    max_bytes: int | None = None
    plot_kind: list[str] | None = strawberry.field(
        default=None, description="Drawn as any of these plot kinds. Plot kind, stage, library and notebook must all "
        "hold for one drawing of the image (an image two notebooks drew is judged drawing by drawing)."
    )
    stage: list[str] | None = strawberry.field(default=None, description="Drawn by a cell of one of these stages.")
    library: list[str] | None = strawberry.field(
        default=None, description="Drawn by a cell that uses any of these libraries (`notebook: {library:}` for the notebook's)."
    )
    notebook: NotebookFilterInput | None = strawberry.field(default=None, description="Drawn by one of these notebooks.")

    def to_filter(self) -> f.ImageFilter:
        return f.ImageFilter(
            sha256=_tuple(self.sha256), mime=_tuple(self.mime), min_width=self.min_width, max_width=self.max_width,
            min_height=self.min_height, max_height=self.max_height, min_bytes=self.min_bytes,
            max_bytes=self.max_bytes, plot_kind=_kinds(self.plot_kind), stage=_stages(self.stage),
            library=_tuple(self.library), notebook=_notebook(self.notebook),
        )


@strawberry.input(name="PlotFilter", description="Figures matching every criterion given.")
@vocabulary_checked
class PlotFilterInput:
    plot_kind: list[str] | None = strawberry.field(default=None, description="Any of these: `vocabulary.plotKinds`.")
    stage: list[str] | None = strawberry.field(default=None, description="The stage of the cell that drew it.")
    library: list[str] | None = strawberry.field(default=None, description="The cell that drew it uses any of these libraries.")
    call: list[str] | None = strawberry.field(default=None, description="Any of these among its plotting calls (seaborn.heatmap).")
    interactive: bool | None = None
    mime: list[str] | None = None
    notebook: NotebookFilterInput | None = strawberry.field(default=None, description="Drawn by one of these notebooks.")

    def to_filter(self) -> f.PlotFilter:
        return f.PlotFilter(
            plot_kind=_kinds(self.plot_kind), stage=_stages(self.stage), library=_tuple(self.library),
            call=_tuple(self.call), interactive=self.interactive, mime=_tuple(self.mime), notebook=_notebook(self.notebook),
        )


def _check_mirrors() -> None:
    """Fail at import when an input and its filter dataclass drift apart."""
    pairs = [
        (NotebookFilterInput, f.NotebookFilter),
        (ReproductionFilterInput, f.ReproductionFilter),
        (CellFilterInput, f.CellFilter),
        (OutputFilterInput, f.OutputFilter),
        (ImageFilterInput, f.ImageFilter),
        (PlotFilterInput, f.PlotFilter),
    ]
    for graphql_input, dataclass in pairs:
        theirs = {x.name for x in fields(dataclass) if not x.metadata.get("option")}  # options are the server's
        ours = set(graphql_input.__annotations__)
        if theirs != ours:
            raise RuntimeError(f"{graphql_input.__name__} and {dataclass.__name__} differ: {sorted(theirs ^ ours)}")


_check_mirrors()
