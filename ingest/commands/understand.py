"""``nbatlas analyze``: recompute code understanding (libraries, calls, plot kinds, stages, context)."""

from __future__ import annotations

import json

import typer
from rich.markup import escape

from db.settings import get_settings
from ingest.commands._common import console, open_engine

app = typer.Typer()


@app.command("analyze")
def analyze_command(
    rerun: bool = typer.Option(False, "--rerun", help="Re-analyse every notebook, not only missing or stale ones."),
    workers: int = typer.Option(None, "--workers", "-w", min=1, help="Worker processes (default: NBATLAS_WORKERS or all cores)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Analyse the code of stored notebooks: imports and resolved calls, libraries, visualisation cells, the plot kind of every image (with evidence), the ML stage of every cell, and the markdown around each plot.

    Ingest already does this for new notebooks. Run it after upgrading nbatlas (notebooks analysed by an older analyser version are redone) or for notebooks ingested without analysis; it never re-ingests. Interrupting keeps what is done.
    """
    from sqlmodel import Session

    from db.queries.stats import corpus_stats
    from ingest.analyze import analyze
    from ingest.understand import ANALYZER_VERSION

    settings = get_settings()
    if workers:
        settings = settings.model_copy(update={"workers": workers})
    engine = open_engine(settings)
    with Session(engine) as session:
        report = analyze(session=session, settings=settings, rerun=rerun, progress=not quiet and not as_json)
        current = corpus_stats(session=session)["notebooks"] if not report.notebooks_seen else None
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    elif current == 0:
        console.print("the corpus has no notebooks yet: add some with `nbatlas ingest PATH`")
    elif current is not None:
        console.print(
            f"analyser v{ANALYZER_VERSION}: nothing to do, "
            + (f"all {current:,} notebooks are" if current > 1 else "the corpus's one notebook is")
            + " already analysed by this version (--rerun analyses them again)"
        )
    else:
        console.print(
            f"analyser v{ANALYZER_VERSION}: {report.notebooks_analyzed} of {report.notebooks_seen} notebooks analysed "
            f"({report.cells_analyzed} cells, {report.plots_found} figures) in {report.seconds:.1f}s"
        )
        if report.not_analysed:
            nid, why = report.not_analysed[0]
            console.print(f"{len(report.not_analysed)} of them stored as not analysed, their code being in another "
                          f"language (e.g. notebook {nid}: {escape(why.removeprefix('not analysed: '))})")
    for notebook_id, error in report.failed:
        console.print(f"[yellow]notebook {notebook_id} not analysed:[/] {escape(str(error))}")
    if report.failed:
        raise SystemExit(1)
