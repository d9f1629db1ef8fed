"""Code understanding in the API: what each cell imports, calls and is for (its ML stage), the plot
kind of every figure with the evidence, the cell that drew it and the markdown around it; pages of
figures and counts over plot kind x stage x library x competition.

Plot kinds and stages are plain strings from ``db.vocab`` (``vocabulary`` lists them), so a value a
facet returns can be passed straight back into a filter. Resolvers are thin: arguments ->
``db.queries.understand`` / ``db.queries.plots`` (batched by the DataLoaders below, made fresh for
every request) -> these types.
"""

from __future__ import annotations

from enum import Enum

import strawberry
from strawberry.types import Info

from api import types as t
from api.context import _by_key, _children
from api.inputs import PlotFilterInput
from db import vocab
from db.queries import plots as plots_q
from db.queries import understand as understand_q


class UnderstandLoaders:
    """This module's DataLoaders, one set per request (see ``loaders``)."""

    def __init__(self, db) -> None:
        self.analysis_of_cell = _by_key(db, understand_q.analysis_for_cells, CodeAnalysis.from_row)
        self.plots_of_image = _children(db, plots_q.plots_of_images, Plot.from_row)
        self.plots_of_output = _children(db, plots_q.plots_of_outputs, Plot.from_row)
        self.libraries_of_notebook = _by_key(db, understand_q.libraries_for_notebooks, list)


def loaders(info: Info) -> UnderstandLoaders:
    """This request's loaders (made on first use: the context is per request)."""
    ctx = info.context
    found = getattr(ctx, "understand_loaders", None)
    if found is None:
        found = ctx.understand_loaders = UnderstandLoaders(ctx.db)
    return found


@strawberry.type(description="A keyword argument of a call, as written.")
class KeywordArgument:
    name: str
    value: str = strawberry.field(description="The argument's source text (long ones shortened).")


@strawberry.type(description="A call a cell makes, resolved through its imports and aliases.")
class Call:
    name: str = strawberry.field(
        description="Resolved dotted name: matplotlib.pyplot.plot for plt.plot, seaborn.heatmap for sns.heatmap; "
        "<name>.method when the receiver's origin is unknown."
    )
    text: str = strawberry.field(description="The callee as written (plt.plot).")
    line: int = strawberry.field(description="1-based line in the cell.")
    args: list[str] = strawberry.field(description="Positional arguments as source text (long ones shortened).")
    keyword_args: list[KeywordArgument]
    resolved: bool = strawberry.field(description="False when the receiver's origin is unknown (a DataFrame from elsewhere...).")
    via: str | None = strawberry.field(description="The notebook's own function this call happens in, when reached through it.")

    @classmethod
    def from_json(cls, c: dict) -> Call:
        return cls(
            name=c["name"], text=c["text"], line=c["line"], args=list(c.get("args") or ()),
            keyword_args=[KeywordArgument(name=k, value=v) for k, v in (c.get("kwargs") or {}).items()],
            resolved=c.get("resolved", True), via=c.get("via"),
        )


@strawberry.type(description="One name a cell imports.")
class Import:
    module: str = strawberry.field(description="The module (sklearn.metrics for `from sklearn.metrics import roc_curve`).")
    name: str | None = strawberry.field(description="The name imported from it, for `from ... import`.")
    alias: str = strawberry.field(description="The name the cell binds (np for `import numpy as np`).")
    line: int


