"""The ``analyze`` job: (re)compute code understanding for notebooks already in the database.

Notebooks ingested without analysis, or analysed by an older ``ANALYZER_VERSION``, are read back
(cell sources and output mime types only, never image bytes), analysed in a process pool, and their
rows replaced chunk by chunk: each chunk is one transaction, so an interrupted run keeps what it
finished and the next run picks up the rest.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlmodel import Session

from db.queries import understand as q
from db.settings import Settings
from ingest.understand.analyzer import ANALYZER_VERSION, NotebookFacts, analyze_cells
from ingest.understand.store import store_facts

CHUNK = 40  # notebooks per transaction


@dataclass
class AnalyzeReport:
    analyzer_version: int = ANALYZER_VERSION
    notebooks_seen: int = 0
    notebooks_analyzed: int = 0
    cells_analyzed: int = 0
    plots_found: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    # (notebook id, why): code in another kernel language, stored as not analysed (no stage, kind, library)
    not_analysed: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _analyze_one(notebook_id: int, cells: list[dict], language: str | None) -> tuple[int, list[int], NotebookFacts | None, str | None]:
    cell_ids = [c["id"] for c in cells]
    try:
        return notebook_id, cell_ids, analyze_cells(cells, language=language.lower() if language else None), None
    except Exception as exc:  # one odd notebook never stops the run; it is reported
        return notebook_id, cell_ids, None, f"{type(exc).__name__}: {exc}"


class _Inline:
    def submit(self, fn, *args) -> Future:
        fut: Future = Future()
        fut.set_result(fn(*args))
        return fut

    def shutdown(self, **_: Any) -> None:
        pass


def analyze(*, session: Session, settings: Settings, rerun: bool = False, progress: bool = False,
            notebook_ids: list[int] | None = None) -> AnalyzeReport:
    """Analyse the notebooks that need it (all with ``rerun``; or exactly ``notebook_ids``)."""
    started = time.perf_counter()
    report = AnalyzeReport()
    ids = notebook_ids if notebook_ids is not None else q.notebooks_to_analyze(
        session=session, analyzer_version=ANALYZER_VERSION, rerun=rerun)
    session.commit()  # end the read transaction: chunks below are transactions of their own
    report.notebooks_seen = len(ids)
    if not ids:
        report.seconds = time.perf_counter() - started
        return report
    pool: Any
    if settings.workers > 1 and len(ids) > 1:
        import multiprocessing

        context = multiprocessing.get_context("fork") if os.name == "posix" else None
        pool = ProcessPoolExecutor(max_workers=settings.workers, mp_context=context)
    else:
        pool = _Inline()
    bar = task = None
    if progress:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        bar = Progress(TextColumn("analysing code"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TimeRemainingColumn(), console=Console(stderr=True), transient=False)
        bar.start()
        task = bar.add_task("analyse", total=len(ids))
    try:
        for chunk in q.iter_chunks(ids, CHUNK):
            cells = q.cells_for_analysis(session=session, notebook_ids=chunk)
            languages = q.languages_for_notebooks(session=session, ids=chunk)
            futures = [pool.submit(_analyze_one, nid, cells[nid], languages.get(nid)) for nid in chunk]
            items = []
            for fut in futures:
                nid, cell_ids, facts, error = fut.result()
                if facts is None:
                    report.failed.append((nid, error or "unknown error"))
                    continue
                items.append((nid, cell_ids, facts))
                report.plots_found += len(facts.plots)
                if facts.not_analysed:
                    report.not_analysed.append((nid, facts.not_analysed))
                else:
                    report.cells_analyzed += len(facts.cells)
            raw = session.connection().connection.driver_connection
            store_facts(connection=raw, items=items)
            session.commit()
            report.notebooks_analyzed += sum(1 for _, _, facts in items if not facts.not_analysed)
            if bar is not None:
                bar.advance(task, len(chunk))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.stop()
        report.seconds = time.perf_counter() - started
    return report
