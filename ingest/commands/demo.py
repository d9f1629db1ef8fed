"""``nbatlas demo``: a sample corpus the project makes itself, ingested and served in one command."""

from __future__ import annotations

import typer

from ingest.commands._common import console, fail, open_engine

app = typer.Typer()

EXAMPLE_QUERY = """{
  stats { notebooks cells outputs imageOutputs images problems }
  notebooks(first: 6) {
    nodes {
      sha256 originalNbformat nCells nImageOutputs
      images { mime width height url }
    }
  }
}"""


@app.command()
def demo(
    regenerate: bool = typer.Option(
        False, "--regenerate", help="Execute the demo notebooks again even if they are already on disk."
    ),
    serve: bool = typer.Option(
        True, "--serve/--no-serve", help="After ingesting, serve the GraphQL API (Ctrl-C stops it)."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to serve on."),
    port: int = typer.Option(8000, help="Port to serve on."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Build a small sample corpus, ingest it and serve it.

    Six notebooks written by nbatlas itself (data exploration, a learning curve, a confusion
    matrix, a ROC curve, a notebook that fails, one in the old nbformat 3, figures as PNG, SVG
    and JPEG) are executed for real with Jupyter's nbclient on this Python's ipykernel and
    written to $NBATLAS_HOME/demo/ (kept for the next run; --regenerate executes them again).
    They are ingested like any other folder and the corpus counts are printed; then the
    GraphQL API is served on http://HOST:PORT/graphql unless --no-serve.
    """
    from db.settings import get_settings
    from ingest.demo import DemoError, generate_demo_corpus

    settings = get_settings()
    directory = settings.home / "demo"
    try:
        corpus = generate_demo_corpus(directory, regenerate=regenerate, progress=progress, console=console)
    except DemoError as exc:
        fail(f"the demo notebooks could not be built: {exc}")
    if corpus.generated:
        console.print(f"executed {len(corpus.paths)} demo notebooks into [bold]{directory}[/]")
    else:
        console.print(
            f"using the {len(corpus.paths)} demo notebooks already in [bold]{directory}[/] "
            "(--regenerate to execute them again)"
        )

    engine = open_engine(settings)
    _ingest(corpus.paths, engine=engine, settings=settings, progress=progress)
    _print_stats(engine)

    if serve:
        _serve(settings=settings, host=host, port=port)
    else:
        console.print("[dim]--no-serve: not starting the API; `nbatlas serve` serves this corpus[/]")


def _ingest(paths, *, engine, settings, progress: bool) -> None:
    from db.engine import session_scope
    from ingest.local import ingest_paths

    with session_scope(engine) as session:
        ingest_paths(list(paths), session=session, settings=settings, progress=progress)


def _print_stats(engine) -> None:
    from rich.table import Table

    from db.engine import session_scope
    from db.queries.stats import corpus_stats

    with session_scope(engine) as session:
        stats = corpus_stats(session=session)
    counts = stats if isinstance(stats, dict) else stats.model_dump() if hasattr(stats, "model_dump") else vars(stats)
    table = Table(title="corpus", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, value in counts.items():
        table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    from rich.console import Console

    Console().print(table)  # stdout: the result of the command, pipeable


def _serve(*, settings, host: str, port: int) -> None:
    try:
        from ingest.commands.serve import run_server
    except ImportError:
        console.print("[yellow]the API is not part of this nbatlas yet: nothing to serve[/]")
        return
    base = f"http://{host}:{port}"
    console.print(
        f"\nGraphiQL: [bold link={base}/graphql]{base}/graphql[/]  (Ctrl-C stops the server)\n"
        f"try this query there, or from a script:\n[cyan]{EXAMPLE_QUERY}[/]"
    )
    run_server(settings=settings, host=host, port=port)
