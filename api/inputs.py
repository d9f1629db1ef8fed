"""Filter inputs. Each mirrors a filter dataclass of ``db.queries.filters`` field for field, so a
criterion added there (library, plot kind, stage, competition, votes...) is one field added here."""

from __future__ import annotations

from dataclasses import fields
from enum import Enum

from typing import Annotated

import strawberry

from api.ids import db_id
from db.queries import filters as f


def _tuple(values):
    return tuple(values) if values is not None else None


def _values(values):
    return tuple(v.value if isinstance(v, Enum) else v for v in values) if values is not None else None


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
class NotebookFilterInput:
    ids: list[strawberry.ID] | None = None
    sha256: list[str] | None = None
    language: list[str] | None = None
    kernel_name: list[str] | None = None
    nbformat: list[int] | None = strawberry.field(default=None, description="nbformat major version on disk (3 or 4).")
    source_kind: list[str] | None = strawberry.field(default=None, description="local | archive | kaggle")
    location_contains: str | None = strawberry.field(
        default=None, description="Case-insensitive substring of a source's path or Kaggle ref."
    )
    has_images: bool | None = None
    min_cells: int | None = None
    max_cells: int | None = None
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
            reproduction=self.reproduction.to_filter() if self.reproduction is not None else None,
        )


def _notebook(value: NotebookFilterInput | None) -> f.NotebookFilter | None:
    return value.to_filter() if value is not None else None


@strawberry.input(name="CellFilter", description="Cells matching every criterion given.")
class CellFilterInput:
    ids: list[strawberry.ID] | None = None
    cell_type: list[str] | None = strawberry.field(default=None, description="code | markdown | raw")
    source_contains: str | None = strawberry.field(default=None, description="Case-insensitive substring of the source.")
    executed: bool | None = strawberry.field(default=None, description="Has an execution count.")
    has_outputs: bool | None = None
    has_images: bool | None = None
    notebook: NotebookFilterInput | None = strawberry.field(default=None, description="Only cells of these notebooks.")

    def to_filter(self) -> f.CellFilter:
        return f.CellFilter(
            ids=tuple(db_id(i, "Cell") for i in self.ids) if self.ids is not None else None,
            cell_type=_tuple(self.cell_type), source_contains=self.source_contains, executed=self.executed,
            has_outputs=self.has_outputs, has_images=self.has_images, notebook=_notebook(self.notebook),
        )


@strawberry.input(name="OutputFilter", description="Outputs matching every criterion given.")
class OutputFilterInput:
    output_type: list[str] | None = strawberry.field(
        default=None, description="execute_result | display_data | stream | error"
    )
    mime_type: list[str] | None = strawberry.field(default=None, description="Any of these in the bundle.")
    has_images: bool | None = None
    ename: list[str] | None = strawberry.field(default=None, description="Error outputs: the exception class.")
    notebook: NotebookFilterInput | None = None

    def to_filter(self) -> f.OutputFilter:
        return f.OutputFilter(
            output_type=_tuple(self.output_type), mime_type=_tuple(self.mime_type), has_images=self.has_images,
            ename=_tuple(self.ename), notebook=_notebook(self.notebook),
        )


@strawberry.input(name="ImageFilter", description="Images matching every criterion given.")
class ImageFilterInput:
    sha256: list[str] | None = None
    mime: list[str] | None = strawberry.field(default=None, description="image/png | image/jpeg | image/gif | image/svg+xml")
    min_width: int | None = None
    max_width: int | None = None
    min_height: int | None = None
    max_height: int | None = None
    min_bytes: int | None = None
    max_bytes: int | None = None
    notebook: NotebookFilterInput | None = strawberry.field(default=None, description="Drawn by one of these notebooks.")

    def to_filter(self) -> f.ImageFilter:
        return f.ImageFilter(
            sha256=_tuple(self.sha256), mime=_tuple(self.mime), min_width=self.min_width, max_width=self.max_width,
            min_height=self.min_height, max_height=self.max_height, min_bytes=self.min_bytes,
            max_bytes=self.max_bytes, notebook=_notebook(self.notebook),
        )


def _check_mirrors() -> None:
    """Fail at import when an input and its filter dataclass drift apart."""
    pairs = [
        (NotebookFilterInput, f.NotebookFilter),
        (ReproductionFilterInput, f.ReproductionFilter),
        (CellFilterInput, f.CellFilter),
        (OutputFilterInput, f.OutputFilter),
        (ImageFilterInput, f.ImageFilter),
    ]
    for graphql_input, dataclass in pairs:
        theirs = {x.name for x in fields(dataclass)}
        ours = set(graphql_input.__annotations__)
        if theirs != ours:
            raise RuntimeError(f"{graphql_input.__name__} and {dataclass.__name__} differ: {sorted(theirs ^ ours)}")


_check_mirrors()