@strawberry.type(description="What the code analyser found in one cell (markdown cells get a stage only).")
class CodeAnalysis:
    libraries: list[str] = strawberry.field(description="Top-level libraries the cell imports or calls (sklearn, seaborn...).")
    imports: list[Import]
    calls: list[Call] = strawberry.field(description="The calls the cell makes, in order, resolved.")
    call_names: list[str] = strawberry.field(description="The distinct resolved call names (filter cells by them with `call`).")
    stage: str = strawberry.field(description="ML pipeline stage: one of `vocabulary.stages`.")
    stage_evidence: list[str] = strawberry.field(description="Why the stage was given.")
    is_visualisation: bool = strawberry.field(description="Drew a figure, or calls a plotting API.")
    plot_kinds: list[str] = strawberry.field(description="Plot kinds of the cell's figures: `vocabulary.plotKinds`.")
    parsed: bool = strawberry.field(description="False when the code did not parse (facts then come from its tokens).")
    parse_error: str | None
    ipython_syntax: bool = strawberry.field(description="The cell uses %magics, !shell or ?help.")
    analyzer_version: int

    @classmethod
    def from_row(cls, r: dict) -> CodeAnalysis:
        return cls(
            libraries=r["libraries"], imports=[Import(module=i["module"], name=i.get("name"), alias=i["alias"], line=i["line"])
                                               for i in r["imports"] or ()],
            calls=[Call.from_json(c) for c in r["calls"] or ()], call_names=r["call_names"], stage=r["stage"],
            stage_evidence=list(r["stage_evidence"] or ()), is_visualisation=r["is_visualisation"],
            plot_kinds=r["plot_kinds"], parsed=r["parsed"], parse_error=r["parse_error"],
            ipython_syntax=r["ipython_syntax"], analyzer_version=r["analyzer_version"],
        )


@strawberry.type(description="Why a figure was given a plot kind.")
class PlotEvidence:
    kind: str
    call: str = strawberry.field(description="The resolved call that drew it.")
    line: int = strawberry.field(description="Its line in the cell.")
    rule: str = strawberry.field(description="The rule that decided (e.g. seaborn.heatmap on confusion_matrix(...)).")
    via: str | None = strawberry.field(description="The notebook's own function the call happens in, if any.")


@strawberry.type(
    description="A figure: a plot one output shows (an image, or an interactive plotly/bokeh/vega figure), "
    "with its plot kinds, the evidence, the cell that drew it and the markdown around that cell."
)
class Plot:
    mime: str
    interactive: bool = strawberry.field(description="An interactive figure (its JSON stays in the output's data).")
    plot_kinds: list[str] = strawberry.field(
        description="One or more of `vocabulary.plotKinds`; empty when the notebook's code was not analysed (another kernel language)."
    )
    evidence: list[PlotEvidence]
    plot_calls: list[str] = strawberry.field(description="The plotting calls that drew it (resolved names).")
    segment: int | None = strawberry.field(
        description="Which figure of its cell it is (0-based; null when the cell's figures could not be told apart)."
    )
    context_before: str | None = strawberry.field(description="The nearest markdown before the cell that drew it.")
    context_after: str | None = strawberry.field(description="The markdown cell right after it.")
    analyzer_version: int
    output_id: strawberry.Private[int]
    cell_id: strawberry.Private[int]
    notebook_id: strawberry.Private[int]
    image_sha256: strawberry.Private[str | None]

    @classmethod
    def from_row(cls, r) -> Plot:
        return cls(
            mime=r.mime, interactive=r.interactive, plot_kinds=r.plot_kinds,
            evidence=[PlotEvidence(kind=e["kind"], call=e["call"], line=e["line"], rule=e["rule"], via=e.get("via"))
                      for e in r.evidence or ()],
            plot_calls=r.plot_calls, segment=r.segment, context_before=r.context_before, context_after=r.context_after,
            analyzer_version=r.analyzer_version, output_id=r.output_id, cell_id=r.cell_id, notebook_id=r.notebook_id,
            image_sha256=r.image_sha256.strip() if r.image_sha256 else None,
        )

    @strawberry.field(description="The image, unless the figure is interactive.")
    async def image(self, info: Info) -> t.Image | None:
        return await info.context.loaders.image.load(self.image_sha256) if self.image_sha256 else None

    @strawberry.field
    async def output(self, info: Info) -> t.Output:
        return await info.context.loaders.output.load(self.output_id)

    @strawberry.field(description="The cell that drew it.")
    async def cell(self, info: Info) -> t.Cell:
        return await info.context.loaders.cell.load(self.cell_id)

    @strawberry.field
    async def notebook(self, info: Info) -> t.Notebook:
        return await info.context.loaders.notebook.load(self.notebook_id)

    @strawberry.field(description="The ML stage of the cell that drew it.")
    async def stage(self, info: Info) -> str | None:
        analysis = await loaders(info).analysis_of_cell.load(self.cell_id)
        return analysis.stage if analysis is not None else None


@strawberry.type(description="The markdown around the cell that drew an image.")
class PlotContext:
    before: str | None = strawberry.field(description="The nearest markdown before the cell.")
    after: str | None = strawberry.field(description="The markdown cell right after it.")


