"""Durable, distributed reproduction jobs: Procrastinate on the same PostgreSQL as the corpus.

``nbatlas reproduce`` creates a *run request* and enqueues one job per notebook (queue
``reproduce``); workers (the local ones ``reproduce`` starts, and ``nbatlas worker`` on any machine
pointed at the same database) take jobs, run the notebook with the request's backend and store
the result. Guarantees:

* one result per (request, notebook): the ``run`` table's unique pair decides, so a job that is
  retried, or done twice by two workers, leaves one row (the first);
* a worker killed mid-run loses nothing: Procrastinate workers send heartbeats, and every worker
  of ours periodically re-queues the jobs of workers whose heartbeat stopped (stalled jobs);
  a notebook whose run kills its worker ``MAX_ATTEMPTS`` times is recorded as an
  ``infrastructure_error`` instead of looping;
* a worker stopped by SIGINT/SIGTERM removes its containers and puts its running jobs back in the
  queue (they are not recorded as failures of the notebooks).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import procrastinate
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlmodel import Session

from db.queries import reproduce as q
from db.queries.notebooks import rebuild_notebooks
from ingest.reproduce import docker_backend, local_backend
from ingest.reproduce.docker_backend import BackendUnavailable
from ingest.reproduce.outcome import Limits, RunOutcome, RunSpec, owner_id
from ingest.reproduce.record import build_record

log = logging.getLogger("nbatlas.reproduce")

QUEUE = q.QUEUE
TASK_NAME = "nbatlas.reproduce_notebook"
MAX_ATTEMPTS = 3
PYTHON_LANGUAGES = {None, "", "python", "python2", "python3", "ipython", "ipython2", "ipython3"}


class WorkerInterrupted(RuntimeError):
    """The worker is stopping: the run was cut short by us, not by the notebook. The job goes back."""


def procrastinate_conninfo(database_url: str) -> str:
    """A libpq connection string for Procrastinate from nbatlas's SQLAlchemy URL."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def make_app(database_url: str, *, pool_size: int = 10) -> procrastinate.App:
    connector = procrastinate.PsycopgConnector(
        conninfo=procrastinate_conninfo(database_url),
        kwargs={"options": f"-c search_path={q.PROCRASTINATE},public"},
        min_size=1,
        max_size=pool_size,
    )
    app = procrastinate.App(connector=connector)
    app.task(
        name=TASK_NAME,
        queue=QUEUE,
        pass_context=True,
        retry=procrastinate.RetryStrategy(max_attempts=MAX_ATTEMPTS, wait=2, retry_exceptions={WorkerInterrupted}),
    )(_reproduce_task)
    return app


# --- what a worker needs --------------------------------------------------------------------------------

@dataclass
class WorkerDeps:
    """The worker's session factory, settings and clients, handed in so tests can give real local ones."""

    engine: Engine
    docker_client_factory: Callable[[], Any] | None = None
    trust_notebooks: bool = False
    max_image_pixels: int = 178_956_970
    name: str = field(default_factory=owner_id)
    stopping: threading.Event = field(default_factory=threading.Event)
    _backends: dict[tuple[str, str], Any] = field(default_factory=dict)
    _docker: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def docker(self):
        with self._lock:
            if self._docker is None:
                if self.docker_client_factory is None:
                    raise BackendUnavailable("no Docker client configured for this worker")
                self._docker = self.docker_client_factory()
            return self._docker

    def backend_for(self, backend: str, image: str):
        key = (backend, image)
        with self._lock:
            found = self._backends.get(key)
        if found is not None:
            return found
        if backend == "docker":
            made = docker_backend.DockerBackend(self.docker(), image)
        elif backend == "local":
            made = local_backend.LocalBackend(trust_notebooks=self.trust_notebooks, python=image.removeprefix("local:") or None)
        else:
            raise BackendUnavailable(f"unknown backend {backend!r}")
        made.check()
        with self._lock:
            self._backends[key] = made
        return made

    def stop_running(self) -> None:
        """Kill what runs now (containers, local executors); their jobs go back to the queue."""
        self.stopping.set()
        docker_backend.remove_live_containers()
        local_backend.kill_live_processes()


def _reproduce_task(context, request_id: int, notebook_id: int) -> str:
    deps: WorkerDeps = context.additional_context["nbatlas"]
    return reproduce_one(deps, request_id=request_id, notebook_id=notebook_id, attempt=(context.job.attempts or 0) + 1)


