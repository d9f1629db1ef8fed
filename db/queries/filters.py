"""Filters over the corpus, shared by the API (GraphQL inputs, export query parameters) and the CLI.

Each filter is a frozen dataclass of optional criteria, combined with AND; a list criterion matches
any of its values. ``where()`` turns one into SQLAlchemy conditions whose values are always bound
parameters, never SQL text, so whatever a user types into a filter is only ever compared with data.

Later issues add criteria here (library, plot kind, stage, competition, votes): a new field plus its
condition in ``where()``; the GraphQL input and the export query parameters follow from the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, literal, select, true

from db import vocab
from db.models import Cell, Image, Notebook, Output, OutputImage, Run, Source
from db.models.reproduce import RUN_STATUSES
from db.models.understand import CellAnalysis, NotebookAnalysis, OutputPlot
from db.queries.codec import IMAGE_MIMES

notebook_t = Notebook.__table__
cell_t = Cell.__table__
output_t = Output.__table__
output_image_t = OutputImage.__table__
image_t = Image.__table__
source_t = Source.__table__
cell_analysis_t = CellAnalysis.__table__
notebook_analysis_t = NotebookAnalysis.__table__
output_plot_t = OutputPlot.__table__
run_t = Run.__table__


# Closed vocabularies: a criterion over one of these compares with words the database only ever holds
# from this list, so a value outside it (a typo) can match nothing and is refused instead.
CELL_TYPES = ("code", "markdown", "raw")  # nbformat 4
OUTPUT_TYPES = ("execute_result", "display_data", "stream", "error")  # nbformat 4
SOURCE_KINDS = ("local", "archive", "kaggle", "meta-kaggle-code", "kgtorrent")  # what ingest and the importers write
KAGGLE_ORIGINS = ("api", "meta-kaggle-code", "kgtorrent")


def _words(known: tuple[str, ...]):
    """A list criterion whose values must come from ``known`` (checked by ``check_vocabularies``)."""
    return field(default=None, metadata={"vocabulary": known})


def unknown_value_message(key: str, value: str, known: tuple[str, ...]) -> str:
    """The error for a value outside a closed vocabulary: the key, the value, the valid values."""
    import difflib

    close = [w for w in known if w.lower() == value.lower()] or difflib.get_close_matches(value, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{key}: unknown value {value!r}{hint}; valid values: {', '.join(known)}"


def _like_pattern(text: str) -> str:
    """A substring pattern for ILIKE with the user's own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"



def _analysis_conditions(ca, *, library=None, stage=None, plot_kind=None, call=None, is_visualisation=None):
    """Conditions on a cell's code analysis (``ca``: an alias of cell_analysis)."""
    conds: list[ColumnElement[bool]] = []
    if library is not None:
        conds.append(ca.c.libraries.overlap(list(library)))
    if stage is not None:
        conds.append(ca.c.stage.in_(stage))
    if plot_kind is not None:
        conds.append(ca.c.plot_kinds.overlap(list(plot_kind)))
    if call is not None:
        conds.append(ca.c.call_names.overlap(list(call)))
    if is_visualisation is not None:
        conds.append(ca.c.is_visualisation.is_(is_visualisation))
    return conds


def _criteria(filter_or_class):
    """The fields that are criteria (an option such as ``hide_folders`` says how to match, not what)."""
    return [f for f in fields(filter_or_class) if not f.metadata.get("option")]


def shown_location(s) -> ColumnElement[str]:
    """A source's location (``s``: the source table or an alias) as the public server shows it: a
    local file or an archive by its file name only (what follows the last "/"), so the folders of the
    machine that ingested the corpus stay private; a Kaggle ref (owner/slug) whole."""
    return case((s.c.kind == "kaggle", s.c.location), else_=func.regexp_replace(s.c.location, "^.*/", ""))


def location_shown(kind: str, location: str, *, hide_folders: bool) -> str:
    """``shown_location`` for one source row already read (GraphQL, the workbench)."""
    return location.rsplit("/", 1)[-1] if hide_folders and kind != "kaggle" else location


