"""``nbatlas ingest``, ``nbatlas get``, ``nbatlas stats``: put notebooks in, get them back, count them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from db.settings import get_settings
from ingest.commands._common import check_output_path, console, fail, open_engine, reason

app = typer.Typer()
out = Console()  # results on stdout; progress and errors on stderr (``console``)

_STATS_HELP = {
    "notebooks": "distinct notebook files (by SHA-256 of their bytes)",
    "cells": "cells of those notebooks",
    "outputs": "outputs of their code cells",
    "image_outputs": "outputs carrying a PNG, JPEG, GIF or SVG image",
    "images": "distinct images (by SHA-256 of the decoded image)",
    "problems": "files that could not be ingested",
    "warnings": "caveats recorded on ingested notebooks",
    "notebooks_with_warnings": "ingested notebooks with at least one caveat",
    "sources": "places the notebooks were found (files, archive members, Kaggle)",
    "upgraded_to_v4": "notebooks stored in nbformat 3 or older, upgraded to 4",
    "runs": "ingest runs",
    "notebook_bytes": "bytes of the notebook files",
    "image_bytes": "bytes of the distinct images",
}


def _place(location: str, member: str) -> str:
    return f"{location}!{member}" if member else location


@app.command("ingest")
def ingest_command(
    paths: list[Path] = typer.Argument(..., help="Notebook files, folders (searched recursively for *.ipynb) and .zip/.tar/.tar.gz archives."),
    workers: int = typer.Option(None, "--workers", "-w", min=1, help="Parser processes (default: NBATLAS_WORKERS or all cores)."),
    batch: int = typer.Option(None, "--batch", min=1, help="Notebooks per database transaction (default: NBATLAS_BATCH_NOTEBOOKS)."),
    analyze: bool = typer.Option(True, "--analyze/--no-analyze", help="Analyse the code of new notebooks while ingesting (see `nbatlas analyze`)."),
    progress: bool = typer.Option(None, "--progress/--no-progress", help="Progress bar on stderr (default: when stderr is a terminal)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
) -> None:
    """Ingest notebooks from files, folders and archives into the corpus.

    Each notebook is identified by the SHA-256 of its bytes: one already in the corpus is not stored again (a new place it was found at is recorded as a source), so running the same ingest twice adds nothing. Files that are not notebooks, or break a limit (NBATLAS_MAX_FILE_BYTES, NBATLAS_MAX_IMAGE_PIXELS, NBATLAS_MAX_ARCHIVE_BYTES), are recorded as problems with the reason, and the ingest goes on; `nbatlas stats` counts them. A notebook lands whole or not at all: an interrupted ingest keeps every batch it committed, and running it again finishes the job.
    """
    from sqlmodel import Session

    from ingest.local import ingest_paths

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        fail("no such file or folder: " + ", ".join(missing), code=2)
    settings = get_settings()
    updates = {k: v for k, v in {"workers": workers, "batch_notebooks": batch}.items() if v}
    if updates:
        settings = settings.model_copy(update=updates)
    if progress is None:
        progress = sys.stderr.isatty() and not as_json
    engine = open_engine(settings)
    with Session(engine) as session:
        report = ingest_paths(paths, session=session, settings=settings, progress=progress, cell_analyzer="default" if analyze else None)
    engine.dispose()

    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    elif report.files_seen:  # with no file at all, the error below says it all
        _print_report(report)
    if report.files_seen == 0:
        fail("no notebooks found: folders are searched for *.ipynb files; archives are .zip, .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz")
    if report.notebooks_added + report.already_present == 0:
        fail(f"none of the {report.files_seen} files could be ingested (see the problems above)")


def _print_report(report) -> None:
    table = Table(title="ingest", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    rate = f"{report.notebooks_added / report.seconds:,.0f} notebooks/s, " if report.seconds else ""
    mb = report.bytes_read / 1e6
    for label, value in (
        ("files seen", f"{report.files_seen:,}"),
        ("notebooks added", f"{report.notebooks_added:,}"),
        ("already present", f"{report.already_present:,}"),
        ("new places (sources)", f"{report.sources_added:,}"),
        ("problems (not ingested)", f"{len(report.problems):,}"),
        ("warnings (ingested)", f"{len(report.warnings):,}"),
        ("time", f"{report.seconds:.1f} s ({rate}{mb / report.seconds if report.seconds else 0:,.1f} MB/s)"),
        ("run", f"{report.run_id}"),
    ):
        table.add_row(label, value)
    out.print(table)
    if report.problems:
        problems = Table(title="problems (first 10)", title_justify="left")
        problems.add_column("file", overflow="fold")
        problems.add_column("stage")
        problems.add_column("reason", overflow="fold")
        for location, member, stage, reason in report.problems[:10]:
            problems.add_row(escape(_place(location, member)), stage, escape(reason))
        out.print(problems)
        if len(report.problems) > 10:
            out.print(f"... and {len(report.problems) - 10} more (table 'problem', run {report.run_id})")
    if report.nothing_new and report.already_present:
        out.print(f"[bold]nothing new[/]: the {report.already_present:,} notebooks found were all in the corpus already")


@app.command("get")
def get_command(
    sha256: str = typer.Argument(..., help="The notebook's SHA-256 (or a unique prefix of at least 4 hex digits)."),
    output: Path = typer.Option(None, "--output", "-o", help="Write the notebook to this file (default: stdout)."),
) -> None:
    """Write a stored notebook back out as an .ipynb (nbformat 4), rebuilt from the database.

    The result equals what `nbformat.reads(original, as_version=4)` gives for the ingested file: the same cells, outputs (every mime type), images and metadata.
    """
    import logging

    import nbformat
    from sqlmodel import Session
    from traitlets.log import get_logger

    from db.queries.notebooks import NotebookNotFound, rebuild_notebook, resolve_sha256

    if output is not None:
        check_output_path(output)
    engine = open_engine()
    with Session(engine) as session:
        try:
            full = resolve_sha256(session=session, prefix=sha256)
            nb = rebuild_notebook(session=session, sha256=full)
        except LookupError as exc:
            fail(str(exc))
    engine.dispose()
    get_logger().setLevel(logging.CRITICAL)  # schema violations were recorded at ingest
    text = nbformat.writes(nb)
    try:
        data = (text + "\n").encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (kept from the original): written as \u escapes, as JSON allows
        data = (nbformat.writes(nb, ensure_ascii=True) + "\n").encode("ascii")
    if output is None or str(output) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        try:
            output.write_bytes(data)
        except OSError as exc:
            fail(f"cannot write {output}: {reason(exc)}")
        console.print(f"wrote {full} to {escape(str(output))}")


@app.command("stats")
def stats_command(as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout.")) -> None:
    """Count what the corpus holds: notebooks, cells, outputs, image outputs, images, problems."""
    from sqlmodel import Session

    from db.queries.stats import corpus_stats

    engine = open_engine()
    with Session(engine) as session:
        stats = corpus_stats(session=session)
    engine.dispose()
    if as_json:
        print(json.dumps(stats))
        return
    table = Table(title="corpus", title_justify="left")
    table.add_column("count", style="bold")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    for key, value in stats.items():
        table.add_row(key, f"{value:,}", _STATS_HELP.get(key, ""))
    out.print(table)