def _file_name(place: str | None, sha256: str) -> str:
    name = os.path.basename(place or "") if place else ""
    return name if name.endswith(".ipynb") else f"{sha256[:16]}.ipynb"


def _for_execution(notebook: dict[str, Any]) -> dict[str, Any]:
    """The original without its outputs: the runner clears them anyway, and they can be large."""
    copy = dict(notebook)
    copy["cells"] = [
        {**cell, "outputs": [], "execution_count": None} if cell.get("cell_type") == "code" else cell
        for cell in notebook.get("cells") or []
    ]
    return copy


def reproduce_one(deps: WorkerDeps, *, request_id: int, notebook_id: int, attempt: int = 1) -> str:
    """Run one notebook for one request and store the result (unless one is stored already)."""
    with Session(deps.engine) as session:
        if q.run_exists(session=session, request_id=request_id, notebook_id=notebook_id):
            return "already recorded"
        req = q.request(session=session, id=request_id)
        facts = q.notebook_facts(session=session, id=notebook_id)
        if req is None or facts is None:
            return "request or notebook no longer exists"
        rebuilt = rebuild_notebooks(session=session, sha256s=[facts.sha256]).get(facts.sha256)
        cell_ids = q.cell_ids_by_position(session=session, notebook_id=notebook_id)
    original = json.loads(json.dumps(rebuilt)) if rebuilt is not None else {"cells": []}
    limits = Limits(**{k: v for k, v in (req.limits or {}).items() if k in Limits.__dataclass_fields__})

    if (facts.language or "").lower() not in PYTHON_LANGUAGES:
        now = time.time()
        outcome = RunOutcome(backend=req.backend, status="infrastructure_error", image=req.image, ename="UnsupportedLanguage",
                             evalue=f"the notebook's language is {facts.language!r}; runners execute Python only",
                             started_at=now, finished_at=now)
    else:
        try:
            backend = deps.backend_for(req.backend, req.image)
        except BackendUnavailable as exc:
            if deps.stopping.is_set():
                raise WorkerInterrupted(str(exc)) from exc
            now = time.time()
            outcome = RunOutcome(backend=req.backend, status="infrastructure_error", image=req.image,
                                 detail=f"backend unavailable on worker {deps.name}: {exc}", started_at=now, finished_at=now)
        else:
            spec = RunSpec(
                notebook=_for_execution(original),
                name=_file_name(facts.place, facts.sha256),
                timeout_s=float(req.timeout_s),
                limits=limits,
                data_dir=Path(req.data_dir) if req.data_dir else None,
                labels={"org.nbatlas.request": str(request_id), "org.nbatlas.notebook": str(notebook_id)},
            )
            try:
                outcome = backend.run(spec)
            except Exception as exc:  # noqa: BLE001 - the engine went away, a bug: recorded, never lost
                if deps.stopping.is_set():
                    raise WorkerInterrupted(str(exc)) from exc
                log.exception("run of notebook %s failed in nbatlas itself", notebook_id)
                now = time.time()
                outcome = RunOutcome(backend=req.backend, status="infrastructure_error", image=req.image,
                                     detail=f"{type(exc).__name__}: {exc}"[:2000], started_at=now, finished_at=now)
            if deps.stopping.is_set() and outcome.status in ("killed", "infrastructure_error", "timeout"):
                raise WorkerInterrupted(f"notebook {notebook_id}: run cut short because the worker is stopping")
    try:
        record = build_record(outcome=outcome, original=original, cell_ids=cell_ids, worker=deps.name,
                              attempt=attempt, max_image_pixels=deps.max_image_pixels)
    except Exception as exc:  # noqa: BLE001 - keep the run's outcome even if scoring its outputs fails
        log.exception("scoring the run of notebook %s failed", notebook_id)
        outcome.notebook = None
        outcome.detail = ((outcome.detail or "") + f" [outputs not stored: scoring failed: {type(exc).__name__}: {exc}]").strip()
        record = build_record(outcome=outcome, original=original, cell_ids=cell_ids, worker=deps.name,
                              attempt=attempt, max_image_pixels=deps.max_image_pixels)
    with Session(deps.engine) as session:
        run_id = q.store_run(session=session, request_id=request_id, notebook_id=notebook_id, record=record)
        session.commit()
    return outcome.status if run_id is not None else "already recorded"


