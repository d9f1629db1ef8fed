"""``nbatlas serve`` (the GraphQL API) and ``nbatlas export`` (whole tables as Parquet or NDJSON)."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.markup import escape

from db.settings import Settings, get_settings
from ingest.commands._common import check_output_path, console, fail, open_engine, reason

app = typer.Typer()


def run_server(*, settings: Settings, host: str, port: int, public: bool | None = None, log_level: str = "info") -> None:
    """Serve the API in this process until Ctrl-C."""
    import uvicorn

    from api.app import create_app

    app_ = create_app(settings, public=public)
    uvicorn.run(app_, host=host, port=port, log_level=log_level, proxy_headers=False, server_header=False)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    public: bool = typer.Option(
        False, "--public",
        help="Public read-only mode: no mutations, read-only transactions, statement timeout, page-size, "
        "depth, alias, token, body-size and rate limits, masked errors, open CORS. Also NBATLAS_PUBLIC=1.",
    ),
    workers: int = typer.Option(1, min=1, help="Worker processes (each with its own connection pool)."),
    print_schema: bool = typer.Option(
        False, "--print-schema", help="Print the GraphQL schema (SDL) and exit; with --public, the public one."
    ),
    log_level: str = typer.Option("info", help="uvicorn log level: critical, error, warning, info, debug."),
) -> None:
    """Serve the GraphQL API on http://HOST:PORT/graphql (GraphiQL in a browser).

    Also served: /health, /images/SHA256[?width=N] (bytes or a PNG thumbnail),
    /export/TABLE.FORMAT (notebooks|cells|outputs|images . parquet|ndjson, filters as query
    parameters) and /notebooks/SHA256.ipynb. With NBATLAS_API_TOKEN set, the private server wants
    `Authorization: Bearer <token>`.
    """
    settings = get_settings()
    public = public or settings.public
    if print_schema:
        from api.schema import sdl

        typer.echo(sdl(public=public), nl=False)
        return
    open_engine(settings, upgrade_empty=not public).dispose()  # a clear error now if the database is unusable
    mode = "public read-only" if public else "private"
    console.print(f"nbatlas API ({mode}) on [bold]http://{host}:{port}/graphql[/]  (Ctrl-C stops it)")
    if workers == 1:
        run_server(settings=settings, host=host, port=port, public=public, log_level=log_level)
        return
    import uvicorn

    # worker processes build their app from the environment
    if public:
        os.environ["NBATLAS_PUBLIC"] = "1"
    uvicorn.run(
        "api.app:create_app", factory=True, host=host, port=port, workers=workers, log_level=log_level,
        proxy_headers=False, server_header=False,
    )


@app.command("export")
def export_command(
    table: str = typer.Argument(..., help="notebooks, cells, outputs or images."),
    output: Path = typer.Option(..., "--output", "-o", help="File to write ('-' for stdout, NDJSON only)."),
    format: str = typer.Option(
        None, "--format", "-f", help="parquet or ndjson (default: from the file's extension, else parquet)."
    ),
    where: list[str] = typer.Option(
        [], "--where", "-w",
        help="A filter as NAME=VALUE, repeatable, the same names as /export's query parameters: "
        "cell_type=code, notebook.language=python, mime=image/png, notebook.source_kind=kaggle. "
        "Lists take commas.",
    ),
    with_data: bool = typer.Option(False, "--with-data", help="images: include the bytes."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Write a whole table (or the filtered part of it) as Parquet or NDJSON.

    The same rows and columns as GET /export/TABLE.FORMAT; pandas, polars and DuckDB read the files
    as they are. Example: nbatlas export cells -o code.parquet -w cell_type=code -w notebook.language=python
    """
    import sys

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from db.engine import session_scope
    from db.queries import export
    from db.queries.filters import FilterParamError, filter_from_params

    if table not in export.TABLES:
        fail(f"unknown table {table!r}: choose one of {', '.join(export.TABLES)}")
    fmt = format or ("ndjson" if output.suffix in (".ndjson", ".jsonl") or str(output) == "-" else "parquet")
    if fmt not in export.FORMATS:
        fail(f"unknown format {fmt!r}: choose one of {', '.join(export.FORMATS)}")
    if str(output) == "-" and fmt == "parquet":
        fail("Parquet needs a file (-o FILE); use --format ndjson for stdout")
    pairs = []
    for item in where:
        name, sep, value = item.partition("=")
        if not sep:
            fail(f"--where {item!r}: write it as NAME=VALUE")
        pairs.append((name.strip(), value))
    try:
        flt = filter_from_params(export.TABLES[table].filter_class, pairs)
    except FilterParamError as exc:
        fail(str(exc))
    check_output_path(output)

    engine = open_engine()
    with session_scope(engine) as session:
        total = export.count_rows(session=session, table=table, filter=flt)
    tmp = output.with_name(output.name + ".part") if str(output) != "-" else None
    bar = Progress(
        TextColumn(f"export {table}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, disable=not progress or tmp is None,
    )
    try:
        with bar, session_scope(engine) as session:
            task = bar.add_task("rows", total=total)
            rows = export.write_file(
                session=session, table=table, sink=tmp if tmp is not None else sys.stdout.buffer, fmt=fmt,
                filter=flt, with_data=with_data, on_rows=lambda n: bar.update(task, advance=n),
            )
    except OSError as exc:  # the file cannot be written (no room, no permission): nothing half-written stays
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        fail(f"cannot write {output}: {reason(exc)}")
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    if tmp is not None:
        try:
            os.replace(tmp, output)  # a file named OUTPUT is always a complete export
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            fail(f"cannot write {output}: {reason(exc)}")
        console.print(f"wrote {rows:,} {table} to [bold]{escape(str(output))}[/] ({fmt})")
