"""``nbatlas demo``: a sample corpus the project makes itself, ingested and served in one command."""

from __future__ import annotations

import typer
from rich.markup import escape

from ingest.commands._common import console, fail

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
        console.print(f"executed {len(corpus.paths)} demo notebooks into [bold]{escape(str(directory))}[/]")
    else:
        console.print(
            f"using the {len(corpus.paths)} demo notebooks already in [bold]{escape(str(directory))}[/] "
            "(--regenerate to execute them again)"
        )

    # the same ingest and counts as `nbatlas ingest DIR` and `nbatlas stats` (code analysis included)
    from ingest.commands.corpus import ingest_command, stats_command

    ingest_command(paths=corpus.paths, workers=None, batch=None, analyze=True, progress=progress, as_json=False)
    stats_command(as_json=False)

    if serve:
        _serve(settings=settings, host=host, port=port)
    else:
        console.print("[dim]--no-serve: not starting the API; `nbatlas serve` serves this corpus[/]")


def _serve(*, settings, host: str, port: int) -> None:
    import socket

    from ingest.commands.serve import run_server

    with socket.socket() as probe:  # say which option to change before printing a URL that is someone else's
        try:
            probe.bind((host, port))
        except OSError as exc:
            fail(f"cannot serve on {host}:{port} ({exc.strerror}): pick another with --port, or --no-serve")
    base = f"http://{host}:{port}"
    console.print(
        f"\nGraphiQL: [bold link={base}/graphql]{base}/graphql[/]  (Ctrl-C stops the server)\n"
        f"try this query there, or from a script:\n[cyan]{EXAMPLE_QUERY}[/]"
    )
    run_server(settings=settings, host=host, port=port)
