"""``nbatlas inspect``: one notebook (in the corpus or not) against the corpus, in the terminal or as HTML."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from ingest.commands._common import api_errors, api_server, console, fail, reason

app = typer.Typer()


@app.command()
def inspect(
    notebook: Path = typer.Argument(..., help="The .ipynb file to inspect (it is read, never executed)."),
    server: str = typer.Option(
        None, "--server", "-s",
        help="URL of a running nbatlas API (e.g. http://127.0.0.1:8000, or a public one). Default: start a "
        "private one on the configured database for the duration of the command.",
    ),
    html: Path = typer.Option(None, "--html", help="Write the full page (figures and similar plots as pictures) to this file."),
    neighbours: int = typer.Option(3, "--neighbours", "-k", min=1, max=20, help="Nearest corpus items shown per cell and per plot."),
    token: str = typer.Option(None, "--token", envvar="NBATLAS_API_TOKEN", help="Bearer token for a private API that wants one."),
) -> None:
    """What one notebook holds and how it sits in the corpus.

    Sections: the notebook (and whether its SHA-256 is in the corpus), an outline of its ML stages cell by cell, its libraries, each visualisation with its plot kind, evidence and the markdown around it, its most similar notebooks, plots and code in the corpus, and its reproduction runs when it is in the corpus and was re-executed. The notebook is parsed and analysed here; the corpus is asked through the API only. Terminal output by default; --html FILE writes the full page with thumbnails.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from analysis.client import NbatlasClient
    from analysis.inspect import inspect_notebook, render_html, render_terminal
    from db.settings import get_settings
    from ingest.inspect import NotebookUnreadable, describe_notebook

    if html is not None and html.is_dir():
        fail(f"cannot write {html}: it is a folder")
    settings = get_settings()
    try:
        local = describe_notebook(notebook, max_file_bytes=settings.max_file_bytes, max_image_pixels=settings.max_image_pixels)
    except NotebookUnreadable as exc:
        fail(str(exc))
    with api_server(server) as url:
        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       console=console, transient=True)
        with api_errors(url):
            with bar, NbatlasClient(url, token) as api:
                task = bar.add_task("searching the corpus", total=None)
                result = inspect_notebook(
                    api, local, neighbours=neighbours, thumbnails=html is not None,
                    on_progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
    if html is not None:
        try:
            html.parent.mkdir(parents=True, exist_ok=True)
            html.write_text(render_html(result), encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {html}: {reason(exc)}")
        console.print(f"wrote [bold]{escape(str(html))}[/]")
    else:
        render_terminal(result, Console(highlight=False))
