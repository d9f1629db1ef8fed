"""Turning ``NotebookFacts`` into rows, and the ingest hook that computes and stores them.

``CodeAnalyzer`` is what ``ingest_paths(..., cell_analyzer=CodeAnalyzer())`` expects: a picklable
callable run in the parse workers on each new notebook, whose ``load`` method then stores the results
inside the ingest batch's own transaction (so a notebook never lands without its analysis).

The workers also render the cell and figure rows in COPY text format (``RenderedFacts``): one bytes
object per notebook crosses the process boundary instead of thousands of small Python objects, and
the loading process, the ingest's bottleneck, only puts the ids in front of each line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingest.understand.analyzer import ANALYZER_VERSION, NotebookFacts, PlotFacts, analyze_notebook, without_gc


def _kinds_as_stored(facts: NotebookFacts, plot: PlotFacts) -> tuple[list[str], list[dict[str, Any]] | None, list[str]]:
    """(plot kinds, evidence, plot calls) of a figure as stored: none for a notebook whose code was not
    analysed, so its figures count apart from the analysed ones' "other" (plotCounts: kind null)."""
    if facts.not_analysed:
        return [], None, []
    return plot.plot_kinds, plot.evidence, plot.plot_calls


def rows_for(notebook_id: int, cell_ids: Sequence[int], facts: NotebookFacts) -> tuple[tuple, list[tuple], list[tuple]]:
    """(notebook_analysis row, cell_analysis rows, plot load rows) in db.queries.understand column orders."""
    cells = []
    code = unparsed = visual = 0
    for cf in facts.cells:
        if cf.position >= len(cell_ids):  # the loader dropped a cell it could not store: nothing to attach to
            continue
        if cf.cell_type == "code":
            code += 1
            unparsed += not cf.parsed
            visual += cf.is_visualisation
        if facts.not_analysed:  # no cell_analysis row: the cell's analysis and stage read null, "not analysed"
            continue
        cells.append((
            cell_ids[cf.position], notebook_id, facts.analyzer_version, cf.parsed, cf.parse_error, cf.ipython_syntax,
            cf.imports or None, cf.calls or None, cf.call_names, cf.libraries, cf.stage, cf.stage_evidence,
            cf.is_visualisation, cf.plot_kinds,
        ))
    plots = [
        (cell_ids[p.cell_position], p.output_position, p.mime, notebook_id, p.interactive, facts.analyzer_version,
         *_kinds_as_stored(facts, p), p.segment, p.context_before, p.context_after)
        for p in facts.plots if p.cell_position < len(cell_ids)
    ]
    notebook = (notebook_id, facts.analyzer_version, None if facts.not_analysed else facts.libraries, code, unparsed, visual)
    return notebook, cells, plots


@dataclass
class RenderedFacts:
    """``NotebookFacts`` as COPY text (cell position first on each line), plus the notebook's counts."""

    analyzer_version: int
    libraries: list[str] | None  # None: not analysed (stored as NULL)
    n_code_cells: int
    n_unparsed_cells: int
    n_visualisation_cells: int
    cells: bytes  # position, then db.queries.understand.CELL_RENDER_COLUMNS
    plots: bytes  # cell position, then db.queries.understand.PLOT_RENDER_COLUMNS


def render_facts(facts: NotebookFacts) -> RenderedFacts:
    from db.queries.understand import render_code_cell_row, render_plain_cell_row, render_plot_rows

    v = facts.analyzer_version
    code = unparsed = visual = 0
    lines: list[str] = []
    for cf in facts.cells:
        if cf.cell_type == "code":
            code += 1
            unparsed += not cf.parsed
            visual += cf.is_visualisation
        if facts.not_analysed:
            # code nobody read (another kernel language) gets no cell_analysis row: its cells' analysis
            # and stage read null, and its figures are stored with no plot kind, apart from "other"
            continue
        if cf.cell_type == "code":
            lines.append(render_code_cell_row(
                cf.position, v, cf.parsed, cf.parse_error, cf.ipython_syntax, cf.imports or None, cf.calls or None,
                cf.call_names, cf.libraries, cf.stage, cf.stage_evidence, cf.is_visualisation, cf.plot_kinds))
        else:
            lines.append(render_plain_cell_row(cf.position, v, cf.stage, cf.stage_evidence))
    # a lone surrogate (broken JSON escapes in the notebook) cannot be UTF-8: it becomes "?"
    cells = "".join(lines).encode("utf-8", "replace")
    plots = render_plot_rows(
        (p.cell_position, p.output_position, p.mime, p.interactive, v, *_kinds_as_stored(facts, p), p.segment,
         p.context_before, p.context_after)
        for p in facts.plots
    )
    return RenderedFacts(v, None if facts.not_analysed else facts.libraries, code, unparsed, visual, cells, plots)


def store_facts(*, connection: Any, items: Sequence[tuple[int, Sequence[int], NotebookFacts | RenderedFacts]], replace: bool = True) -> None:
    """Store analysis results ``[(notebook_id, cell_ids_by_position, facts), ...]`` on a raw psycopg connection.

    ``replace=False``: the notebooks were just inserted (no earlier analysis to delete).
    """
    from db.queries.understand import store_rendered, with_ids

    notebooks, cells, plots = [], [], []
    for notebook_id, cell_ids, facts in items:
        if isinstance(facts, NotebookFacts):
            facts = render_facts(facts)
        notebooks.append((notebook_id, facts.analyzer_version, facts.libraries, facts.n_code_cells, facts.n_unparsed_cells,
                          facts.n_visualisation_cells))
        cells.append(with_ids(facts.cells, notebook_id, cell_ids))
        plots.append(with_ids(facts.plots, notebook_id, cell_ids))
    store_rendered(connection=connection, notebooks=notebooks, cells=b"".join(cells), plots=b"".join(plots), replace=replace)


class CodeAnalyzer:
    """The ingest hook: ``__call__`` runs in the parse workers, ``load`` in the batch transaction."""

    version = ANALYZER_VERSION

    def __init__(self) -> None:
        # Made in the ingesting process before it forks its parse workers: what the analysis loads
        # lazily (IPython's transformer, the row renderer) is loaded here once, and the workers
        # inherit it instead of each importing it again.
        from db.queries import understand  # noqa: F401
        from ingest.understand.ipython import _manager

        _manager()

    def __call__(self, nb: dict) -> RenderedFacts:
        with without_gc():
            return render_facts(analyze_notebook(nb))

    def load(self, *, connection: Any, items: Sequence[tuple[int, Sequence[int], NotebookFacts | RenderedFacts]]) -> None:
        # called by the ingest for notebooks it has just inserted: nothing to replace
        store_facts(connection=connection, items=items, replace=False)