class _Filter:
    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in _criteria(self))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in _criteria(self):
            value = getattr(self, f.name)
            if isinstance(value, _Filter):
                value = value.as_dict() or None
            if value is not None:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class ReproductionFilter(_Filter):
    """Notebooks by how their reproduction went: the run of one of ``request_id`` when given, else
    each notebook's latest run (a notebook never reproduced matches no criterion)."""

    request_id: tuple[int, ...] | None = None
    status: tuple[str, ...] | None = _words(RUN_STATUSES)
    failure_class: tuple[str, ...] | None = _words(vocab.FAILURE_CLASSES)  # missing_module | missing_data_file | ...
    ran_without_error: bool | None = None
    same_results: bool | None = None
    same_results_ignoring_images: bool | None = None
    same_plots: bool | None = None

    def where_notebook(self, n) -> ColumnElement[bool]:
        r, later = run_t.alias("r"), run_t.alias("r_later")
        conds: list[ColumnElement[bool]] = [r.c.notebook_id == n.c.id]
        if self.request_id is not None:
            conds.append(r.c.request_id.in_(self.request_id))
        else:
            newer = select(literal(1)).select_from(later).where(
                later.c.notebook_id == r.c.notebook_id, later.c.request_id > r.c.request_id
            )
            conds.append(~exists(newer))
        for name in ("status", "failure_class"):
            if getattr(self, name) is not None:
                conds.append(r.c[name].in_(getattr(self, name)))
        for name in ("ran_without_error", "same_results", "same_results_ignoring_images", "same_plots"):
            if getattr(self, name) is not None:
                conds.append(r.c[name].is_(getattr(self, name)))
        return exists(select(literal(1)).select_from(r).where(*conds))


@dataclass(frozen=True)
class NotebookFilter(_Filter):
    ids: tuple[int, ...] | None = None
    sha256: tuple[str, ...] | None = None
    language: tuple[str, ...] | None = None
    kernel_name: tuple[str, ...] | None = None
    nbformat: tuple[int, ...] | None = None  # the version on disk (3 for upgraded v3 notebooks)
    source_kind: tuple[str, ...] | None = _words(SOURCE_KINDS)
    location_contains: str | None = None  # substring of any source's path or Kaggle ref
    has_images: bool | None = None
    min_cells: int | None = None
    max_cells: int | None = None
    library: tuple[str, ...] | None = None  # imports or calls any of these top-level libraries (sklearn, xgboost...)
    # Kaggle metadata: a notebook matches when one of its Kaggle rows meets every Kaggle criterion
    competition: tuple[str, ...] | None = None  # uses any of these competitions' data (slugs)
    dataset: tuple[str, ...] | None = None  # uses any of these datasets (owner/slug)
    author: tuple[str, ...] | None = None  # Kaggle user names
    min_votes: int | None = None
    max_votes: int | None = None
    kaggle_origin: tuple[str, ...] | None = _words(KAGGLE_ORIGINS)
    mining_run: tuple[int, ...] | None = None  # pulled or imported by these mining runs
    reproduction: ReproductionFilter | None = None  # how its (latest) reproduction run went
    # not a criterion: on the public server (``hiding_folders``) location_contains sees only what that
    # server shows, file names, so it cannot probe the folders the corpus was ingested from
    hide_folders: bool = field(default=False, metadata={"option": True})

    def where(self, n=notebook_t) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        if self.ids is not None:
            conds.append(n.c.id.in_(self.ids))
        if self.sha256 is not None:
            conds.append(n.c.sha256.in_([s.lower() for s in self.sha256]))
        if self.language is not None:
            conds.append(n.c.language.in_(self.language))
        if self.kernel_name is not None:
            conds.append(n.c.kernel_name.in_(self.kernel_name))
        if self.nbformat is not None:
            conds.append(n.c.original_nbformat.in_(self.nbformat))
        if self.source_kind is not None or self.location_contains is not None:
            s = source_t.alias("s")
            sconds = [s.c.notebook_id == n.c.id]
            if self.source_kind is not None:
                sconds.append(s.c.kind.in_(self.source_kind))
            if self.location_contains is not None:
                location = shown_location(s) if self.hide_folders else s.c.location
                sconds.append(location.ilike(_like_pattern(self.location_contains), escape="\\"))
            conds.append(exists(select(literal(1)).select_from(s).where(*sconds)))
        if self.has_images is not None:
            conds.append(n.c.n_image_outputs > 0 if self.has_images else n.c.n_image_outputs == 0)
        if self.min_cells is not None:
            conds.append(n.c.n_cells >= self.min_cells)
        if self.max_cells is not None:
            conds.append(n.c.n_cells <= self.max_cells)
        if self.library is not None:
            na = notebook_analysis_t.alias("na")
            conds.append(exists(select(literal(1)).select_from(na).where(
                na.c.notebook_id == n.c.id, na.c.libraries.overlap(list(self.library)))))
        kaggle = self.kaggle_filter()
        if kaggle is not None:
            conds += kaggle.where(n)
        if self.reproduction is not None and not self.reproduction.is_empty():
            conds.append(self.reproduction.where_notebook(n))
        return conds

    def kaggle_filter(self):
        """The Kaggle criteria as a ``db.queries.kaggle.KaggleFilter``, None when there are none."""
        from db.queries.kaggle import KaggleFilter  # it builds on this module

        found = KaggleFilter(
            competition=self.competition, dataset=self.dataset, author=self.author, min_votes=self.min_votes,
            max_votes=self.max_votes, origin=self.kaggle_origin, mining_run=self.mining_run,
        )
        return None if found.is_empty() else found

    def notebook_ids(self):
        """A subquery of the matching notebooks' ids, for filters on their cells, outputs and images."""
        return select(notebook_t.c.id).where(*self.where())


