"""Plot kinds from resolved calls and their arguments, with the evidence for each kind.

Rules work on one *figure segment* of a cell at a time (the calls between two ``plt.figure()`` /
``plt.show()`` boundaries), so a cell that draws a count plot, then a heatmap, then a histogram gives
each of its three images its own kind. Each rule names the call and what in its arguments decided
it (``seaborn.heatmap`` on ``df.corr()`` is a correlation heatmap, on ``confusion_matrix(...)`` a
confusion matrix). Specific kinds replace the generic shape they are drawn with: a ROC curve is not
also reported as a line, a confusion matrix not also as a heatmap.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from db.vocab import PLOT_KINDS  # shared with the API, which may not import ingest
from ingest.understand.calls import AXES, FIGURE, Call
from ingest.understand.quick import Quick

# a specific kind replaces the generic shapes it is drawn with (in the same figure segment)
SUPPRESSES = {
    "roc_curve": {"line", "scatter"},
    "precision_recall_curve": {"line"},
    "learning_curve": {"line", "scatter"},
    "calibration_curve": {"line", "histogram"},
    "partial_dependence": {"line", "heatmap", "other"},
    "confusion_matrix": {"heatmap", "image_grid"},
    "correlation_heatmap": {"heatmap", "image_grid"},
    "missing_values": {"heatmap", "bar", "other"},
    "feature_importance": {"bar", "scatter", "line"},
    "count": {"bar", "histogram"},
    "shap": {"bar", "scatter", "line", "other", "heatmap", "image_grid", "feature_importance"},
    "wordcloud": {"image_grid", "heatmap", "other"},
    "tree_diagram": {"other"},
    "residual_plot": {"scatter", "line"},
    "pairplot": {"scatter", "histogram", "density"},
}

PLOT_ROOTS = ("matplotlib", "seaborn", "plotly", "bokeh", "altair", "shap", "missingno", "wordcloud", "folium",
              "yellowbrick", "mlxtend.plotting", "scikitplot", "pandas.plotting", "geopandas", "squarify",
              "cufflinks", "holoviews", "hvplot", "pygal", "networkx.draw", "graphviz", "dtreeviz", "venn")

# matplotlib Axes / pyplot functions and the shape they draw
MPL_SHAPES = {
    "plot": "line", "semilogx": "line", "semilogy": "line", "loglog": "line", "step": "line", "stairs": "line",
    "fill_between": "line", "fill_betweenx": "line", "errorbar": "line", "stackplot": "line", "plot_date": "line",
    "stem": "line",
    "scatter": "scatter", "hexbin": "heatmap",
    "hist": "histogram", "hist2d": "heatmap",
    "bar": "bar", "barh": "bar", "broken_barh": "bar",
    "boxplot": "box", "violinplot": "violin", "pie": "pie",
    "imshow": "image_grid", "matshow": "heatmap", "pcolormesh": "heatmap", "pcolor": "heatmap", "spy": "heatmap",
    "contour": "other", "contourf": "other", "quiver": "other", "streamplot": "other", "tricontourf": "other",
    "eventplot": "other", "polar": "line",
}
SEABORN_SHAPES = {
    "heatmap": ("heatmap",), "clustermap": ("heatmap",), "histplot": ("histogram",), "kdeplot": ("density",),
    "ecdfplot": ("line",), "rugplot": (), "distplot": ("histogram", "density"), "displot": ("histogram",),
    "countplot": ("count",), "barplot": ("bar",), "boxplot": ("box",), "boxenplot": ("box",), "violinplot": ("violin",),
    "stripplot": ("scatter",), "swarmplot": ("scatter",), "scatterplot": ("scatter",), "regplot": ("scatter", "line"),
    "lmplot": ("scatter", "line"), "residplot": ("residual_plot",), "relplot": ("scatter",), "lineplot": ("line",),
    "pointplot": ("line",), "pairplot": ("pairplot",), "jointplot": ("scatter",), "catplot": ("bar",),
    "tsplot": ("line",),
}
PANDAS_KINDS = {"line": "line", "bar": "bar", "barh": "bar", "hist": "histogram", "box": "box", "kde": "density",
                "density": "density", "area": "line", "pie": "pie", "scatter": "scatter", "hexbin": "heatmap"}
PLOTLY_SHAPES = {
    "histogram": "histogram", "bar": "bar", "scatter": "scatter", "line": "line", "box": "box", "violin": "violin",
    "pie": "pie", "imshow": "heatmap", "density_heatmap": "heatmap", "density_contour": "density", "scatter_geo": "map",
    "choropleth": "map", "choropleth_mapbox": "map", "scatter_mapbox": "map", "line_geo": "map", "scatter_map": "map",
    "density_mapbox": "map", "scatter_matrix": "pairplot", "area": "line", "funnel": "bar", "treemap": "other",
    "sunburst": "pie", "scatter_3d": "scatter", "line_3d": "line", "strip": "scatter", "ecdf": "line",
    "parallel_coordinates": "line", "timeline": "bar",
    # graph_objects traces and Figure.add_* helpers
    "Scatter": "scatter", "Scattergl": "scatter", "Bar": "bar", "Histogram": "histogram", "Heatmap": "heatmap",
    "Pie": "pie", "Box": "box", "Violin": "violin", "Choropleth": "map", "Scattergeo": "map", "Scattermapbox": "map",
    "Histogram2d": "heatmap", "Contour": "other", "Surface": "other", "Scatter3d": "scatter", "Sunburst": "pie",
    "Treemap": "other", "Table": "other", "Sankey": "other", "Splom": "pairplot",
    "add_scatter": "scatter", "add_bar": "bar", "add_histogram": "histogram", "add_heatmap": "heatmap",
    "add_box": "box", "add_violin": "violin", "add_pie": "pie",
    "create_distplot": "histogram", "create_dendrogram": "other", "create_annotated_heatmap": "heatmap",
}
NAMED_KINDS = {
    # scikit-learn displays and helpers
    "ConfusionMatrixDisplay": "confusion_matrix", "plot_confusion_matrix": "confusion_matrix",
    "RocCurveDisplay": "roc_curve", "plot_roc_curve": "roc_curve", "plot_roc": "roc_curve", "ROCAUC": "roc_curve",
    "PrecisionRecallDisplay": "precision_recall_curve", "plot_precision_recall_curve": "precision_recall_curve",
    "plot_precision_recall": "precision_recall_curve", "PrecisionRecallCurve": "precision_recall_curve",
    "CalibrationDisplay": "calibration_curve", "plot_calibration_curve": "calibration_curve",
    "PartialDependenceDisplay": "partial_dependence", "plot_partial_dependence": "partial_dependence",
    "pdp_plot": "partial_dependence", "pdp_isolate": "partial_dependence", "pdp_interact_plot": "partial_dependence",
    "DetCurveDisplay": "roc_curve", "LearningCurveDisplay": "learning_curve", "ValidationCurveDisplay": "learning_curve",
    "plot_tree": "tree_diagram", "export_graphviz": "tree_diagram", "dtreeviz": "tree_diagram",
    "plot_importance": "feature_importance", "FeatureImportances": "feature_importance",
    "plot_metric": "learning_curve", "plot_learning_curve": "learning_curve", "LearningCurve": "learning_curve",
    "ValidationCurve": "learning_curve",
    "ConfusionMatrix": "confusion_matrix", "ClassificationReport": "heatmap", "ResidualsPlot": "residual_plot",
    "PredictionError": "scatter", "CVScores": "bar", "DiscriminationThreshold": "line", "Rank2D": "correlation_heatmap",
    "plot_decision_regions": "scatter", "scatter_matrix": "pairplot", "WordCloud": "wordcloud",
    "squarify.plot": "other", "dendrogram": "other", "probplot": "other", "qqplot": "other",
    "plot_acf": "line", "plot_pacf": "line", "andrews_curves": "line", "parallel_coordinates": "line",
    "radviz": "scatter", "lag_plot": "scatter", "autocorrelation_plot": "line", "Basemap": "map",
}
MAP_ROOTS = ("folium", "geopandas", "mpl_toolkits.basemap", "cartopy", "geoplot", "plotly.express.choropleth")

LEARNING = Quick(r"history|epoch|\b(?:train|val|valid|validation|test)_?(?:loss|acc|accuracy|mae|rmse|score|auc)"
                      r"|_losses|\blosses\b|cost_|errors_|evals_result|mae_history|learning.?curve|iteration",
                      re.I, needles=('history', 'epoch', 'loss', 'acc', 'mae', 'rmse', 'score', 'auc', 'cost_', 'errors_', 'evals_result', 'learning', 'iteration'))
ROC = Quick(r"roc_curve|\bfpr\b|false positive rate|\broc\b|receiver operating", re.I, needles=('roc', 'fpr', 'false positive rate', 'receiver operating'))
PR = Quick(r"precision_recall_curve|recall.*precision.*curve", re.I, needles=('precision',))
CALIB = Quick(r"calibration_curve", re.I, needles=('calibration_curve',))
CONFUSION = Quick(r"confusion|(?<![.\w])cm(?![.\w])|(?<![.\w])cm_|_cm\b|\bconf_?mat", re.I, needles=('confusion', 'cm', 'conf'))
CORR = Quick(r"\.corr\(|corrcoef|corr_matrix|correlation|\bcorr\b|_corr\b|\bcorr_", re.I, needles=('corr',))
MISSING = Quick(r"isnull\(\)|isna\(\)|\bmissing|\bnull", re.I, needles=('null', 'isna', 'missing'))
IMPORTANCE = Quick(r"importance|\.coef_|\bcoefs?\b|feature_imp|mutual.?info", re.I, needles=('importance', 'coef', 'feature_imp', 'mutual'))
RESIDUAL = Quick(r"resid", re.I, needles=('resid',))
DENSITY = Quick(r"\.pdf\(|\bpdf\b|gaussian_kde|\bkde\b|density", re.I, needles=('pdf', 'kde', 'density'))
WORDCLOUD = Quick(r"wordcloud|word_cloud|\bwc\b|_wc\b|\bcloud\b", re.I, needles=('wordcloud', 'word_cloud', 'wc', 'cloud'))
PDP = Quick(r"partial_dependence|\bpdp\b", re.I, needles=('partial_dependence', 'pdp'))
COUNTS = Quick(r"value_counts|\.size\(\)|\.count\(\)|countplot", re.I, needles=('value_counts', '.size()', '.count()', 'countplot'))


_PLOT_NAMES = frozenset({*MPL_SHAPES, *SEABORN_SHAPES, *PLOTLY_SHAPES, *PANDAS_KINDS, *(k.split(".")[-1] for k in NAMED_KINDS),
                         "plot", "hist", "boxplot", "line", "vbar", "hbar", "circle", "quad", "from_estimator",
                         "from_predictions", "figure", "jointplot", "FacetGrid", "PairGrid", "JointGrid"})
_PLOT_PREFIXES = ("shap.", "missingno.", *MAP_ROOTS, "geopandas", "altair.")


def is_plot_library(name: str) -> bool:
    return any(name == r or name.startswith(r + ".") for r in PLOT_ROOTS)


def starts_figure(call: Call) -> bool:
    """A call that opens a new figure: the next image of the cell starts here."""
    n = call.name
    if n in ("matplotlib.pyplot.figure", "matplotlib.pyplot.subplots", "plotly.graph_objects.Figure",
             "plotly.subplots.make_subplots", "matplotlib.pyplot.subplot_mosaic"):
        return True
    if n.startswith("plotly.express.") or n.startswith("plotly.figure_factory."):
        return True
    if n.startswith("seaborn.") and call.last in ("pairplot", "jointplot", "FacetGrid", "catplot", "relplot",
                                                   "displot", "lmplot", "clustermap", "PairGrid", "JointGrid"):
        return True
    if n.startswith("shap.") and _shap_plot(call):
        return True
    if n.startswith("missingno."):
        return True
    return False


_SHOWS = frozenset({"matplotlib.pyplot.show", f"{FIGURE}.show", "plotly.graph_objects.Figure.show", "plotly.offline.iplot",
                     "plotly.offline.plot", "plotly.plotly.iplot", "bokeh.plotting.show", "bokeh.io.show"})


def ends_figure(call: Call) -> bool:
    """A call that shows the current figure (so the following plot calls make another image)."""
    n = call.name
    if n in _SHOWS:
        return True
    if call.last in ("show", "poof", "iplot") and not call.resolved:
        return True
    if n in ("display", "IPython.display.display") and call.args:
        return True
    return False


def _shap_plot(call: Call) -> bool:
    parts = call.name.split(".")
    return parts[0] == "shap" and ("plots" in parts or "plot" in parts[-1] or parts[-1] in (
        "waterfall", "beeswarm", "bar", "heatmap", "scatter", "violin", "text", "image", "force", "decision", "summary"))


def _pandas_kind(call: Call) -> str | None:
    """Kind of a pandas ``.plot``-style call, or None when the call is not one."""
    parts = call.name.split(".")
    if call.last == "plot" and (not call.resolved or parts[0] == "pandas" or "()" in parts[-2:] or parts[-2] == "[]"):
        kind = call.kwargs.get("kind", "").strip("'\"")
        return PANDAS_KINDS.get(kind, "line") if kind or "kind" not in call.kwargs else "line"
    if len(parts) >= 2 and parts[-2] == "plot" and call.last in PANDAS_KINDS and (not call.resolved or parts[0] == "pandas"):
        return PANDAS_KINDS[call.last]
    if call.last in ("hist",) and (not call.resolved or parts[0] == "pandas") and not call.name.startswith(AXES):
        return "histogram"
    if call.last == "boxplot" and (not call.resolved or parts[0] == "pandas") and not call.name.startswith(AXES):
        return "box"
    return None


def shape_of(call: Call) -> tuple[str, ...]:
    """The generic shapes a call draws (before argument-based refinement)."""
    if call.shapes is None:
        call.shapes = _shape_of(call)
    return call.shapes


@functools.lru_cache(maxsize=65_536)
def _may_plot(name: str) -> bool:
    """Whether any rule of _shape_of can match a call of this name (its last part and prefix decide);
    remembered, as the same names come back cell after cell."""
    last = name[name.rfind(".") + 1:]
    return last in _PLOT_NAMES or last.startswith("mark_") or name.startswith(_PLOT_PREFIXES)


def _shape_of(call: Call) -> tuple[str, ...]:
    n, last = call.name, call.last
    # most calls are not plotting calls: a look-up rules them out before any rule runs
    if not _may_plot(n):
        return ()
    if n.startswith("shap.") and _shap_plot(call):
        return ("shap",)
    if n.startswith("missingno."):
        return ("missing_values",)
    if n.startswith(MAP_ROOTS) or (n.startswith("geopandas") and last == "plot"):
        return ("map",)
    parts = set(n.split("."))
    for key, kind in NAMED_KINDS.items():
        if key in parts or (("." in key) and n == key):
            if key == "plot_importance" and not (n.startswith(("xgboost", "lightgbm", "catboost")) or not call.resolved):
                continue
            if key == "dendrogram" and not n.startswith(("scipy", "plotly")):
                continue
            if key == "WordCloud" and not n.startswith("wordcloud"):
                continue
            return (kind,) if kind != "scatter" or key != "plot_decision_regions" else ("scatter", "other")
    if n.startswith("seaborn."):
        shapes = SEABORN_SHAPES.get(last)
        if shapes is None:
            return ()
        if last == "distplot":
            kde = call.kwargs.get("kde", "True") != "False"
            hist = call.kwargs.get("hist", "True") != "False"
            return tuple(k for k, on in (("histogram", hist), ("density", kde)) if on)
        if last == "histplot" and call.kwargs.get("kde") == "True":
            return ("histogram", "density")
        if last in ("displot", "catplot", "relplot"):
            kind = call.kwargs.get("kind", "").strip("'\"")
            mapping = {"kde": ("density",), "hist": ("histogram",), "ecdf": ("line",), "box": ("box",),
                       "violin": ("violin",), "count": ("count",), "bar": ("bar",), "point": ("line",),
                       "strip": ("scatter",), "swarm": ("scatter",), "boxen": ("box",), "line": ("line",),
                       "scatter": ("scatter",)}
            if kind in mapping:
                return mapping[kind]
            if last == "displot" and call.kwargs.get("kde") == "True":
                return ("histogram", "density")
            return {"displot": ("histogram",), "catplot": ("scatter",), "relplot": ("scatter",)}[last]
        if last == "jointplot":
            kind = call.kwargs.get("kind", "").strip("'\"")
            return {"kde": ("density",), "hex": ("heatmap",), "hist": ("heatmap",), "reg": ("scatter", "line")}.get(kind, ("scatter",))
        return shapes
    if n.startswith("plotly."):
        if last in PLOTLY_SHAPES:
            shape = PLOTLY_SHAPES[last]
            if shape == "scatter" and "lines" in call.kwargs.get("mode", "") and "markers" not in call.kwargs.get("mode", ""):
                return ("line",)
            if last == "create_distplot":
                return ("histogram", "density")
            if last == "histogram" and "marginal" in call.kwargs:
                marginal = call.kwargs["marginal"].strip("'\"")
                return ("histogram", {"box": "box", "violin": "violin", "rug": "histogram"}.get(marginal, "histogram"))
            return (shape,)
        return ()
    if n.startswith("matplotlib.pyplot.") or n.startswith(AXES + ".") or (not call.resolved and last in MPL_SHAPES
                                                                         and _axes_like(call)):
        if last in MPL_SHAPES:
            return (MPL_SHAPES[last],)
        return ()
    pk = _pandas_kind(call)
    if pk:
        return (pk,)
    if n.startswith("bokeh.plotting") and last in ("figure",):
        return ()
    if not call.resolved and last in ("line", "vbar", "hbar", "circle", "scatter", "quad") and "<p>" in n:
        return ({"line": "line", "vbar": "bar", "hbar": "bar", "circle": "scatter", "scatter": "scatter", "quad": "histogram"}[last],)
    if n.startswith("altair.") and last.startswith("mark_"):
        return ({"mark_bar": "bar", "mark_line": "line", "mark_point": "scatter", "mark_circle": "scatter",
                 "mark_rect": "heatmap", "mark_area": "line", "mark_boxplot": "box", "mark_tick": "scatter",
                 "mark_geoshape": "map", "mark_arc": "pie"}.get(last, "other"),)
    if not call.resolved and last.startswith("mark_"):
        return ({"mark_bar": "bar", "mark_line": "line", "mark_point": "scatter", "mark_circle": "scatter",
                 "mark_rect": "heatmap", "mark_area": "line", "mark_boxplot": "box"}.get(last, "other"),)
    return ()


_AXES_NAME = re.compile(r"<(ax|axs|axes|ax\d+|ax_\w+|axis|subplot\w*|sp|plot)>", re.I)
_PICTURE_WORDS = re.compile(r"img|image|pixel|digit|sample", re.I)


def _axes_like(call: Call) -> bool:
    """An unresolved receiver that plots like an Axes (``axes[0].plot``, ``ax1.scatter`` from a helper)."""
    root = call.name.split(".")[0]
    if call.last in ("plot", "hist", "boxplot"):  # also pandas methods: only Axes-named receivers
        return bool(_AXES_NAME.match(root))
    return True


def is_plot_call(call: Call) -> bool:
    return bool(shape_of(call))


@dataclass
class KindEvidence:
    kind: str
    call: str
    line: int
    rule: str
    via: str | None = None

    def as_json(self) -> dict:
        out = {"kind": self.kind, "call": self.call, "line": self.line, "rule": self.rule}
        if self.via:
            out["via"] = self.via
        return out


def _refine(call: Call, shape: str, context: str) -> tuple[str, str]:
    """Refine a generic shape by what is plotted: (kind, rule)."""
    args = call.arg_text()
    if shape in ("heatmap", "image_grid"):
        if ".corr(" in args or "corrcoef" in args:
            return "correlation_heatmap", f"{call.last} of a correlation matrix (.corr())"
        if CONFUSION.search(args):
            return "confusion_matrix", f"{call.last} of a confusion matrix ({_hit(CONFUSION, args)})"
        if MISSING.search(args):
            return "missing_values", f"{call.last} of missing values ({_hit(MISSING, args)})"
        if CORR.search(args):
            return "correlation_heatmap", f"{call.last} of a correlation matrix ({_hit(CORR, args)})"
        if WORDCLOUD.search(args) or "wordcloud" in context:
            return "wordcloud", f"{call.last} of a word cloud"
        if shape == "image_grid" and (_in_context(CONFUSION, context) and "confusion_matrix(" in context):
            return "confusion_matrix", "imshow next to confusion_matrix()"
        if shape == "image_grid" and "colorbar" in context and not _PICTURE_WORDS.search(args):
            return "heatmap", "imshow with a colorbar"
        return shape, f"{call.name}"
    if shape == "line":
        if ROC.search(args) or (_in_context(ROC, context) and call.last in ("plot", "step", "line")):
            return "roc_curve", f"line of ROC data ({_hit(ROC, args) or _context_hit(ROC, context)})"
        if PR.search(args) or _in_context(PR, context):
            return "precision_recall_curve", "line of precision/recall curve data"
        if CALIB.search(args) or _in_context(CALIB, context):
            return "calibration_curve", "line of calibration_curve data"
        if LEARNING.search(args) or (_in_context(LEARNING, context) and call.last in ("plot", "lineplot", "line")):
            return "learning_curve", f"line of training history ({_hit(LEARNING, args) or _context_hit(LEARNING, context)})"
        if PDP.search(args):
            return "partial_dependence", "line of partial dependence"
        if IMPORTANCE.search(args):
            return "feature_importance", f"line of importances ({_hit(IMPORTANCE, args)})"
        if DENSITY.search(args):
            return "density", f"line of a density ({_hit(DENSITY, args)})"
        return "line", call.name
    if shape == "bar":
        if IMPORTANCE.search(args) or _in_context(IMPORTANCE, context):
            return "feature_importance", f"bars of importances ({_hit(IMPORTANCE, args) or _context_hit(IMPORTANCE, context)})"
        if MISSING.search(args):
            return "missing_values", f"bars of missing values ({_hit(MISSING, args)})"
        if COUNTS.search(args) or COUNTS.search(call.name):
            return "count", f"bars of category counts ({_hit(COUNTS, args) or _hit(COUNTS, call.name)})"
        return "bar", call.name
    if shape == "scatter":
        if RESIDUAL.search(args):
            return "residual_plot", "scatter of residuals"
        if ROC.search(args):
            return "roc_curve", "points of ROC data"
        return "scatter", call.name
    if shape == "histogram" and call.name.startswith("pandas") is False and COUNTS.search(args) and "plot" in call.last:
        return "count", "bars of value counts"
    return shape, call.name


def _hit(pattern: re.Pattern, text: str) -> str:
    m = pattern.search(text)
    return m.group(0) if m else ""


# (pattern id, context) -> match: a segment's context (up to 20,000 characters) is the same for each
# of its calls, and scanning it once per call was most of the plot-kind time on long cells. By id:
# hashing a compiled pattern hashes its whole program.
_CONTEXT_MATCHES: dict[tuple[int, str], re.Match | None] = {}


def _in_context(pattern: re.Pattern, context: str) -> re.Match | None:
    key = (id(pattern), context)
    try:
        return _CONTEXT_MATCHES[key]
    except KeyError:
        if len(_CONTEXT_MATCHES) > 256:
            _CONTEXT_MATCHES.clear()
        m = _CONTEXT_MATCHES[key] = pattern.search(context)
        return m


def _context_hit(pattern: re.Pattern, context: str) -> str:
    m = _in_context(pattern, context)
    return m.group(0) if m else ""


def kinds_for_calls(calls: Iterable[Call]) -> tuple[list[str], list[KindEvidence]]:
    """Plot kinds of one figure segment, in vocabulary order, with evidence."""
    calls = list(calls)
    # capped: a generated cell's context would make every regex scan megabytes
    context = " ".join(c.text + " " + c.arg_text() for c in calls[:300])[:20000]
    found: dict[str, KindEvidence] = {}
    for call in calls:
        for shape in shape_of(call):
            kind, rule = _refine(call, shape, context)
            if kind not in found:
                found[kind] = KindEvidence(kind, call.name, call.line, rule, call.via)
    suppressed = set()
    for kind in found:
        suppressed |= SUPPRESSES.get(kind, set()) - {kind}
    kinds = [k for k in PLOT_KINDS if k in found and k not in suppressed]
    return kinds, [found[k] for k in kinds]


def segments_of(calls: Iterable[Call]) -> list[list[Call]]:
    """Top-level plotting segments of a cell (each one is expected to make one image)."""
    by_segment: dict[int, list[Call]] = {}
    plotting: set[int] = set()  # the segments with a plotting call, found in the same pass
    for call in calls:
        if call.in_def:
            continue
        segment = call.segment
        seg = by_segment.get(segment)
        if seg is None:
            seg = by_segment[segment] = []
        seg.append(call)
        if segment not in plotting and is_plot_call(call):
            plotting.add(segment)
    if not plotting:  # most cells
        return []
    return [seg for segment, seg in sorted(by_segment.items()) if segment in plotting]