def record_given_up(deps: WorkerDeps, *, request_id: int, notebook_id: int, attempts: int) -> None:
    """A notebook whose runs keep killing their workers: record that, once, instead of retrying forever."""
    now = time.time()
    outcome = RunOutcome(backend="unknown", status="infrastructure_error", started_at=now, finished_at=now,
                         detail=f"the worker running this notebook stopped responding {attempts} times; given up")
    with Session(deps.engine) as session:
        req = q.request(session=session, id=request_id)
        if req is not None:
            outcome.backend, outcome.image = req.backend, req.image
        cell_ids = q.cell_ids_by_position(session=session, notebook_id=notebook_id)
        facts = q.notebook_facts(session=session, id=notebook_id)
        rebuilt = rebuild_notebooks(session=session, sha256s=[facts.sha256]).get(facts.sha256) if facts else None
        original = json.loads(json.dumps(rebuilt)) if rebuilt is not None else {"cells": []}
        record = build_record(outcome=outcome, original=original, cell_ids=cell_ids, worker=deps.name, attempt=attempts)
        q.store_run(session=session, request_id=request_id, notebook_id=notebook_id, record=record)
        session.commit()


# --- enqueue ------------------------------------------------------------------------------------------

def enqueue(app: procrastinate.App, *, request_id: int, notebook_ids: Sequence[int], chunk: int = 1000) -> int:
    async def go() -> int:
        async with app.open_async():
            deferrer = app.configure_task(TASK_NAME, queue=QUEUE)
            for start in range(0, len(notebook_ids), chunk):
                part = notebook_ids[start:start + chunk]
                await deferrer.batch_defer_async(*({"request_id": request_id, "notebook_id": int(n)} for n in part))
        return len(notebook_ids)

    return asyncio.run(go())


# --- workers ------------------------------------------------------------------------------------------

@dataclass
class WorkerOptions:
    concurrency: int = 1
    drain: bool = True  # stop when no job of ``request_id`` (or of any request) is left to do
    request_id: int | None = None
    poll_s: float = 1.0
    heartbeat_s: float = 10.0
    stalled_after_s: float = 30.0
    sweep_every_s: float = 30.0
    on_progress: Callable[[], None] | None = None


async def retry_stalled(app: procrastinate.App, deps: WorkerDeps, *, stalled_after_s: float) -> int:
    """Put back the jobs of workers whose heartbeat stopped; give up on a notebook after MAX_ATTEMPTS."""
    retried = 0
    jobs = await app.job_manager.get_stalled_jobs(queue=QUEUE, task_name=TASK_NAME, seconds_since_heartbeat=stalled_after_s)
    for job in jobs:
        try:
            if (job.attempts or 0) + 1 >= MAX_ATTEMPTS:
                args = job.task_kwargs
                await asyncio.to_thread(record_given_up, deps, request_id=int(args["request_id"]),
                                        notebook_id=int(args["notebook_id"]), attempts=(job.attempts or 0) + 1)
                await app.job_manager.finish_job(job=job, status=procrastinate.jobs.Status.FAILED, delete_job=False)
            else:
                await app.job_manager.retry_job(job)
            retried += 1
        except Exception as exc:  # noqa: BLE001 - another worker got there first
            log.debug("stalled job %s not retried: %s", job.id, exc)
    return retried


def run_workers(app: procrastinate.App, deps: WorkerDeps, options: WorkerOptions) -> None:
    """Run ``options.concurrency`` jobs at a time in this process until drained (or stopped)."""
    asyncio.run(_run_workers(app, deps, options))