def _within_notebooks(column, notebook: NotebookFilter | None) -> list[ColumnElement[bool]]:
    if notebook is None or notebook.is_empty():
        return []
    if notebook.ids is not None and len(notebook.as_dict()) == 1:
        return [column.in_(notebook.ids)]  # the common case, without a subquery
    return [column.in_(notebook.notebook_ids())]


@dataclass(frozen=True)
class CellFilter(_Filter):
    ids: tuple[int, ...] | None = None
    cell_type: tuple[str, ...] | None = _words(CELL_TYPES)
    source_contains: str | None = None  # case-insensitive substring of the source
    executed: bool | None = None  # has an execution count
    has_outputs: bool | None = None
    has_images: bool | None = None
    # code understanding (cells never analysed match none of these)
    library: tuple[str, ...] | None = None  # uses any of these top-level libraries
    stage: tuple[str, ...] | None = _words(vocab.STAGES)  # ML pipeline stage
    plot_kind: tuple[str, ...] | None = _words(vocab.PLOT_KINDS)  # draws any of these plot kinds
    call: tuple[str, ...] | None = None  # calls any of these, by resolved name (matplotlib.pyplot.plot)
    is_visualisation: bool | None = None  # drew a figure or calls a plotting API
    notebook: NotebookFilter | None = None

    def where(self, c=cell_t) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        if self.ids is not None:
            conds.append(c.c.id.in_(self.ids))
        if self.cell_type is not None:
            conds.append(c.c.cell_type.in_(self.cell_type))
        if self.source_contains is not None:
            conds.append(c.c.source.ilike(_like_pattern(self.source_contains), escape="\\"))
        if self.executed is not None:
            conds.append(c.c.execution_count.isnot(None) if self.executed else c.c.execution_count.is_(None))
        if self.has_outputs is not None:
            has = exists(select(literal(1)).select_from(output_t).where(output_t.c.cell_id == c.c.id))
            conds.append(has if self.has_outputs else ~has)
        if self.has_images is not None:
            has = exists(
                select(literal(1))
                .select_from(output_t.join(output_image_t, output_image_t.c.output_id == output_t.c.id))
                .where(output_t.c.cell_id == c.c.id)
            )
            conds.append(has if self.has_images else ~has)
        understood = _analysis_conditions(
            ca := cell_analysis_t.alias("ca"), library=self.library, stage=self.stage, plot_kind=self.plot_kind,
            call=self.call, is_visualisation=self.is_visualisation,
        )
        if understood:
            conds.append(exists(select(literal(1)).select_from(ca).where(ca.c.cell_id == c.c.id, *understood)))
        conds += _within_notebooks(c.c.notebook_id, self.notebook)
        return conds


