"""``nbatlas analyze``: recompute code understanding (libraries, calls, plot kinds, stages, context)."""

from __future__ import annotations

import json

import typer

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

    from ingest.analyze import analyze
    from ingest.understand import ANALYZER_VERSION

    settings = get_settings()
    if workers:
        settings = settings.model_copy(update={"workers": workers})
    engine = open_engine(settings)
    with Session(engine) as session:
        report = analyze(session=session, settings=settings, rerun=rerun, progress=not quiet and not as_json)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        console.print(
            f"analyser v{ANALYZER_VERSION}: {report.notebooks_analyzed} of {report.notebooks_seen} notebooks analysed "
            f"({report.cells_analyzed} cells, {report.plots_found} figures) in {report.seconds:.1f}s"
        )
    for notebook_id, error in report.failed:
        console.print(f"[yellow]notebook {notebook_id} not analysed:[/] {error}")
    if report.failed:
        raise SystemExit(1)
