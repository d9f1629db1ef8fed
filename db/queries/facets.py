"""Facets: how the notebooks matching a filter spread over one field, as (value, count) pairs.

Each facet counts what its field belongs to: notebooks for notebook fields (language, source kind),
cells for cell type, outputs for output and mime type, distinct images for image mime type. A facet
is one grouped statement; later issues add theirs (library, plot kind, stage, competition) by adding
an entry to ``FACETS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Select, cast, desc, distinct, func, literal_column, select
from sqlalchemy.types import Text
from sqlmodel import Session

from db.queries.filters import NotebookFilter, cell_t, image_t, notebook_t, output_image_t, output_t, run_t, source_t
from db.queries.filters import cell_analysis_t, notebook_analysis_t, output_plot_t


@dataclass(frozen=True)
class Facet:
    unit: str  # what is counted
    build: Callable[[NotebookFilter | None], Select]  # -> SELECT value, count ... GROUP BY value
    description: str


def _in_notebooks(column, filter: NotebookFilter | None):
    if filter is None or filter.is_empty():
        return []
    return [column.in_(filter.notebook_ids())]


def _notebook_column(column) -> Callable[[NotebookFilter | None], Select]:
    def build(filter: NotebookFilter | None) -> Select:
        value = cast(column, Text).label("value")
        return select(value, func.count().label("count")).where(*(filter.where() if filter else [])).group_by(value)

    return build


def _source_kind(filter: NotebookFilter | None) -> Select:
    value = source_t.c.kind.label("value")
    return (
        select(value, func.count(distinct(source_t.c.notebook_id)).label("count"))
        .where(*_in_notebooks(source_t.c.notebook_id, filter))
        .group_by(value)
    )


def _nbformat(filter: NotebookFilter | None) -> Select:
    value = cast(notebook_t.c.original_nbformat, Text).label("value")
    return select(value, func.count().label("count")).where(*(filter.where() if filter else [])).group_by(value)


def _cell_type(filter: NotebookFilter | None) -> Select:
    value = cell_t.c.cell_type.label("value")
    return select(value, func.count().label("count")).where(*_in_notebooks(cell_t.c.notebook_id, filter)).group_by(value)


def _output_type(filter: NotebookFilter | None) -> Select:
    value = output_t.c.output_type.label("value")
    return select(value, func.count().label("count")).where(*_in_notebooks(output_t.c.notebook_id, filter)).group_by(value)


def _mime_type(filter: NotebookFilter | None) -> Select:
    mime = func.unnest(output_t.c.mime_types).table_valued("value").render_derived(name="m")
    value = mime.c.value.label("value")
    return (
        select(value, func.count().label("count"))
        .select_from(output_t.join(mime, literal_column("true")))
        .where(*_in_notebooks(output_t.c.notebook_id, filter))
        .group_by(value)
    )


def _image_mime(filter: NotebookFilter | None) -> Select:
    value = image_t.c.mime.label("value")
    q = select(value, func.count().label("count")).group_by(value)
    if filter is None or filter.is_empty():
        return q
    drawn = (
        select(output_image_t.c.image_sha256)
        .join(output_t, output_t.c.id == output_image_t.c.output_id)
        .where(output_t.c.notebook_id.in_(filter.notebook_ids()))
    )
    return q.where(image_t.c.sha256.in_(drawn))


def _latest_run(column_name: str) -> Callable[[NotebookFilter | None], Select]:
    """Notebooks by a field of their latest reproduction run (notebooks never reproduced are not counted)."""

    def build(filter: NotebookFilter | None) -> Select:
        r, later = run_t.alias("r"), run_t.alias("r_later")
        newer = select(literal_column("1")).select_from(later).where(
            later.c.notebook_id == r.c.notebook_id, later.c.request_id > r.c.request_id
        )
        value = r.c[column_name].label("value")
        return (
            select(value, func.count().label("count"))
            .where(~newer.exists(), *_in_notebooks(r.c.notebook_id, filter))
            .group_by(value)
        )

    return build


def _library(filter: NotebookFilter | None) -> Select:
    na = notebook_analysis_t
    lib = func.unnest(na.c.libraries).table_valued("value").render_derived(name="l")
    value = lib.c.value.label("value")
    return (
        select(value, func.count(distinct(na.c.notebook_id)).label("count"))
        .select_from(na.join(lib, literal_column("true")))
        .where(*_in_notebooks(na.c.notebook_id, filter))
        .group_by(value)
    )


def _plot_kind(filter: NotebookFilter | None) -> Select:
    p = output_plot_t
    kind = func.unnest(p.c.plot_kinds).table_valued("value").render_derived(name="k")
    value = kind.c.value.label("value")
    # an output showing one plot as PNG and SVG is one figure
    return (
        select(value, func.count(distinct(p.c.output_id)).label("count"))
        .select_from(p.join(kind, literal_column("true")))
        .where(*_in_notebooks(p.c.notebook_id, filter))
        .group_by(value)
    )


def _stage(filter: NotebookFilter | None) -> Select:
    ca = cell_analysis_t
    value = ca.c.stage.label("value")
    return (
        select(value, func.count().label("count"))
        .select_from(ca.join(cell_t, cell_t.c.id == ca.c.cell_id))
        .where(cell_t.c.cell_type == "code", *_in_notebooks(ca.c.notebook_id, filter))
        .group_by(value)
    )


FACETS: dict[str, Facet] = {
    "source_kind": Facet("notebooks", _source_kind, "where notebooks were found: local, archive, kaggle"),
    "language": Facet("notebooks", _notebook_column(notebook_t.c.language), "the kernel's language"),
    "kernel_name": Facet("notebooks", _notebook_column(notebook_t.c.kernel_name), "the kernelspec name"),
    "nbformat": Facet("notebooks", _nbformat, "the nbformat major version on disk"),
    "cell_type": Facet("cells", _cell_type, "code, markdown, raw"),
    "output_type": Facet("outputs", _output_type, "execute_result, display_data, stream, error"),
    "mime_type": Facet("outputs", _mime_type, "every mime type in the outputs' bundles"),
    "image_mime": Facet("images", _image_mime, "distinct images by format"),
    "library": Facet("notebooks", _library, "top-level libraries the notebooks import or call"),
    "plot_kind": Facet("figures", _plot_kind, "figures (outputs showing a plot) by plot kind; one may have several"),
    "stage": Facet("cells", _stage, "code cells by ML pipeline stage"),
    "run_status": Facet("notebooks", _latest_run("status"), "how the latest reproduction run ended"),
    "failure_class": Facet("notebooks", _latest_run("failure_class"), "why the latest reproduction run failed"),
}


def all_facets() -> dict[str, Facet]:
    """FACETS plus the Kaggle ones (competition, author, votes, kaggle_origin), which
    ``db.queries.kaggle`` builds on this module and so are looked up late."""
    from db.queries.kaggle import KAGGLE_FACETS

    return {**FACETS, **KAGGLE_FACETS}


def facet_counts(
    *, session: Session, field: str, filter: NotebookFilter | None = None, first: int = 100
) -> list[tuple[str | None, int]]:
    """The ``first`` most frequent values of facet ``field`` (most frequent first; null is a value)."""
    facet = all_facets()[field]
    sub = facet.build(filter).subquery("f")
    q = select(sub.c.value, sub.c.count).order_by(desc(sub.c.count), sub.c.value).limit(first)
    return [(value, int(n)) for value, n in session.execute(q)]
