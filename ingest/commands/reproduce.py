"""Commands: reproduce, worker, jobs, runner-image build."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.markup import escape

from db.settings import get_settings
from ingest.commands._common import console, fail, open_engine
from ingest.reproduce import DEFAULT_IMAGE, DEFAULT_TIMEOUT_S

app = typer.Typer()
runner_image_app = typer.Typer(help="Build the image notebooks run in, on machines that cannot pull one.", no_args_is_help=True)
app.add_typer(runner_image_app, name="runner-image")

_STATUS_STYLE = {"ok": "green", "error": "red", "timeout": "yellow", "oom": "magenta", "killed": "magenta",
                 "infrastructure_error": "bold red"}


def _docker_client():
    import docker

    return docker.from_env(timeout=300)


def _no_engine(exc: Exception) -> str:
    """One line for "no Docker engine here": where we looked, the cause in plain words, what to do."""
    import re

    where = os.environ.get("DOCKER_HOST") or "the local socket"
    text = str(exc)
    # docker-py wraps the transport error: "Error while fetching server API version: ('Connection
    # aborted.', FileNotFoundError(2, 'No such file or directory'))"; its innermost words are the cause
    found = re.findall(r"(\w+Error)\(\d+, '([^']+)'\)", text)
    errno = re.findall(r"\[Errno -?\d+\] ([^'\"()]+)", text)
    cause = f"{found[-1][0]}: {found[-1][1]}" if found else errno[-1].strip() if errno else text[:200]
    return f"cannot reach the Docker engine at {where} ({cause}); start dockerd or set DOCKER_HOST"


def _engine_problem() -> Exception | None:
    try:
        _docker_client().ping()
    except Exception as exc:  # noqa: BLE001 - docker.from_env and ping fail in many ways that all mean the same here
        return exc
    return None


def _worker_deps(engine, *, backend: str, trust_notebooks: bool, settings):
    from ingest.reproduce.jobs import WorkerDeps

    factory = _docker_client if backend in ("docker", "any") else None
    return WorkerDeps(engine=engine, docker_client_factory=factory, trust_notebooks=trust_notebooks,
                      max_image_pixels=settings.max_image_pixels)


def _progress_printer(engine, request_id: int | None, total: int, quiet: bool):
    """A rich progress bar fed from the database (results are what counts, whoever ran them)."""
    if quiet or request_id is None:
        return None, None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ingest.reproduce.jobs import summary

    progress = Progress(TextColumn("[bold]request {task.fields[rid]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), console=console)
    task = progress.add_task("runs", total=total, rid=request_id, counts="")

    def update() -> None:
        s = summary(engine, [request_id]).get(request_id) or {}
        counts = " ".join(f"{k}={s[k]}" for k in _STATUS_STYLE if s.get(k))
        progress.update(task, completed=s.get("n_runs") or 0, counts=counts)

    return progress, update


def _print_summary(engine, request_id: int) -> None:
    from rich.table import Table

    from ingest.reproduce.jobs import summary

    s = summary(engine, [request_id]).get(request_id)
    if not s:
        return
    table = Table(title=f"run request {request_id}: {s['n_runs']} of {s['n_notebooks']} notebooks have a result")
    table.add_column("measure")
    table.add_column("notebooks", justify="right")
    table.add_column("share", justify="right")
    n = s["n_runs"] or 1
    for key in _STATUS_STYLE:
        if s.get(key):
            table.add_row(f"[{_STATUS_STYLE[key]}]{key}[/]", str(s[key]), f"{s[key] / n:.1%}")
    if s["no_code"]:
        # their "ok" is trivial: the rate to quote leaves them out
        table.add_row("  no code to run (counted in ok)", str(s["no_code"]), f"{s['no_code'] / n:.1%}")
        if s["runs_with_code"]:
            table.add_row("ok, of notebooks with code", f"{s['ok_with_code']} of {s['runs_with_code']}",
                          f"{s['ok_rate_with_code']:.1%}")
    table.add_row("same results", str(s["same_results"]), f"{s['same_results'] / n:.1%}")
    table.add_row("same results ignoring images", str(s["same_results_ignoring_images"]), f"{s['same_results_ignoring_images'] / n:.1%}")
    if s["with_plots"]:
        table.add_row("same plots (of notebooks with plots)", str(s["same_plots"]), f"{s['same_plots'] / s['with_plots']:.1%}")
    console.print(table)


@app.command("reproduce")
def reproduce_command(
    where: list[str] = typer.Option(None, "--where", "-w", metavar="FIELD=VALUE",
                                    help="Select notebooks, as the API's notebook filter: e.g. --where source_kind=kaggle "
                                         "--where location_contains=titanic --where has_images=true --where ids=3,5. Repeatable."),
    all_languages: bool = typer.Option(False, "--all-languages", help="Also select notebooks in other languages than Python (recorded as unsupported, not run); by default Python and unknown-language notebooks are selected."),
    limit: int = typer.Option(None, "--limit", min=1, help="At most this many notebooks (in id order, or of the sample)."),
    sample: int = typer.Option(None, "--sample", min=1, help="A random sample of this many matching notebooks (use --seed)."),
    seed: int = typer.Option(0, "--seed", help="Seed of --sample: the same seed on the same corpus picks the same notebooks."),
    backend: str = typer.Option("docker", "--backend", "-b", help="docker (isolated containers) or local (this machine, needs --trust-notebooks)."),
    timeout: float = typer.Option(DEFAULT_TIMEOUT_S, "--timeout", "-t", min=1, help="Seconds per notebook; the run is stopped (status timeout) after."),
    image: str = typer.Option(None, "--image", envvar="NBATLAS_REPRODUCE_IMAGE",
                              help=f"Runner image (docker backend); default: {DEFAULT_IMAGE} (the Jupyter data-science image, "
                                   "pinned by digest). Offline: `nbatlas runner-image build`, then --image nbatlas-runner:latest. "
                                   "For --backend local: the Python to run with."),
    data_dir: Path = typer.Option(None, "--data-dir", exists=True, file_okay=False, resolve_path=True,
                                  help="Mounted read-only at /kaggle/input (e.g. what `nbatlas mine kaggle --with-data` laid out)."),
    workers: int = typer.Option(1, "--workers", "-j", min=0, help="Notebooks run at once by this process; 0: only enqueue (let `nbatlas worker` run them)."),
    memory_mb: int = typer.Option(2048, "--memory-mb", min=64, help="Memory limit per run (no swap on top)."),
    cpus: float = typer.Option(1.0, "--cpus", min=0.1, help="CPU quota per run."),
    pids: int = typer.Option(256, "--pids", min=16, help="Process/thread limit per run."),
    scratch_mb: int = typer.Option(1024, "--scratch-mb", min=16, help="Size of the writable /kaggle/working."),
    trust_notebooks: bool = typer.Option(False, "--trust-notebooks", help="Required by --backend local: the notebooks run unsandboxed on this machine."),
    note: str = typer.Option(None, "--note", help="Free text kept with the request."),
    heartbeat: float = typer.Option(10.0, "--heartbeat", envvar="NBATLAS_REPRODUCE_HEARTBEAT_S", hidden=True),
    stalled_after: float = typer.Option(30.0, "--stalled-after", envvar="NBATLAS_REPRODUCE_STALLED_AFTER_S", hidden=True),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the request's summary as JSON on stdout."),
) -> None:
    """Re-execute notebooks in a sandbox and score how well they reproduce.

    Records a run request, enqueues one job per selected notebook (durably, in the database) and,
    with --workers N, runs them here N at a time until all have a result. Every notebook gets one
    run: status ok, error, timeout, oom, killed or infrastructure_error; the exception, the failing
    cell and its class (missing module, missing data file, out-of-order cells...); every cell's
    status, duration and outputs, compared with the original's (same results, same plots).
    `nbatlas worker` on other machines using the same database joins in; `nbatlas jobs` shows progress.
    Interrupting (Ctrl-C) removes the running containers and leaves the remaining jobs queued.
    """
    from db.queries.filters import FilterParamError, NotebookFilter, filter_from_params
    from ingest.reproduce import jobs
    from ingest.reproduce.docker_backend import BackendUnavailable, DockerBackend
    from ingest.reproduce.local_backend import LocalBackend
    from ingest.reproduce.outcome import Limits

    if backend not in ("docker", "local"):
        fail(f"--backend must be docker or local, not {backend!r}")
    params = []
    for item in where or []:
        name, sep, value = item.partition("=")
        if not sep:
            fail(f"--where takes FIELD=VALUE, got {item!r}")
        params.append((name.strip(), value))
    try:
        notebook_filter = filter_from_params(NotebookFilter, params)
    except FilterParamError as exc:
        fail(str(exc))

    settings = get_settings()
    engine = open_engine(settings)
    # fail before enqueuing anything when this machine cannot run what is asked
    try:
        if backend == "docker":
            image = image or DEFAULT_IMAGE
            if workers:
                DockerBackend(_docker_client(), image).check()
        else:
            local = LocalBackend(trust_notebooks=trust_notebooks, python=image)
            image = local.image
            local.check()
    except BackendUnavailable as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - docker.from_env: no engine configured
        fail(_no_engine(exc))

    limits = Limits(memory_mb=memory_mb, cpus=cpus, pids=pids, scratch_mb=scratch_mb)
    app = jobs.make_app(engine.url.render_as_string(hide_password=False), pool_size=max(4, workers + 3))
    submitted = jobs.submit(engine=engine, app=app, filter=notebook_filter, limit=sample or limit,
                            sample_seed=seed if sample else None, backend=backend, image=image, timeout_s=timeout,
                            limits=limits, data_dir=data_dir, note=note,
                            python_only=not all_languages and not any(name == "language" for name, _ in params))
    if not submitted.n_notebooks:
        fail("no notebook matches the selection" + ("" if all_languages else " (Python notebooks only; --all-languages for all)"))
    console.print(f"run request {submitted.request_id}: {submitted.n_notebooks} notebooks queued "
                  f"({backend}, {escape(str(image))}, timeout {timeout:g}s)")
    if workers:
        deps = _worker_deps(engine, backend=backend, trust_notebooks=trust_notebooks, settings=settings)
        progress, update = _progress_printer(engine, submitted.request_id, submitted.n_notebooks, quiet or as_json)
        options = jobs.WorkerOptions(concurrency=workers, drain=True, request_id=submitted.request_id,
                                     heartbeat_s=heartbeat, stalled_after_s=stalled_after, on_progress=update)
        if progress:
            with progress:
                jobs.run_workers(app, deps, options)
        else:
            jobs.run_workers(app, deps, options)
        if deps.stopping.is_set():
            console.print(f"[yellow]interrupted:[/] the remaining jobs of request {submitted.request_id} stay queued; "
                          "`nbatlas worker --drain` continues them")
            raise SystemExit(130)
    else:
        console.print("queued only: run `nbatlas worker` (here or on any machine using this database)")
    if as_json:
        print(json.dumps(jobs.summary(engine, [submitted.request_id]).get(submitted.request_id), default=str, indent=2))
    elif workers:
        _print_summary(engine, submitted.request_id)


@app.command("worker")
def worker_command(
    concurrency: int = typer.Option(1, "--concurrency", "-j", min=1, help="Notebooks run at once by this worker."),
    drain: bool = typer.Option(False, "--drain", help="Exit when the queue is empty instead of waiting for new jobs."),
    request_id: int = typer.Option(None, "--request", help="With --drain: exit when this request's jobs are done."),
    trust_notebooks: bool = typer.Option(False, "--trust-notebooks", help="Allow jobs of requests made with --backend local."),
    heartbeat: float = typer.Option(10.0, "--heartbeat", envvar="NBATLAS_REPRODUCE_HEARTBEAT_S", help="Seconds between this worker's heartbeats."),
    stalled_after: float = typer.Option(30.0, "--stalled-after", envvar="NBATLAS_REPRODUCE_STALLED_AFTER_S",
                                        help="A worker silent this long is dead: its jobs are queued again."),
) -> None:
    """Take reproduce jobs from the queue in the database and run them (start one per machine).

    Point it at the same database as `nbatlas reproduce` (NBATLAS_DATABASE_URL) and at a Docker engine
    (DOCKER_HOST, or the local socket) that has the requests' runner image. Stop it with Ctrl-C or
    SIGTERM: its containers are removed and its running jobs go back to the queue. A worker killed
    outright loses nothing either: the others notice its silent heartbeat and re-queue its jobs.
    """
    from ingest.reproduce import jobs

    settings = get_settings()
    # before taking any job: without an engine every docker job would be recorded as an
    # infrastructure error (even with --trust-notebooks, the queue may hold docker requests)
    if (problem := _engine_problem()) is not None:
        fail(_no_engine(problem))
    engine = open_engine(settings)
    app = jobs.make_app(engine.url.render_as_string(hide_password=False), pool_size=max(4, concurrency + 3))
    deps = _worker_deps(engine, backend="any", trust_notebooks=trust_notebooks, settings=settings)
    console.print(f"worker {deps.name}: {concurrency} at a time" + (", until the queue is empty" if drain else ", Ctrl-C to stop"))
    jobs.run_workers(app, deps, jobs.WorkerOptions(concurrency=concurrency, drain=drain, request_id=request_id,
                                                   heartbeat_s=heartbeat, stalled_after_s=stalled_after))


@app.command("jobs")
def jobs_command(as_json: bool = typer.Option(False, "--json", help="Print as JSON on stdout.")) -> None:
    """Show reproduce progress: each run request's results by status, its queued jobs, and the live workers."""
    from rich.table import Table

    from ingest.reproduce import jobs

    engine = open_engine(get_settings())
    data = jobs.overview(engine)
    if as_json:
        print(json.dumps(data, default=str, indent=2))
        return
    if not data["requests"]:
        console.print("no run requests yet: `nbatlas reproduce` re-executes notebooks and records one")
    # lines, not a table: ten columns and an image name do not fit 80 columns
    for rid, s in data["requests"].items():
        info = data["requests_info"].get(rid, {})
        queued = data["jobs"].get(rid, {})
        outcomes = " ".join(f"[{style}]{key}[/] {s[key]}" for key, style in _STATUS_STYLE.items() if s.get(key))
        console.print(f"[bold]request {rid}[/]  {escape(str(info.get('backend')))}  {escape(str(info.get('image')))}", soft_wrap=True)
        console.print(f"  {s['n_notebooks']} notebooks: {s['n_runs']} with a result, {queued.get('todo', 0)} queued, "
                      f"{queued.get('doing', 0)} running; outcomes: {outcomes or '-'}")
        console.print(f"  ok with code {s['ok_with_code']} of {s['runs_with_code']} ({s['no_code']} with no code to run), "
                      f"same results {s['same_results']}, same plots {s['same_plots']} of {s['with_plots']}")
    if data["workers"]:
        wt = Table(title="workers")
        for col in ("id", "last heartbeat", "seconds ago", "running"):
            wt.add_column(col)
        for w in data["workers"]:
            wt.add_row(str(w["id"]), str(w["last_heartbeat"]), f"{float(w['heartbeat_age_s']):.0f}", str(w["doing"]))
        console.print(wt)
    else:
        console.print("no worker is running")


