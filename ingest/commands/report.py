"""``nbatlas report``: the study's tables and figures (``analysis/``) as report.md and report.html."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from ingest.commands._common import api_errors, api_server, console, fail, reason

app = typer.Typer()


@app.command()
def report(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for report.md, report.html and each study's CSV and PNG."),
    server: str = typer.Option(
        None, "--server", "-s",
        help="URL of a running nbatlas API (e.g. http://127.0.0.1:8000). Default: start a private one on the "
        "configured database for the duration of the report.",
    ),
    token: str = typer.Option(None, "--token", envvar="NBATLAS_API_TOKEN", help="Bearer token for a private API that wants one."),
    filters: list[str] = typer.Option(
        None, "--filter", "-f", metavar="KEY=VALUE",
        help="Only the notebooks this NotebookFilter field selects, in every analysis (repeatable; the keys are the "
        "API's: competition=titanic, minVotes=10, library=xgboost, language=python, reproduction.status=error; "
        "comma-separate several values of a list field).",
    ),
) -> None:
    """Run the study's analyses and write OUT/report.md and OUT/report.html (figures embedded).

    Every analysis is a client of the GraphQL API: visualisation libraries per ML stage, plot kinds per stage and the share of notebooks with an evaluation plot, explainability plots and their libraries, reproducibility outcomes and failure causes (Pimentel et al.'s layout), and plot kinds and the evaluation-plot share split by competition and by votes quartile. A study with no data yet (e.g. nothing re-executed, no Kaggle metadata) says so in its section.

    With --filter, every analysis counts only the notebooks the filter selects, e.g. `nbatlas report --filter competition=titanic --filter minVotes=10 --out titanic/`.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from analysis.client import NbatlasClient
    from analysis.report import FilterError, build_report, notebook_filter
    from analysis.studies import STUDIES

    if out.exists() and not out.is_dir():
        fail(f"cannot write the report to {out}: it is a file, not a folder")
    with api_server(server) as url:
        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       console=console, transient=False)
        with api_errors(url):
            with NbatlasClient(url, token) as api:
                try:
                    flt = notebook_filter(api, filters or [])
                except FilterError as exc:
                    fail(str(exc))
                with bar:
                    task = bar.add_task("querying", total=len(STUDIES))
                    try:
                        sections = build_report(api, out, notebook_filter=flt, filter_text=filters or [],
                                                on_step=lambda name: bar.update(task, advance=1, description=name))
                    except OSError as exc:
                        fail(f"cannot write the report to {out}: {reason(exc)}")
    for s in sections:
        mark = "[green]ok[/]" if s.has_data else "[yellow]no data[/]"
        console.print(f"  {mark}  {s.title}")
    console.print(f"wrote [bold]{escape(str(out / 'report.md'))}[/] and [bold]{escape(str(out / 'report.html'))}[/]")