PlotDimension = strawberry.enum(
    Enum("PlotDimension", {name.upper(): name for name in plots_q.DIMENSIONS}),
    description="What `plotCounts` can group figures by: "
    + "; ".join(f"{name.upper()}: {text}" for name, text in plots_q.DIMENSIONS.items()) + ".",
)


@strawberry.type(description="How many figures have one combination of values.")
class PlotCount:
    values: list[str | None] = strawberry.field(
        description="One value per dimension asked in `by`, in that order (null: the figure has none)."
    )
    count: int = strawberry.field(description="Figures (outputs showing a plot).")


@strawberry.type(description="The words code understanding uses, as filters and facets take them.")
class Vocabulary:
    plot_kinds: list[str]
    stages: list[str] = strawberry.field(description="ML pipeline stages, in pipeline order.")


@strawberry.type
class UnderstandQuery:
    @strawberry.field(
        description="Figures in output order, a page at a time: e.g. ROC curves of notebooks importing xgboost, "
        'filter: {plotKind: ["roc_curve"], notebook: {library: ["xgboost"]}}. One node per output and mime type '
        "(an output showing a plot as both PNG and SVG is two nodes, and `totalCount` counts both); `plotCounts` "
        "counts outputs."
    )
    async def plots(
        self, info: Info, first: int | None = None, after: str | None = None, filter: PlotFilterInput | None = None
    ) -> t.Connection[Plot]:
        ctx = info.context
        first = ctx.page_size(first)
        cursor = ctx.cursor(after, "plot", (int, str))
        flt = filter.to_filter() if filter is not None else None
        rows = await ctx.db.read(plots_q.plot_page, filter=flt, first=first, after=cursor)

        async def count() -> int:
            return await ctx.db.read(plots_q.plot_count, filter=flt)

        return t.make_connection(
            [Plot.from_row(r) for r in rows], [ctx.encode_cursor("plot", r.output_id, r.mime) for r in rows],
            first=first, after=after, count=count,
        )

    @strawberry.field(
        description="Figures counted by one or more dimensions, most frequent first: "
        "`plotCounts(by: [STAGE, PLOT_KIND])` is the count of plot kinds per stage."
    )
    async def plot_counts(
        self, info: Info, by: list[PlotDimension], filter: PlotFilterInput | None = None,  # type: ignore[valid-type]
        first: int | None = None,
    ) -> list[PlotCount]:
        ctx = info.context
        first = ctx.page_size(first, default=ctx.max_page_size)
        names = [d.value if isinstance(d, Enum) else d for d in by]
        if not names or len(set(names)) != len(names):
            from api.database import UserError

            raise UserError("by: give one or more distinct dimensions")
        rows = await ctx.db.read(
            plots_q.plot_counts, by=names, filter=filter.to_filter() if filter is not None else None, first=first
        )
        return [PlotCount(values=list(values), count=n) for values, n in rows]

    @strawberry.field(description="Plot kinds and stages, as the analyser writes them (and filters take them).")
    async def vocabulary(self) -> Vocabulary:
        return Vocabulary(plot_kinds=list(vocab.PLOT_KINDS), stages=list(vocab.STAGES))


# --- fields on the corpus's own types (Cell.analysis, Image.plots...) resolve through these -----------

async def cell_analysis(info: Info, cell_id: int) -> CodeAnalysis | None:
    return await loaders(info).analysis_of_cell.load(cell_id)


async def image_plots(info: Info, sha256: str) -> list[Plot]:
    return await loaders(info).plots_of_image.load(sha256)


async def image_plot_kinds(info: Info, sha256: str) -> list[str]:
    kinds: list[str] = []
    for plot in await image_plots(info, sha256):
        kinds += [k for k in plot.plot_kinds if k not in kinds]
    return kinds


async def image_context(info: Info, sha256: str) -> PlotContext | None:
    found = await image_plots(info, sha256)
    return PlotContext(before=found[0].context_before, after=found[0].context_after) if found else None


async def output_plots(info: Info, output_id: int) -> list[Plot]:
    return await loaders(info).plots_of_output.load(output_id)


async def notebook_libraries(info: Info, notebook_id: int) -> list[str] | None:
    return await loaders(info).libraries_of_notebook.load(notebook_id)

