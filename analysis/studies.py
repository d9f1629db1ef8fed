"""The study's analyses, each a client of the GraphQL API (no database access).

Every study takes an ``NbatlasClient`` and an output folder and writes ``<name>.csv``, ``<name>.png``
(matplotlib, Agg) and returns a ``Section`` whose Markdown says what the figures show, or, when the
corpus has no data for that capability yet, says so in a sentence instead of drawing an empty chart.
``analysis.report`` runs them all (``nbatlas report``).
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: figures go to files
import matplotlib.pyplot as plt  # noqa: E402

from analysis.client import NbatlasClient, NbatlasError  # noqa: E402

EVALUATION_KINDS = ("confusion_matrix", "roc_curve", "precision_recall_curve", "learning_curve", "calibration_curve")
EXPLAINABILITY_KINDS = ("shap", "feature_importance", "partial_dependence")
# notebook ids sent in one filter when a count is asked a part of the corpus at a time: ~10 bytes
# each, well inside a public server's 256 KiB request body
MAX_IDS_PER_QUERY = 5000
TOP = 8  # libraries/kinds drawn by name in a figure; the rest are summed as "(others)"


@dataclass
class Section:
    name: str
    title: str
    markdown: str
    csv: Path | None = None
    figures: list[Path] = field(default_factory=list)
    more_tables: list[Path] = field(default_factory=list)
    has_data: bool = True


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _stacked_bars(path: Path, stages: list[str], table: dict[str, Counter], title: str, xlabel: str) -> Path:
    """Horizontal stacked bars, one per stage, the TOP most frequent keys by name and the rest as others."""
    totals: Counter = Counter()
    for c in table.values():
        totals.update(c)
    keys = [k for k, _ in totals.most_common(TOP)]
    has_others = len(totals) > len(keys)
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.45 * len(stages) + 1.5)), dpi=100)
    left = [0] * len(stages)
    cmap = plt.get_cmap("tab10")
    for i, key in enumerate(keys + (["(others)"] if has_others else [])):
        if key == "(others)":
            widths = [sum(v for k, v in table[s].items() if k not in keys) for s in stages]
            color = "#bbbbbb"
        else:
            widths = [table[s].get(key, 0) for s in stages]
            color = cmap(i % 10)
        ax.barh(stages, widths, left=left, label=key, color=color)
        left = [a + b for a, b in zip(left, widths)]
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    # beside the bars, never over them
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _stage_order(api: NbatlasClient, seen: Iterable[str]) -> list[str]:
    vocab = api.query("{ vocabulary { stages } }")["vocabulary"]["stages"]
    seen = set(seen)
    return [s for s in vocab if s in seen] + sorted(seen - set(vocab))


def _plot_filter(nf: dict | None, **criteria: Any) -> dict | None:
    """A PlotFilter: the study's own criteria, restricted to the report's notebooks (``--filter``)."""
    flt = {k: v for k, v in criteria.items() if v is not None}
    if nf:
        flt["notebook"] = nf
    return flt or None


def _notebook_count(api: NbatlasClient, nf: dict | None) -> int:
    data = api.query("query($f: NotebookFilter) { notebooks(first: 1, filter: $f) { totalCount } }", {"f": nf})
    return data["notebooks"]["totalCount"] or 0


_NOTEBOOK_IDS = """query($first: Int, $after: String, $filter: NotebookFilter) {
  notebooks(first: $first, after: $after, filter: $filter) { nodes { dbId } pageInfo { hasNextPage endCursor } }
}"""

Counts = dict[tuple, int]


def _complete_counts(api: NbatlasClient, nf: dict | None, fetch: Callable[[dict | None], tuple[Counts, bool]],
                     what: str) -> Counts:
    """Every group of a count whose answer is one list capped at the server's page size, with no
    cursor to page on (plotCounts, runFacets). ``fetch(notebook_filter)`` asks for the groups among
    those notebooks and says whether the list came back full (so maybe cut short). A full answer is
    asked again a part of the selected notebooks at a time (halving a part that is still full) and
    the parts are summed: figures and runs each belong to one notebook, so the counts add up."""
    counts, full = fetch(nf)
    if not full:
        return counts
    ids = [nb["dbId"] for nb in api.paginate(_NOTEBOOK_IDS, "notebooks", {"filter": nf})]
    size = MAX_IDS_PER_QUERY if len(ids) > MAX_IDS_PER_QUERY else max(1, -(-len(ids) // 2))
    pending = [ids[i:i + size] for i in range(0, len(ids), size)]
    total: Counter = Counter()
    while pending:
        part = pending.pop()
        counts, full = fetch({**(nf or {}), "ids": [str(i) for i in part]})
        if full:
            if len(part) == 1:
                raise NbatlasError(f"{what}: notebook {part[0]} alone has more groups than this server answers "
                                   f"in one list ({api.page_cap()}): the table would be cut short")
            mid = len(part) // 2
            pending += [part[:mid], part[mid:]]
            continue
        total.update(counts)
    return dict(total)


_PLOT_COUNTS = """query($by: [PlotDimension!]!, $filter: PlotFilter, $first: Int) {
  plotCounts(by: $by, filter: $filter, first: $first) { values count }
}"""


def _plot_counts(api: NbatlasClient, by: list[str], flt: dict | None = None) -> list[tuple[list[str | None], int]]:
    """Figures per group of ``by`` (every group, however many pages of the server's size they fill),
    most frequent first."""
    cap = api.page_cap()

    def fetch(nf: dict | None) -> tuple[Counts, bool]:
        f = {k: v for k, v in (flt or {}).items() if k != "notebook"}
        if nf:
            f["notebook"] = nf
        groups = api.query(_PLOT_COUNTS, {"by": by, "filter": f or None, "first": cap})["plotCounts"]
        return {tuple(g["values"]): g["count"] for g in groups}, len(groups) >= cap

    counts = _complete_counts(api, (flt or {}).get("notebook"), fetch, f"plotCounts by {', '.join(by)}")
    return [(list(values), n) for values, n in sorted(counts.items(), key=lambda r: -r[1])]


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# --- (a) visualisation libraries per stage -------------------------------------------------------


def libraries_per_stage(api: NbatlasClient, out: Path, nf: dict | None = None) -> Section:
    name, title = "libraries_per_stage", "Visualisation libraries per ML stage"
    rows = _plot_counts(api, ["STAGE", "PLOT_LIBRARY"], _plot_filter(nf))
    rows = [((s or "unknown"), lib, n) for (s, lib), n in rows if lib]
    if not rows:
        return Section(name, title, "No figure in the corpus has a resolved plotting call yet (run `nbatlas analyze`).", has_data=False)
    table, stages = _by_stage(api, rows)
    csv_path = _write_csv(out / f"{name}.csv", ["stage", "library", "figures"], rows)
    png = _stacked_bars(out / f"{name}.png", stages, table, title, "figures drawn by the library")
    totals: Counter = Counter()
    for c in table.values():
        totals.update(c)
    lead = ", ".join(f"{lib} ({n})" for lib, n in totals.most_common(5))
    top_per_stage = [(s, table[s].most_common(1)[0][0], sum(table[s].values())) for s in stages]
    md = (
        f"Figures counted per ML stage of the cell that drew them and per library of their plotting calls "
        f"(a figure drawn with two libraries counts for both). Most used: {lead}.\n\n"
        + _markdown_table(["stage", "most used library", "figure-library pairs"], top_per_stage)
    )
    return Section(name, title, md, csv_path, [png])


def _by_stage(api: NbatlasClient, rows: list[tuple[str, str, int]]) -> tuple[dict[str, Counter], list[str]]:
    """(stage, value, count) rows as a stage -> Counter table and the stages in pipeline order; the
    rows are sorted in place the same way (stage order, then most counted first)."""
    table: dict[str, Counter] = defaultdict(Counter)
    for stage, value, n in rows:
        table[stage][value] += n
    stages = _stage_order(api, table)
    rows.sort(key=lambda r: (stages.index(r[0]), -r[2], r[1]))
    return table, stages


# --- (b) plot kinds per stage, evaluation plots ---------------------------------------------------

_PLOTS_NOTEBOOKS = """query($first: Int, $after: String, $filter: PlotFilter) {
  plots(first: $first, after: $after, filter: $filter) {
    nodes { notebook { dbId } }
    pageInfo { hasNextPage endCursor }
  }
}"""


def notebooks_with_plots(api: NbatlasClient, kinds: Sequence[str], nf: dict | None = None) -> set[int]:
    """Row ids of the notebooks (among those ``nf`` selects) with at least one figure of any of these kinds."""
    flt = _plot_filter(nf, plotKind=list(kinds))
    return {p["notebook"]["dbId"] for p in api.paginate(_PLOTS_NOTEBOOKS, "plots", {"filter": flt})}


def plot_kinds_per_stage(api: NbatlasClient, out: Path, nf: dict | None = None) -> Section:
    name, title = "plot_kinds_per_stage", "Plot kinds per ML stage, and evaluation plots"
    rows = [((s or "unknown"), k, n) for (s, k), n in _plot_counts(api, ["STAGE", "PLOT_KIND"], _plot_filter(nf)) if k]
    if not rows:
        return Section(name, title, "No figure in the corpus has a plot kind yet (run `nbatlas analyze`).", has_data=False)
    table, stages = _by_stage(api, rows)
    csv_path = _write_csv(out / f"{name}.csv", ["stage", "plot_kind", "figures"], rows)
    png = _stacked_bars(out / f"{name}.png", stages, table, "Plot kinds per ML stage", "figures of the kind")

    # distinct figures per stage: a figure of two kinds is one figure here, two rows in the CSV
    in_stage = {(st or "unknown"): n for (st,), n in _plot_counts(api, ["STAGE"], _plot_filter(nf))}
    total = _notebook_count(api, nf)
    share_rows = []
    for kind in (*EVALUATION_KINDS, "any evaluation plot"):
        kinds = EVALUATION_KINDS if kind == "any evaluation plot" else (kind,)
        n = len(notebooks_with_plots(api, kinds, nf))
        share_rows.append((kind, n, total, round(n / total, 4) if total else 0.0))
    share_csv = _write_csv(out / "evaluation_plot_share.csv", ["plot_kind", "notebooks", "all_notebooks", "share"], share_rows)
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    ax.barh([r[0] for r in share_rows], [100 * r[3] for r in share_rows], color=["#4c72b0"] * 5 + ["#dd8452"])
    ax.invert_yaxis()
    ax.set_xlabel("% of notebooks with at least one")
    ax.set_title("Evaluation plots")
    fig.tight_layout()
    share_png = out / "evaluation_plot_share.png"
    fig.savefig(share_png)
    plt.close(fig)

    any_eval = share_rows[-1]
    md = (
        f"{any_eval[1]} of {total} notebooks ({100 * any_eval[3]:.1f}%) draw at least one evaluation plot "
        f"({', '.join(EVALUATION_KINDS)}). A figure may have several kinds.\n\n"
        + _markdown_table(["plot kind", "notebooks", "share"], [(r[0], r[1], f"{100 * r[3]:.1f}%") for r in share_rows])
        + "\n\nMost frequent kind per stage (figures of that kind, and all figures the stage's cells drew):\n\n"
        + _markdown_table(
            ["stage", "most frequent kind", "figures of that kind", "figures in the stage"],
            [(s, *table[s].most_common(1)[0], in_stage.get(s, 0)) for s in stages],
        )
    )
    return Section(name, title, md, csv_path, [png, share_png], [share_csv])


# --- (c) explainability --------------------------------------------------------------------------


def explainability(api: NbatlasClient, out: Path, nf: dict | None = None) -> Section:
    name, title = "explainability", "Explainability plots and their libraries"
    flt = _plot_filter(nf, plotKind=list(EXPLAINABILITY_KINDS))
    rows = [
        (k, lib or "(no library call)", n)
        for (k, lib), n in _plot_counts(api, ["PLOT_KIND", "PLOT_LIBRARY"], flt)
        if k in EXPLAINABILITY_KINDS
    ]
    if not rows:
        return Section(name, title, f"No explainability plot ({', '.join(EXPLAINABILITY_KINDS)}) in the corpus yet.", has_data=False)
    rows.sort(key=lambda r: (EXPLAINABILITY_KINDS.index(r[0]), -r[2], r[1]))
    csv_path = _write_csv(out / f"{name}.csv", ["plot_kind", "library", "figures"], rows)
    table: dict[str, Counter] = defaultdict(Counter)
    for kind, lib, n in rows:
        table[kind][lib] += n
    kinds = [k for k in EXPLAINABILITY_KINDS if k in table]
    png = _stacked_bars(out / f"{name}.png", kinds, table, title, "figures drawn by the library")
    figures = {k: n for (k,), n in _plot_counts(api, ["PLOT_KIND"], flt) if k in EXPLAINABILITY_KINDS}
    notebooks = {k: len(notebooks_with_plots(api, [k], nf)) for k in kinds}
    md = (
        "Figures of each explainability kind, by the library of their plotting calls (a figure drawn by a "
        "user's own helper function has no library call).\n\n"
        + _markdown_table(
            ["plot kind", "figures", "notebooks", "libraries"],
            [(k, figures.get(k, 0), notebooks[k], ", ".join(f"{lib} ({n})" for lib, n in table[k].most_common(4))) for k in kinds],
        )
    )
    return Section(name, title, md, csv_path, [png])


# --- (d) reproducibility (Pimentel et al.) --------------------------------------------------------

_RUN_FACETS = """query($fields: [RunFacetField!]!, $filter: RunFilter, $first: Int) {
  runFacets(fields: $fields, filter: $filter, first: $first) { field values { value count } }
}"""
_RUN_TOTAL = "query($filter: RunFilter) { runs(first: 1, filter: $filter) { totalCount } }"
_OK_RUNS = """query($first: Int, $after: String, $filter: RunFilter) {
  runs(first: $first, after: $after, filter: $filter) { nodes { nCodeCells } pageInfo { hasNextPage endCursor } }
}"""


def _run_facets(api: NbatlasClient, fields: list[str], nf: dict | None) -> dict[str, dict[Any, int]]:
    """Runs per value of each field (every value, however many pages of the server's size they fill)."""
    cap = api.page_cap()

    def fetch(part: dict | None) -> tuple[Counts, bool]:
        facets = api.query(_RUN_FACETS, {"fields": fields, "filter": {"notebook": part} if part else None,
                                         "first": cap})["runFacets"]
        counts = {(f["field"], v["value"]): v["count"] for f in facets for v in f["values"]}
        return counts, any(len(f["values"]) >= cap for f in facets)

    found: dict[str, dict[Any, int]] = {f: {} for f in fields}
    for (name, value), n in _complete_counts(api, nf, fetch, f"runFacets of {', '.join(fields)}").items():
        found[name][value] = n
    return found


def reproducibility(api: NbatlasClient, out: Path, nf: dict | None = None) -> Section:
    name, title = "reproducibility", "Reproducibility outcomes and failure causes"
    total = api.query(_RUN_TOTAL, {"filter": {"notebook": nf} if nf else None})["runs"]["totalCount"] or 0
    if not total:
        return Section(
            name, title,
            ("No notebook the filter selects has been re-executed" if nf else "No notebook has been re-executed yet")
            + ", so there is no reproducibility record: run `nbatlas reproduce` and build the report again.",
            has_data=False,
        )
    facets = _run_facets(api, ["STATUS", "FAILURE_CLASS", "SAME_RESULTS"], nf)
    status = facets.get("STATUS", {})
    same = facets.get("SAME_RESULTS", {})
    ok = sum(n for s, n in status.items() if (s or "").lower() == "ok")
    identical = sum(n for v, n in same.items() if str(v).lower() == "true")
    # a notebook with no code to run "finishes" trivially: shown apart, so the rate is not inflated
    no_code = sum(1 for run in api.paginate(_OK_RUNS, "runs", {"filter": {"status": ["OK"], **({"notebook": nf} if nf else {})}})
                  if run["nCodeCells"] == 0)
    # Pimentel et al. (2019), Table: executed -> exceptions / finished -> same / different results
    outcome = [
        ("runs", total),
        ("finished with an exception or limit", total - ok),
        ("finished without error", ok),
        ("  of which no code to run", no_code),
        ("  same results", identical),
        ("  different results", ok - identical),
    ]
    causes = sorted(((c, n) for c, n in facets.get("FAILURE_CLASS", {}).items() if c), key=lambda r: (-r[1], r[0]))
    rows = [("outcome", k.strip(), n, round(n / total, 4)) for k, n in outcome]
    rows += [("failure_class", c, n, round(n / total, 4)) for c, n in causes]
    csv_path = _write_csv(out / f"{name}.csv", ["table", "row", "runs", "share_of_runs"], rows)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    a1.barh([k.strip() for k, _ in outcome], [n for _, n in outcome], color="#4c72b0")
    a1.invert_yaxis()
    a1.set_title("Outcomes")
    if causes:
        a2.barh([c for c, _ in causes[:12]], [n for _, n in causes[:12]], color="#c44e52")
        a2.invert_yaxis()
    a2.set_title("Failure causes")
    fig.tight_layout()
    png = out / f"{name}.png"
    fig.savefig(png)
    plt.close(fig)
    md = (
        "Re-execution outcomes in the layout of Pimentel et al. (2019), over every recorded run.\n\n"
        + _markdown_table(["outcome", "runs", "share"], [(k, n, f"{100 * n / total:.1f}%") for k, n in outcome])
        + ("\n\nFailure causes:\n\n" + _markdown_table(["cause", "runs", "share"], [(c, n, f"{100 * n / total:.1f}%") for c, n in causes]) if causes else "")
    )
    return Section(name, title, md, csv_path, [png])


# --- (e) the same, split by competition and by votes quartile --------------------------------------

_NOTEBOOKS_KAGGLE = """query($first: Int, $after: String, $filter: NotebookFilter) {
  notebooks(first: $first, after: $after, filter: $filter) {
    nodes { dbId kaggle { competitions votes } }
    pageInfo { hasNextPage endCursor }
  }
}"""
NO_COMPETITION = "(no competition)"
NO_KAGGLE = "(no Kaggle metadata)"
TOP_COMPETITIONS = 12  # drawn by name in the figure; the CSVs list every competition


def votes_quartiles(votes: Sequence[int]) -> list[tuple[str, int, int]]:
    """(label, min votes, max votes) of each quartile of ``votes`` (one value per notebook), as closed
    integer ranges that a ``minVotes``/``maxVotes`` filter can ask for. Ties never straddle a boundary,
    so quartiles differ in size when many notebooks share a count, and a quartile that ties swallow
    entirely is left out."""
    v = sorted(votes)
    if not v:
        return []
    n = len(v)
    cuts = [v[-(-k * n // 4) - 1] for k in (1, 2, 3)]  # the value at rank ceil(k*n/4)
    bounds, lo = [], v[0]
    for k, hi in enumerate([*cuts, v[-1]], start=1):
        if hi >= lo:
            bounds.append((f"Q{k}", lo, hi))
            lo = hi + 1
    return bounds


def _kaggle_of_notebooks(api: NbatlasClient, nf: dict | None) -> dict[int, tuple[set[str], list[int]]]:
    """Every selected notebook's competitions and its Kaggle records' votes (both empty without Kaggle metadata)."""
    found: dict[int, tuple[set[str], list[int]]] = {}
    for nb in api.paginate(_NOTEBOOKS_KAGGLE, "notebooks", {"filter": nf}):
        comps = {c for k in nb["kaggle"] for c in k["competitions"]}
        found[nb["dbId"]] = (comps, [k["votes"] for k in nb["kaggle"] if k["votes"] is not None])
    return found


def _share(n: int, total: int) -> float:
    return round(n / total, 4) if total else 0.0


def splits(api: NbatlasClient, out: Path, nf: dict | None = None) -> Section:
    """Plot kinds and the evaluation-plot share per competition and per votes quartile."""
    name, title = "splits", "Plot kinds and evaluation plots by competition and by votes quartile"
    notebooks = _kaggle_of_notebooks(api, nf)
    with_kaggle = {i for i, (comps, votes) in notebooks.items() if comps or votes}
    if not with_kaggle:
        return Section(
            name, title,
            f"None of the {len(notebooks)} notebooks{' the filter selects' if nf else ''} carries Kaggle metadata "
            "(competition, votes), so nothing can be split by competition or by votes quartile: mine Kaggle "
            "(`nbatlas mine kaggle`) or import a Meta Kaggle Code / KGTorrent archive (`nbatlas import`).",
            has_data=False,
        )
    evaluated = notebooks_with_plots(api, EVALUATION_KINDS, nf)
    files: list[Path] = []

    # by competition: a notebook that uses two competitions' data counts for both
    members: dict[str, set[int]] = defaultdict(set)
    for i, (comps, _) in notebooks.items():
        for c in comps or {NO_COMPETITION}:
            members[c].add(i)
    order = sorted(members, key=lambda c: (c == NO_COMPETITION, -len(members[c]), c))
    comp_rows = [(c, len(members[c]), len(members[c] & evaluated), _share(len(members[c] & evaluated), len(members[c])))
                 for c in order]
    files.append(_write_csv(out / "evaluation_share_by_competition.csv",
                            ["competition", "notebooks", "with_evaluation_plot", "share"], comp_rows))
    by_comp = [((c or NO_COMPETITION), k, n) for (c, k), n in _plot_counts(api, ["COMPETITION", "PLOT_KIND"], _plot_filter(nf)) if k]
    by_comp.sort(key=lambda r: (r[0] == NO_COMPETITION, r[0], -r[2], r[1]))
    files.append(_write_csv(out / "plot_kinds_by_competition.csv", ["competition", "plot_kind", "figures"], by_comp))

    # by votes quartile of the notebooks with Kaggle metadata (a notebook's votes: its most voted record)
    quartiles = votes_quartiles([max(v) for _, v in notebooks.values() if v])
    q_rows, q_kinds = [], []
    q_table: dict[str, Counter] = defaultdict(Counter)
    for label, lo, hi in quartiles:
        # the API's minVotes/maxVotes hold for one Kaggle record of a notebook: the same rule here
        inside = {i for i, (_, v) in notebooks.items() if any(lo <= x <= hi for x in v)}
        q_rows.append((label, lo, hi, len(inside), len(inside & evaluated), _share(len(inside & evaluated), len(inside))))
        quartile_nf = {**(nf or {}), "minVotes": lo, "maxVotes": hi}
        for (kind,), n in _plot_counts(api, ["PLOT_KIND"], _plot_filter(quartile_nf)):
            if kind:
                q_kinds.append((label, kind, n))
                q_table[f"{label} ({lo}-{hi} votes)"][kind] += n
    files.append(_write_csv(out / "evaluation_share_by_votes_quartile.csv",
                            ["quartile", "min_votes", "max_votes", "notebooks", "with_evaluation_plot", "share"], q_rows))
    q_kinds.sort(key=lambda r: (r[0], -r[2], r[1]))
    files.append(_write_csv(out / "plot_kinds_by_votes_quartile.csv", ["quartile", "plot_kind", "figures"], q_kinds))

    # figure 1: evaluation-plot share per competition (the most frequent ones) and per quartile
    shown = [r for r in comp_rows if r[0] != NO_COMPETITION][:TOP_COMPETITIONS]
    shown += [r for r in comp_rows if r[0] == NO_COMPETITION]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, max(3.5, 0.35 * len(shown) + 1.5)), dpi=100)
    a1.barh([f"{r[0]} (n={r[1]})" for r in shown], [100 * r[3] for r in shown],
            color=["#bbbbbb" if r[0] == NO_COMPETITION else "#4c72b0" for r in shown])
    a1.invert_yaxis()
    a1.set_xlabel("% of notebooks with an evaluation plot")
    a1.set_title("By competition")
    a2.bar([f"{r[0]}\n{r[1]}-{r[2]}\n(n={r[3]})" for r in q_rows], [100 * r[5] for r in q_rows], color="#dd8452")
    a2.set_ylabel("% of notebooks with an evaluation plot")
    a2.set_title("By votes quartile")
    fig.tight_layout()
    share_png = out / "evaluation_share_splits.png"
    fig.savefig(share_png)
    plt.close(fig)
    figures = [share_png]
    if q_table:
        figures.append(_stacked_bars(out / "plot_kinds_by_votes_quartile.png", list(q_table), q_table,
                                     "Plot kinds per votes quartile", "figures of the kind"))

    no_meta = len(notebooks) - len(with_kaggle)
    md = (
        f"{len(with_kaggle)} of {len(notebooks)} notebooks carry Kaggle metadata"
        + (f"; the other {no_meta} are counted under \u201c{NO_COMPETITION}\u201d and in no votes quartile" if no_meta else "")
        + ". A notebook that uses several competitions' data counts for each; a figure may have several kinds. "
        "Quartiles are of the notebooks' votes (their most voted Kaggle record), as closed ranges.\n\n"
        "Share of notebooks with at least one evaluation plot, per competition:\n\n"
        + _markdown_table(["competition", "notebooks", "with an evaluation plot", "share"],
                          [(r[0], r[1], r[2], f"{100 * r[3]:.1f}%") for r in shown])
        + (f"\n\n({len(comp_rows) - len(shown)} smaller competitions are in the CSV.)" if len(comp_rows) > len(shown) else "")
        + "\n\nPer votes quartile:\n\n"
        + _markdown_table(["quartile", "votes", "notebooks", "with an evaluation plot", "share", "most frequent kind"],
                          [(r[0], f"{r[1]}-{r[2]}", r[3], r[4], f"{100 * r[5]:.1f}%",
                            (q_table[f"{r[0]} ({r[1]}-{r[2]} votes)"].most_common(1) or [("-", 0)])[0][0]) for r in q_rows])
    )
    return Section(name, title, md, files[0], figures, files[1:])


# each study: (api, output folder, NotebookFilter or None) -> Section
STUDIES: list[tuple[str, Callable[[NbatlasClient, Path, dict | None], Section]]] = [
    ("libraries per stage", libraries_per_stage),
    ("plot kinds per stage", plot_kinds_per_stage),
    ("explainability", explainability),
    ("reproducibility", reproducibility),
    ("splits by competition and votes", splits),
]