@dataclass(frozen=True)
class OutputFilter(_Filter):
    output_type: tuple[str, ...] | None = _words(OUTPUT_TYPES)
    mime_type: tuple[str, ...] | None = None  # any of these in the output's bundle
    has_images: bool | None = None
    ename: tuple[str, ...] | None = None  # error outputs: the exception class
    plot_kind: tuple[str, ...] | None = _words(vocab.PLOT_KINDS)  # shows a figure of any of these plot kinds
    notebook: NotebookFilter | None = None

    def where(self, o=output_t) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        if self.output_type is not None:
            conds.append(o.c.output_type.in_(self.output_type))
        if self.mime_type is not None:
            conds.append(o.c.mime_types.overlap(list(self.mime_type)))
        if self.has_images is not None:
            has = exists(select(literal(1)).select_from(output_image_t).where(output_image_t.c.output_id == o.c.id))
            conds.append(has if self.has_images else ~has)
        if self.ename is not None:
            conds.append(o.c.ename.in_(self.ename))
        if self.plot_kind is not None:
            p = output_plot_t.alias("p")
            conds.append(exists(select(literal(1)).select_from(p).where(
                p.c.output_id == o.c.id, p.c.plot_kinds.overlap(list(self.plot_kind)))))
        conds += _within_notebooks(o.c.notebook_id, self.notebook)
        return conds


@dataclass(frozen=True)
class ImageFilter(_Filter):
    sha256: tuple[str, ...] | None = None
    mime: tuple[str, ...] | None = _words(IMAGE_MIMES)
    min_width: int | None = None
    max_width: int | None = None
    min_height: int | None = None
    max_height: int | None = None
    min_bytes: int | None = None
    max_bytes: int | None = None
    # how it was drawn: one drawing of the image meets all of these (and the notebook filter, when given)
    plot_kind: tuple[str, ...] | None = _words(vocab.PLOT_KINDS)
    stage: tuple[str, ...] | None = _words(vocab.STAGES)  # of the cell that drew it
    library: tuple[str, ...] | None = None  # the cell that drew it uses any of these libraries
    notebook: NotebookFilter | None = None  # images drawn by at least one matching notebook

    def where(self, i=image_t) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        if self.sha256 is not None:
            conds.append(i.c.sha256.in_([s.lower() for s in self.sha256]))
        if self.mime is not None:
            conds.append(i.c.mime.in_(self.mime))
        for column, low, high in (
            (i.c.width, self.min_width, self.max_width),
            (i.c.height, self.min_height, self.max_height),
            (i.c.size_bytes, self.min_bytes, self.max_bytes),
        ):
            if low is not None:
                conds.append(column >= low)
            if high is not None:
                conds.append(column <= high)
        drawn = PlotFilter(plot_kind=self.plot_kind, stage=self.stage, library=self.library, notebook=self.notebook)
        if any(v is not None for v in (self.plot_kind, self.stage, self.library)):
            p = output_plot_t.alias("p")
            conds.append(exists(select(literal(1)).select_from(p).where(p.c.image_sha256 == i.c.sha256, *drawn.where(p))))
        elif self.notebook is not None and not self.notebook.is_empty():
            oi, o = output_image_t.alias("oi"), output_t.alias("o")
            conds.append(
                exists(
                    select(literal(1))
                    .select_from(oi.join(o, o.c.id == oi.c.output_id))
                    .where(oi.c.image_sha256 == i.c.sha256, *_within_notebooks(o.c.notebook_id, self.notebook))
                )
            )
        return conds


@dataclass(frozen=True)
class PlotFilter(_Filter):
    """Figures: what an output shows that the analyser recognised as a plot (an image, or an
    interactive plotly/bokeh/vega figure), one per output and mime type."""

    plot_kind: tuple[str, ...] | None = _words(vocab.PLOT_KINDS)
    stage: tuple[str, ...] | None = _words(vocab.STAGES)  # the stage of the cell that drew it
    library: tuple[str, ...] | None = None  # the cell that drew it uses any of these libraries
    call: tuple[str, ...] | None = None  # any of these among its plotting calls (seaborn.heatmap)
    interactive: bool | None = None
    mime: tuple[str, ...] | None = None
    notebook: NotebookFilter | None = None

    def where(self, p=output_plot_t) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        if self.plot_kind is not None:
            conds.append(p.c.plot_kinds.overlap(list(self.plot_kind)))
        if self.call is not None:
            conds.append(p.c.plot_calls.overlap(list(self.call)))
        if self.interactive is not None:
            conds.append(p.c.interactive.is_(self.interactive))
        if self.mime is not None:
            conds.append(p.c.mime.in_(self.mime))
        cell = _analysis_conditions(ca := cell_analysis_t.alias("ca"), library=self.library, stage=self.stage)
        if cell:
            conds.append(exists(select(literal(1)).select_from(ca).where(ca.c.cell_id == p.c.cell_id, *cell)))
        conds += _within_notebooks(p.c.notebook_id, self.notebook)
        return conds


