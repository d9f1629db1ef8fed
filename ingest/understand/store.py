"""Turning ``NotebookFacts`` into rows, and the ingest hook that computes and stores them.

``CodeAnalyzer`` is what ``ingest_paths(..., cell_analyzer=CodeAnalyzer())`` expects: a picklable
callable run in the parse workers on each new notebook, whose ``load`` method then stores the results
inside the ingest batch's own transaction (so a notebook never lands without its analysis).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ingest.understand.analyzer import ANALYZER_VERSION, NotebookFacts, analyze_notebook


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
        cells.append((
            cell_ids[cf.position], notebook_id, facts.analyzer_version, cf.parsed, cf.parse_error, cf.ipython_syntax,
            cf.imports or None, cf.calls or None, cf.call_names, cf.libraries, cf.stage, cf.stage_evidence,
            cf.is_visualisation, cf.plot_kinds,
        ))
    plots = [
        (cell_ids[p.cell_position], p.output_position, p.mime, notebook_id, p.interactive, facts.analyzer_version,
         p.plot_kinds, p.evidence, p.plot_calls, p.segment, p.context_before, p.context_after)
        for p in facts.plots if p.cell_position < len(cell_ids)
    ]
    notebook = (notebook_id, facts.analyzer_version, facts.libraries, code, unparsed, visual)
    return notebook, cells, plots


def store_facts(*, connection: Any, items: Sequence[tuple[int, Sequence[int], NotebookFacts]]) -> None:
    """Store analysis results ``[(notebook_id, cell_ids_by_position, facts), ...]`` on a raw psycopg connection."""
    from db.queries.understand import store_analysis

    notebooks, cells, plots = [], [], []
    for notebook_id, cell_ids, facts in items:
        n, c, p = rows_for(notebook_id, cell_ids, facts)
        notebooks.append(n)
        cells.extend(c)
        plots.extend(p)
    store_analysis(connection=connection, notebooks=notebooks, cells=cells, plots=plots)


class CodeAnalyzer:
    """The ingest hook: ``__call__`` runs in the parse workers, ``load`` in the batch transaction."""

    version = ANALYZER_VERSION

    def __call__(self, nb: dict) -> NotebookFacts:
        return analyze_notebook(nb)

    def load(self, *, connection: Any, items: Sequence[tuple[int, Sequence[int], NotebookFacts]]) -> None:
        store_facts(connection=connection, items=items)