@runner_image_app.command("build")
def runner_image_build(
    tag: str = typer.Option("nbatlas-runner:latest", "--tag", help="Name of the image to build."),
    base: str = typer.Option(None, "--base", help="Build on this local image (with python3) instead of a debootstrap Debian."),
    cache_dir: Path = typer.Option(None, "--cache-dir", envvar="NBATLAS_RUNNER_CACHE",
                                   help="Keep the root file system, wheels and finished image here [default: /var/cache/nbatlas-ci "
                                        "when writable, else the user cache]."),
    requirement: list[str] = typer.Option(None, "--requirement", "-r", help="Extra pip requirement for the image (repeatable), e.g. scikit-learn."),
    suite: str = typer.Option("bookworm", "--suite", help="Debian suite for debootstrap."),
    mirror: str = typer.Option("http://deb.debian.org/debian", "--mirror", help="Debian mirror for debootstrap."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Ignore the cache and the image already in the engine."),
    no_save: bool = typer.Option(False, "--no-save", help="Do not keep a `docker save` of the image in the cache."),
) -> None:
    """Build a runner image locally: no registry needed, only Debian's mirror and PyPI (on the host).

    A minimal Debian (debootstrap, needs root) is imported into the engine, then one layer adds a
    virtualenv with nbclient, ipykernel, numpy, pandas and matplotlib, installed from wheels
    downloaded on the host (the build itself has no network), and an unprivileged user. Use it
    with `nbatlas reproduce --image nbatlas-runner:latest`.
    """
    from ingest.reproduce.runner_image import Recipe, RunnerImageError, build_runner_image

    recipe = Recipe(suite=suite, mirror=mirror, base_image=base, extra=tuple(requirement or ()))
    try:
        client = _docker_client()
        client.ping()
    except Exception as exc:  # noqa: BLE001
        fail(_no_engine(exc))
    try:
        report = build_runner_image(client, recipe=recipe, tag=tag, cache=cache_dir, rebuild=rebuild, save=not no_save,
                                    progress=lambda m: console.print(f"[dim]{escape(str(m))}[/]"))
    except RunnerImageError as exc:
        fail(str(exc))
    console.print(f"{report.tag}: {report.image_id[:19]} ({report.from_cache}) {json.dumps(report.seconds)}")
    print(json.dumps(report.as_dict()) if os.environ.get("NBATLAS_JSON") else report.tag)