async def _run_workers(app: procrastinate.App, deps: WorkerDeps, options: WorkerOptions) -> None:
    loop = asyncio.get_running_loop()
    # procrastinate runs sync tasks in the default executor: give it a thread per concurrent job
    loop.set_default_executor(ThreadPoolExecutor(max_workers=options.concurrency + 4, thread_name_prefix="nbatlas-run"))
    docker_backend.install_cleanup_handlers()
    if deps.docker_client_factory is not None:
        try:
            await asyncio.to_thread(docker_backend.sweep_orphans, deps.docker())
        except BackendUnavailable:
            pass
    signals_seen = 0
    worker_task: asyncio.Task | None = None
    cancelled = False

    def stop_worker() -> None:
        # once: a second cancel would cut Procrastinate's graceful shutdown short (jobs left "doing")
        nonlocal cancelled
        if worker_task is not None and not cancelled:
            cancelled = True
            worker_task.cancel()

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            deps.stop_running()
            os._exit(130)
        loop.run_in_executor(None, deps.stop_running)
        stop_worker()

    installed = []
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, on_signal)
                installed.append(signum)
            except (RuntimeError, NotImplementedError):
                pass
    try:
        async with app.open_async():
            worker_task = asyncio.create_task(app.run_worker_async(
                queues=[QUEUE],
                concurrency=options.concurrency,
                wait=True,
                name=f"nbatlas@{socket.gethostname()}:{os.getpid()}",
                additional_context={"nbatlas": deps},
                install_signal_handlers=False,
                update_heartbeat_interval=options.heartbeat_s,
                stalled_worker_timeout=options.stalled_after_s,
                listen_notify=True,
                delete_jobs="never",
                shutdown_graceful_timeout=120,
            ))
            last_sweep = time.monotonic()
            while not worker_task.done():
                await asyncio.wait({worker_task}, timeout=options.poll_s)
                if worker_task.done() or cancelled:
                    continue  # stopping: the worker finishes (or hands back) its jobs, then ends
                await retry_stalled(app, deps, stalled_after_s=options.stalled_after_s)
                if deps.docker_client_factory is not None and time.monotonic() - last_sweep > options.sweep_every_s:
                    last_sweep = time.monotonic()
                    await asyncio.to_thread(_sweep_quietly, deps)
                if options.on_progress:
                    options.on_progress()
                if options.drain and await asyncio.to_thread(_open_jobs, deps.engine, options.request_id) == 0:
                    stop_worker()
            try:
                await worker_task
            except asyncio.CancelledError:
                pass
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        if options.on_progress:
            options.on_progress()


def _open_jobs(engine: Engine, request_id: int | None) -> int:
    with Session(engine) as session:
        return q.open_jobs(session=session, request_id=request_id)


def _sweep_quietly(deps: WorkerDeps) -> None:
    try:
        docker_backend.sweep_orphans(deps.docker())
    except Exception:  # noqa: BLE001 - a sweep is housekeeping
        pass


# --- one request, start to finish (what `nbatlas reproduce` calls) --------------------------------------

@dataclass
class Submitted:
    request_id: int
    n_notebooks: int


def submit(
    *,
    engine: Engine,
    app: procrastinate.App,
    filter: Any,
    limit: int | None,
    sample_seed: int | None,
    backend: str,
    image: str,
    timeout_s: float,
    limits: Limits,
    data_dir: Path | None,
    note: str | None = None,
    python_only: bool = True,
) -> Submitted:
    """Select the notebooks, record the request, and enqueue one job per notebook."""
    with Session(engine) as session:
        ids = q.select_notebook_ids(session=session, filter=filter, limit=limit, sample_seed=sample_seed,
                                    python_only=python_only)
        if not ids:
            return Submitted(0, 0)
        selection = {"where": filter.as_dict() if filter is not None else {}, "limit": limit,
                     "sample_seed": sample_seed, "python_only": python_only}
        request_id = q.create_request(
            session=session, backend=backend, image=image, timeout_s=timeout_s, limits=limits.as_dict(),
            data_dir=str(data_dir.resolve()) if data_dir else None, selection=selection, n_notebooks=len(ids), note=note,
        )
        session.commit()
    enqueue(app, request_id=request_id, notebook_ids=ids)
    return Submitted(request_id, len(ids))


def summary(engine: Engine, request_ids: Sequence[int] | None = None) -> dict[int, dict[str, Any]]:
    with Session(engine) as session:
        return q.reproducibility_summary(session=session, request_ids=request_ids)


def overview(engine: Engine) -> dict[str, Any]:
    """What `nbatlas jobs` shows: every request's progress, its queue counts, and the workers."""
    with Session(engine) as session:
        return {
            "requests": q.reproducibility_summary(session=session),
            "jobs": q.job_counts(session=session),
            "workers": [dict(r._mapping) for r in q.workers(session=session)],
            "requests_info": {r.id: dict(r._mapping) for r in q.request_page(session=session, first=10_000)},
        }
