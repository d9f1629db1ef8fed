"""``nbatlas mine kaggle ...`` and ``nbatlas import meta-kaggle-code|kgtorrent ...``: parse arguments, call the jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.console import Console

from db.settings import get_settings
from ingest.commands._common import console, fail, open_engine

app = typer.Typer()
mine_app = typer.Typer(
    help="Mine notebooks from Kaggle with a reproducible sample; every run is recorded and resumable.",
    no_args_is_help=True,
)
import_app = typer.Typer(help="Import Kaggle's bulk archives (Meta Kaggle Code, KGTorrent).", no_args_is_help=True)
app.add_typer(mine_app, name="mine")
app.add_typer(import_app, name="import")

SIZE_HELP = "Per competition (or per listing without one): "


def _invalid_options(exc) -> str:
    """A pydantic ValidationError of a spec built from the options, in the options' names."""
    messages = []
    for e in exc.errors():
        msg = e["msg"].removeprefix("Value error, ")
        field = str(e["loc"][0]) if e.get("loc") else None
        option = {"competitions": "competition"}.get(field, field)
        if option and option != "__root__":
            bad = e.get("input")
            msg = f"--{option.replace('_', '-')}" + (f" {bad!r}" if isinstance(bad, (str, int, float)) else "") + f": {msg}"
        messages.append(msg)
    return "; ".join(messages)


