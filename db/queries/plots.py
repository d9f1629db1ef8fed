"""Figures (the plots outputs show) for the API: keyset pages, and counts over any combination of
plot kind, stage, library and competition ("count of plot kinds per stage").

A figure is one ``output_plot`` row: an image or an interactive figure one output shows, in one
mime type. Pages list those rows and ``plot_count`` counts them, so a count and the list it counts
agree; ``plot_counts`` (grouped) counts distinct outputs, so a plot an output shows as both PNG and
SVG counts once there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import Row, bindparam, desc, distinct, func, literal_column, select, text, true, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import CHAR, BigInteger
from sqlmodel import Session

from db.models import KaggleKernel
from db.queries.filters import PlotFilter, cell_analysis_t, output_plot_t

PLOT_COLUMNS = (
    "output_id", "mime", "cell_id", "notebook_id", "image_sha256", "interactive", "analyzer_version", "plot_kinds",
    "evidence", "plot_calls", "segment", "context_before", "context_after",
)

# what plot_counts can group figures by
DIMENSIONS = {
    "plot_kind": "the figure's plot kinds (a figure of two kinds counts under each)",
    "stage": "the ML stage of the cell that drew it",
    "library": "the libraries the drawing cell uses",
    "plot_library": "the libraries of its plotting calls (matplotlib, seaborn, plotly, shap...)",
    "competition": "the Kaggle competitions whose data the notebook uses",
}


def plot_page(
    *, session: Session, filter: PlotFilter | None = None, first: int, after: tuple[int, str] | None = None
) -> list[Row]:
    """Up to ``first + 1`` figures in (output, mime) order after ``after``."""
    p = output_plot_t
    q = select(*[p.c[name] for name in PLOT_COLUMNS]).where(*(filter.where() if filter else []))
    if after is not None:
        q = q.where(tuple_(p.c.output_id, p.c.mime) > tuple_(*after))
    return list(session.execute(q.order_by(p.c.output_id, p.c.mime).limit(first + 1)))


def plot_count(*, session: Session, filter: PlotFilter | None = None) -> int:
    """How many figures match: one per output and mime type, as ``plot_page`` lists them."""
    p = output_plot_t
    q = select(func.count()).select_from(p).where(*(filter.where() if filter else []))
    return int(session.execute(q).scalar_one())


def plot_counts(
    *, session: Session, by: Sequence[str], filter: PlotFilter | None = None, first: int = 1000
) -> list[tuple[tuple[str | None, ...], int]]:
    """Figures grouped by the ``by`` dimensions (see DIMENSIONS): ``[((value, ...), count)]``, most
    frequent first. A figure with no value for a dimension (no plot kind, a cell never analysed)
    counts under None."""
    if not by or len(set(by)) != len(by):
        raise ValueError("give one or more distinct dimensions")
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown dimension {unknown[0]!r}; known: {', '.join(DIMENSIONS)}")
    p = output_plot_t
    src = p
    values = []
    ca = cell_analysis_t.alias("ca")
    if "stage" in by or "library" in by:
        src = src.outerjoin(ca, ca.c.cell_id == p.c.cell_id)
    for dim in by:
        if dim == "plot_kind":
            kind = func.unnest(p.c.plot_kinds).table_valued("value").render_derived(name="k")
            src = src.outerjoin(kind, true())
            values.append(kind.c.value)
        elif dim == "stage":
            values.append(ca.c.stage)
        elif dim == "library":
            lib = func.unnest(ca.c.libraries).table_valued("value").render_derived(name="cl")
            src = src.outerjoin(lib, true())
            values.append(lib.c.value)
        elif dim == "plot_library":
            call = func.unnest(p.c.plot_calls).table_valued("name").render_derived(name="c")
            # resolved calls only: "<ax>.plot" or a user's own plot_roc() name no library
            top = (
                select(func.split_part(call.c.name, ".", 1).label("value")).select_from(call)
                .where(call.c.name.contains("."), ~call.c.name.startswith("<")).distinct().lateral("pl")
            )
            src = src.outerjoin(top, true())
            values.append(top.c.value)
        elif dim == "competition":
            kk = KaggleKernel.__table__.alias("kk")
            comp = (
                select(func.unnest(kk.c.competition_sources).label("value"))
                .where(kk.c.notebook_id == p.c.notebook_id).distinct().lateral("kc")
            )
            src = src.outerjoin(comp, true())
            values.append(comp.c.value)
    labelled = [v.label(f"v{i}") for i, v in enumerate(values)]
    n = func.count(distinct(p.c.output_id)).label("count")
    q = (
        select(*labelled, n).select_from(src).where(*(filter.where(p) if filter else []))
        .group_by(*[literal_column(f"v{i}") for i in range(len(values))])
        .order_by(desc("count"), *[literal_column(f"v{i}") for i in range(len(values))])
        .limit(first)
    )
    return [(tuple(row[:-1]), int(row[-1])) for row in session.execute(q)]


# --- batch loaders ---------------------------------------------------------------------------------

_SHAS = bindparam("ids", type_=ARRAY(CHAR(64)))  # CHAR(64) like the column, so its index is used
_PLOTS_OF_IMAGES = text(
    f"SELECT {', '.join(PLOT_COLUMNS)} FROM output_plot WHERE image_sha256 = ANY(:ids) ORDER BY output_id, mime"
).bindparams(_SHAS)
_PLOTS_OF_OUTPUTS = text(
    f"SELECT {', '.join(PLOT_COLUMNS)} FROM output_plot WHERE output_id = ANY(:ids) ORDER BY output_id, mime"
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))


def plots_of_images(*, session: Session, ids: Sequence[str]) -> dict[str, list[Row]]:
    """Every figure row showing each image (an image drawn by two notebooks has two), in output order."""
    out: dict[str, list[Row]] = defaultdict(list)
    for row in session.execute(_PLOTS_OF_IMAGES, {"ids": [s.lower() for s in ids]}):
        out[row.image_sha256].append(row)
    return out


def plots_of_outputs(*, session: Session, ids: Sequence[int]) -> dict[int, list[Row]]:
    """The figure rows of each output (one per mime type)."""
    out: dict[int, list[Row]] = defaultdict(list)
    for row in session.execute(_PLOTS_OF_OUTPUTS, {"ids": list(ids)}):
        out[row.output_id].append(row)
    return out