def all_of(conds: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    return and_(*conds) if conds else true()


__all__ = [
    "CellFilter", "FilterParamError", "ImageFilter", "NotebookFilter", "OutputFilter", "ReproductionFilter", "all_of",
    "check_vocabularies", "filter_fields", "filter_from_params", "hiding_folders", "location_shown", "shown_location",
    "unknown_value_message",
]


class FilterParamError(ValueError):
    """A filter given as text (HTTP query parameters, ``--where``) names an unknown field or a bad value."""


def _parse_scalar(kind: type, name: str, raw: str):
    if kind is bool:
        value = raw.strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise FilterParamError(f"{name}: expected true or false, got {raw!r}")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise FilterParamError(f"{name}: expected a whole number, got {raw!r}") from None
    return raw


def filter_fields(filter_class: type, prefix: str = "") -> dict[str, tuple[type, bool]]:
    """Every criterion of a filter as ``dotted.name -> (value type, is_list)``, nested filters included."""
    import typing

    out: dict[str, tuple[type, bool]] = {}
    hints = typing.get_type_hints(filter_class)
    for f in _criteria(filter_class):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = args[0] if args else hint
        if isinstance(inner, type) and issubclass(inner, _Filter):
            out.update(filter_fields(inner, f"{prefix}{f.name}."))
        elif typing.get_origin(inner) is tuple:
            out[prefix + f.name] = (typing.get_args(inner)[0], True)
        else:
            out[prefix + f.name] = (inner, False)
    return out


def filter_from_params(filter_class: type, params: list[tuple[str, str]]):
    """Build a filter from ``name=value`` pairs: a list criterion takes repeated or comma-separated
    values, a nested one a dotted name (``notebook.language=python``). Returns None for no pairs."""
    known = filter_fields(filter_class)
    values: dict[str, Any] = {}
    for name, raw in params:
        if name not in known:
            raise FilterParamError(
                f"unknown filter {name!r} for {filter_class.__name__}; known: {', '.join(sorted(known))}"
            )
        kind, is_list = known[name]
        if is_list:
            parts = [p for p in (s.strip() for s in raw.split(",")) if p]
            values.setdefault(name, []).extend(_parse_scalar(kind, name, p) for p in parts)
        else:
            values[name] = _parse_scalar(kind, name, raw)
    if not values:
        return None

    def build(cls: type, prefix: str):
        import typing

        kwargs: dict[str, Any] = {}
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            hint = hints[f.name]
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            inner = args[0] if args else hint
            if isinstance(inner, type) and issubclass(inner, _Filter):
                nested = build(inner, f"{prefix}{f.name}.")
                if nested is not None:
                    kwargs[f.name] = nested
            elif prefix + f.name in values:
                v = values[prefix + f.name]
                kwargs[f.name] = tuple(v) if isinstance(v, list) else v
        return cls(**kwargs) if kwargs else None

    found = build(filter_class, "")
    if found is not None:
        check_vocabularies(found)
    return found


def check_vocabularies(filter: _Filter, prefix: str = "") -> None:
    """Refuse a value outside its criterion's closed vocabulary (plot kind, stage, cell type, output
    type, image format, ...): it would match nothing, silently. Open criteria (library,
    competition, ...) take any text."""
    for f in fields(filter):  # type: ignore[arg-type]
        value = getattr(filter, f.name)
        if isinstance(value, _Filter):
            check_vocabularies(value, f"{prefix}{f.name}.")
            continue
        known = f.metadata.get("vocabulary")
        if known is None or value is None:
            continue
        for v in value:
            if v not in known:
                raise FilterParamError(unknown_value_message(prefix + f.name, v, known))


def hiding_folders(value: Any) -> Any:
    """``value`` with every notebook filter in it, at any depth, matching source locations as the
    public server shows them (``shown_location``); anything that is not a filter comes back as is."""
    if not isinstance(value, _Filter):
        return value
    changes: dict[str, Any] = {
        f.name: hiding_folders(getattr(value, f.name)) for f in fields(value)  # type: ignore[arg-type]
        if isinstance(getattr(value, f.name), _Filter)
    }
    if isinstance(value, NotebookFilter):
        changes["hide_folders"] = True
    return replace(value, **changes) if changes else value  # type: ignore[type-var]