@mine_app.command("kaggle")
def mine_kaggle(
    competition: list[str] = typer.Option([], "--competition", "-c", help="Competition slug (repeatable), e.g. titanic."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Notebooks using this dataset (owner/slug)."),
    search: Optional[str] = typer.Option(None, "--search", help="Notebooks matching this search term."),
    user: Optional[str] = typer.Option(None, "--user", help="Notebooks by this Kaggle user."),
    top_competitions: Optional[int] = typer.Option(
        None, "--top-competitions", min=1, help="Also mine the first K competitions in Kaggle's own order (see --competition-sort)."),
    competition_search: Optional[str] = typer.Option(None, "--competition-search", help="Only competitions matching this term (with --top-competitions)."),
    competition_category: Optional[str] = typer.Option(
        None, "--competition-category", help="Only this category: featured, research, recruitment, gettingStarted, masters, playground."),
    competition_sort: str = typer.Option(
        "numberOfTeams", "--competition-sort", help="Order for --top-competitions: numberOfTeams, prize, best, recentlyCreated..."),
    sort_by: str = typer.Option("votes", "--sort-by", help="Listing order: votes, hotness, date-run or views."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help=SIZE_HELP + "the first N notebooks."),
    top_percent: Optional[float] = typer.Option(
        None, "--top-percent", min=0.0001, max=100, help=SIZE_HELP + "the first P% (rounded up, at least one) of all its notebooks."),
    sample: Optional[int] = typer.Option(None, "--sample", min=1, help=SIZE_HELP + "N notebooks drawn at random (needs --seed)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of --sample: the same seed draws the same sample."),
    with_outputs: bool = typer.Option(False, "--with-outputs", help="Also download each notebook's output files."),
    with_data: bool = typer.Option(False, "--with-data", help="Also download competition/dataset files to $NBATLAS_HOME/kaggle/input/<slug>/ (mount at /kaggle/input)."),
    new_run: bool = typer.Option(False, "--new-run", help="Start a new run even if an unfinished run of the same command exists."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", min=1, max=16, help="Downloads at once (default NBATLAS_KAGGLE_CONCURRENCY or 2)."),
    rate: Optional[float] = typer.Option(None, "--rate", min=0.01, help="Kaggle requests per second (default NBATLAS_KAGGLE_REQUESTS_PER_SECOND or 2)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """List Kaggle notebooks, draw a reproducible sample and pull each at its current version, ingesting as it goes.

    Python notebooks only. Running the same command again resumes an unfinished run and never pulls a
    notebook version twice. Example, the top 5% by votes of the 5 competitions with the most teams:

        nbatlas mine kaggle --top-competitions 5 --sort-by votes --top-percent 5
    """
    from pydantic import ValidationError

    from ingest.kaggle.client import KaggleCallError, KaggleClient, KaggleCredentialsError
    from ingest.kaggle.mine import MiningError, MiningSpec, empty_listing_message, mine_kaggle as run_mining
    from ingest.kaggle.politeness import KaggleSettings, Politeness

    try:
        spec = MiningSpec(
            competitions=competition, dataset=dataset, search=search, user=user, top_competitions=top_competitions,
            competition_search=competition_search, competition_category=competition_category,
            competition_sort=competition_sort, sort_by=sort_by, limit=limit, top_percent=top_percent, sample=sample,
            seed=seed, with_outputs=with_outputs, with_data=with_data,
        )
    except ValidationError as exc:
        fail(_invalid_options(exc), code=2)
    overrides = {k: v for k, v in (("concurrency", concurrency), ("requests_per_second", rate)) if v is not None}
    kaggle_settings = KaggleSettings(**overrides)
    settings = get_settings()
    try:
        client = KaggleClient.connect(Politeness(kaggle_settings))
    except KaggleCredentialsError as exc:
        fail(str(exc), code=2)
    except KaggleCallError as exc:
        fail(str(exc))
    engine = open_engine(settings)
    from sqlmodel import Session

    with Session(engine) as session:
        try:
            report = run_mining(spec, session=session, settings=settings, client=client, progress=progress, new_run=new_run)
        except KaggleCredentialsError as exc:
            fail(str(exc), code=2)
        except (MiningError, ValueError) as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted: run the same command again to continue where it stopped", code=130)
    what = "resumed" if report.resumed else "run"
    console.print(
        f"mining {what} [bold]{report.run_id}[/]: listed {report.listed}, selected {report.selected}; "
        f"pulled {report.pulled}, already pulled before {report.already}, not a notebook {report.invalid}, "
        f"skipped {report.skipped}, failed {report.failed}; {report.retries} retried calls"
    )
    for ref, reason in report.failures[:20]:
        console.print(f"  [yellow]{escape(ref)}[/]: {escape(str(reason))}")
    if len(report.failures) > 20:
        console.print(f"  ... and {len(report.failures) - 20} more: `nbatlas mine show {report.run_id}`")
    for label in report.empty_listings:
        console.print(f"[yellow]warning:[/] {escape(empty_listing_message(label))}", soft_wrap=True)


@mine_app.command("runs")
def runs(limit: int = typer.Option(20, "--limit", min=1, help="How many of the latest runs.")) -> None:
    """List the latest mining and archive-import runs."""
    from sqlmodel import Session

    from db.queries.kaggle import latest_runs

    with Session(open_engine()) as session:
        rows = latest_runs(session=session, limit=limit)
    if not rows:
        console.print("no mining or import runs yet: `nbatlas mine kaggle ...` or `nbatlas import kgtorrent|meta-kaggle-code ...` "
                      "records one")
        return
    # lines, not a table: ten columns and a command line do not fit 80 columns
    out = Console(highlight=False)
    for r in rows:
        started = f"{r.started_at:%Y-%m-%d %H:%M}" if r.started_at else "-"
        out.print(f"[bold]run {r.id}[/]  {r.kind}  {r.status}  started {started}")
        out.print(f"  listed {r.listed or 0:,}, selected {r.selected or 0:,}, pulled {r.pulled or 0:,}, "
                  f"failed {r.failed or 0:,}, {r.retries or 0:,} retried calls")
        what = r.command or str((r.spec or {}).get("root", ""))
        if what:
            out.print(f"  {escape(what)}", soft_wrap=True)


@mine_app.command("show")
def show(run_id: int = typer.Argument(..., help="Run id (see `nbatlas mine runs`)."),
         listing: bool = typer.Option(False, "--listing", help="Also print the listing as seen (selected rows).")) -> None:
    """Show one run: its specification, the command that re-draws it, counts, and every failure with its reason."""
    import json

    from sqlmodel import Session

    from db.queries.kaggle import listings_by_run, pulls_by_run, runs_by_id

    with Session(open_engine()) as session:
        run = runs_by_id(session=session, ids=[run_id]).get(run_id)
        if run is None:
            fail(f"no mining run {run_id}")
        pulls = pulls_by_run(session=session, ids=[run_id]).get(run_id, [])
        rows = listings_by_run(session=session, ids=[run_id], selected_only=True).get(run_id, []) if listing else []
    print(json.dumps({
        "run": run.id, "kind": run.kind, "status": run.status, "error": run.error, "command": run.command,
        "spec": run.spec, "resolved": run.resolved, "started_at": str(run.started_at), "listed_at": str(run.listed_at),
        "finished_at": str(run.finished_at), "resumed": run.resumed, "listed": run.listed, "selected": run.selected,
        "pulled": run.pulled, "skipped": run.skipped, "failed": run.failed, "retries": run.retries,
        "not_pulled": [{"ref": p.ref, "version": p.version, "status": p.status, "reason": p.reason}
                       for p in pulls if p.status != "pulled"],
        "listing": [{"scope": r.scope, "rank": r.rank, "ref": r.ref, "version": r.version, "votes": r.votes} for r in rows],
    }, indent=1, default=str))


def _archive(kind: str, root: Path, meta: Optional[Path], competition: list[str], sort_by: str, limit: Optional[int],
             top_percent: Optional[float], sample: Optional[int], seed: Optional[int], versions: str, language: str,
             progress: bool) -> None:
    from pydantic import ValidationError
    from sqlmodel import Session

    from ingest.kaggle.archives import ArchiveError, ArchiveSelection, import_archive

    try:
        selection = ArchiveSelection(competitions=competition, sort_by=sort_by, limit=limit, top_percent=top_percent,
                                     sample=sample, seed=seed, versions=versions, language=language)
    except ValidationError as exc:
        fail(_invalid_options(exc), code=2)
    settings = get_settings()
    with Session(open_engine(settings)) as session:
        try:
            report = import_archive(kind, root, meta_dir=meta, selection=selection, session=session, settings=settings,
                                    progress=progress)
        except ArchiveError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted: run the same command again; what was imported stays", code=130)
    console.print(
        f"{kind} run [bold]{report.run_id}[/]: {report.files} notebook files ({report.with_metadata} with metadata, "
        f"{report.without_metadata} without); selected {report.selected}; imported {report.imported}, "
        f"already imported {report.already}, problems {report.problems}"
    )
    for line in report.ignored[:10]:
        console.print(f"  [yellow]ignored[/] {escape(str(line))}")


_ARCHIVE_OPTIONS = dict(
    competition=typer.Option([], "--competition", "-c", help="Only notebooks using this competition (repeatable; sizes apply per competition)."),
    sort_by=typer.Option("votes", "--sort-by", help="Order for --limit/--top-percent: votes, views or date-run."),
    limit=typer.Option(None, "--limit", min=1, help="The first N notebooks."),
    top_percent=typer.Option(None, "--top-percent", min=0.0001, max=100, help="The first P% (rounded up, at least one)."),
    sample=typer.Option(None, "--sample", min=1, help="N notebooks drawn at random (needs --seed)."),
    seed=typer.Option(None, "--seed", help="Seed of --sample."),
    versions=typer.Option("current", "--versions", help="current: each kernel's current version (or newest present); all: every version file."),
    language=typer.Option("python", "--language", help="python (default) or all."),
    progress=typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
)


@import_app.command("meta-kaggle-code")
def import_meta_kaggle_code(
    root: Path = typer.Argument(..., exists=True, file_okay=False, help="Extracted Meta Kaggle Code folder (0000/000/<id>.ipynb ...)."),
    meta: Optional[Path] = typer.Option(None, "--meta", exists=True, file_okay=False, help="Meta Kaggle folder with KernelVersions.csv, Kernels.csv, Users.csv, ..."),
    competition: list[str] = _ARCHIVE_OPTIONS["competition"],
    sort_by: str = _ARCHIVE_OPTIONS["sort_by"],
    limit: Optional[int] = _ARCHIVE_OPTIONS["limit"],
    top_percent: Optional[float] = _ARCHIVE_OPTIONS["top_percent"],
    sample: Optional[int] = _ARCHIVE_OPTIONS["sample"],
    seed: Optional[int] = _ARCHIVE_OPTIONS["seed"],
    versions: str = _ARCHIVE_OPTIONS["versions"],
    language: str = _ARCHIVE_OPTIONS["language"],
    progress: bool = _ARCHIVE_OPTIONS["progress"],
) -> None:
    """Import the Meta Kaggle Code archive joined with the Meta Kaggle CSVs (streamed), with the mining sample options."""
    _archive("meta-kaggle-code", root, meta, competition, sort_by, limit, top_percent, sample, seed, versions, language, progress)


@import_app.command("kgtorrent")
def import_kgtorrent(
    root: Path = typer.Argument(..., exists=True, file_okay=False, help="KGTorrent folder of UserName_CurrentUrlSlug.ipynb files."),
    meta: Optional[Path] = typer.Option(None, "--meta", exists=True, file_okay=False, help="Folder of its metadata tables as CSV (default: ROOT itself)."),
    competition: list[str] = _ARCHIVE_OPTIONS["competition"],
    sort_by: str = _ARCHIVE_OPTIONS["sort_by"],
    limit: Optional[int] = _ARCHIVE_OPTIONS["limit"],
    top_percent: Optional[float] = _ARCHIVE_OPTIONS["top_percent"],
    sample: Optional[int] = _ARCHIVE_OPTIONS["sample"],
    seed: Optional[int] = _ARCHIVE_OPTIONS["seed"],
    versions: str = _ARCHIVE_OPTIONS["versions"],
    language: str = _ARCHIVE_OPTIONS["language"],
    progress: bool = _ARCHIVE_OPTIONS["progress"],
) -> None:
    """Import a KGTorrent dump (notebooks plus its metadata tables exported as CSV), with the mining sample options."""
    _archive("kgtorrent", root, meta if meta is not None else root, competition, sort_by, limit, top_percent, sample, seed,
             versions, language, progress)
