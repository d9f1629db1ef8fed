"""Ingest notebooks from local files, folders and archives: ``nbatlas ingest PATH...``.

The pipeline with several workers (the default on a multi-core machine): the main process walks
the paths and hands the files out a few at a time, largest first; each worker process reads and
hashes its files (SHA-256 of the bytes is a notebook's identity), asks the database which of those
hashes it already holds, parses the new ones (``ingest.parse``) and loads them with ``COPY`` over
its own connection (``ingest.load.parse_and_load``), one transaction per task. The database work
thus runs on as many backends as there are workers.

With one worker, or when the caller's session sits inside a transaction it does not end (so other
connections would not see the ingest's run), the main process reads and hashes, the workers only
parse, and the main process loads the rows in batches over the caller's session.

So re-running an ingest only reads and hashes: a file already in the database adds at most a new
source row (the same notebook found at a new place) and nothing else. A killed ingest loses at most
the batches in flight; the next run skips what was committed.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlmodel import Session

from db.models import IngestRun
from db.settings import Settings
from ingest import load, parse
from ingest.load import BatchLoader, SourceRow, TaskResult
from ingest.parse import FileProblem, Limits, ParsedNotebook, Place
from ingest.sources import count_zip_notebooks, discover, iter_archive, local_place, too_large

# places hashed per database look-up, and the size of one worker task
LOOKUP_PLACES = 64
TASK_PLACES = 8
TASK_BYTES = 4 * 1024 * 1024
BATCH_BYTES = 64 * 1024 * 1024


@dataclass
class IngestReport:
    run_id: int
    files_seen: int = 0
    notebooks_added: int = 0
    sources_added: int = 0
    already_present: int = 0  # files whose notebook was in the database already (or earlier in this run)
    # files not ingested, and caveats of ingested ones: (location, member, stage, reason)
    problems: list[tuple[str, str, str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str, str, str]] = field(default_factory=list)
    bytes_read: int = 0
    seconds: float = 0.0
    status: str = "running"
    # 'workers': each parse worker loaded its notebooks over its own connection; 'main': this process
    # loaded them over the caller's session (one worker, or a session inside a transaction it does not end)
    loaded_by: str = "main"

    @property
    def nothing_new(self) -> bool:
        return self.notebooks_added == 0 and self.sources_added == 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["problems"] = [dict(zip(("location", "member", "stage", "reason"), p)) for p in self.problems]
        out["warnings"] = [dict(zip(("location", "member", "stage", "reason"), p)) for p in self.warnings]
        out["nothing_new"] = self.nothing_new
        return out


class _InlinePool:
    """``workers = 1``: parse in this process (no start-up cost, easier to debug)."""

    def __init__(self, limits: Limits, analyzer):
        parse.init_worker(limits, analyzer)

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # pragma: no cover - parse_many catches per file
            future.set_exception(exc)
        return future

    def shutdown(self, **_: Any) -> None:
        pass


@contextmanager
def _pool(settings: Settings, analyzer, loading: tuple[str, int] | None = None):
    """The parse workers; with ``loading = (conninfo, run_id)`` they also load what they parse."""
    limits = Limits.from_settings(settings)
    if settings.workers <= 1:
        yield _InlinePool(limits, analyzer)
        return
    import multiprocessing

    parse.warm_validators()
    # fork: the workers inherit the imported modules and built validators, so they start in milliseconds
    context = multiprocessing.get_context("fork") if os.name == "posix" else None
    if loading is None:
        init, args = parse.init_worker, (limits, analyzer)
    else:
        init, args = load.init_loading_worker, (limits, analyzer, *loading)
    pool = ProcessPoolExecutor(max_workers=settings.workers, mp_context=context, initializer=init, initargs=args)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Progress:
    def __init__(self, enabled: bool, total: int):
        self.enabled = enabled
        self.bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[bold]ingest[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                TextColumn("{task.fields[added]} new"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=Console(stderr=True), transient=False,
            )
            self.task = self.bar.add_task("ingest", total=total or None, added=0)

    def __enter__(self):
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()

    def advance(self, n: int = 1, added: int | None = None) -> None:
        if self.bar:
            kwargs = {"added": added} if added is not None else {}
            self.bar.update(self.task, advance=n, **kwargs)

    def grow(self, n: int) -> None:
        if self.bar and n:
            task = self.bar.tasks[0]
            self.bar.update(self.task, total=(task.total or 0) + n)


class _Run:
    """The state of one ingest: what was seen, what waits for a worker, what waits for the database."""

    def __init__(self, session: Session, settings: Settings, report: IngestReport, loader: BatchLoader, pool, progress: _Progress):
        self.session, self.settings, self.report = session, settings, report
        self.loader, self.pool, self.progress = loader, pool, progress
        # sha256 -> 'pending' | 'ok' | FileProblem (the first place's failure)
        self.state: dict[str, Any] = {}
        self.waiting_dups: dict[str, list[Place]] = {}
        self.inflight: deque[Future] = deque()
        self.window = max(2, 2 * settings.workers + 1)
        self.notebooks: list[ParsedNotebook] = []
        self.notebook_bytes = 0
        self.sources: list[SourceRow] = []
        self.problems: list[FileProblem] = []
        self.lookup: list[tuple[Place, str]] = []

    # -- input side ---------------------------------------------------------------------------------

    def add(self, item: Place | FileProblem) -> None:
        self.report.files_seen += 1
        if isinstance(item, FileProblem):
            self._problem(item)
            self.progress.advance()
            return
        place = item
        if place.data is None:
            try:
                size = os.stat(place.path).st_size
                if size > self.settings.max_file_bytes:
                    self._problem(FileProblem(place.location, "", "limit", too_large(size, self.settings.max_file_bytes)))
                    self.progress.advance()
                    return
                with open(place.path, "rb") as fh:
                    place.data = fh.read(self.settings.max_file_bytes + 1)
            except OSError as exc:
                self._problem(FileProblem(place.location, place.member, "read", f"cannot read the file: {exc.strerror or exc}"))
                self.progress.advance()
                return
        self.report.bytes_read += len(place.data)
        self.lookup.append((place, hashlib.sha256(place.data).hexdigest()))
        if len(self.lookup) >= LOOKUP_PLACES:
            self._dispatch()

    def _dispatch(self) -> None:
        """Look the hashed places up in the database; send the new ones to the workers."""
        lookup, self.lookup = self.lookup, []
        unknown = list({sha for _, sha in lookup if sha not in self.state})
        present = self.loader.existing(unknown)
        task: list[Place] = []
        task_bytes = 0
        for place, sha in lookup:
            state = self.state.get(sha)
            if state is None and sha in present:
                state = self.state[sha] = "ok"
            if state is None:
                self.state[sha] = "pending"
                place.sha256 = sha
                task.append(place)
                task_bytes += len(place.data)
                if len(task) >= TASK_PLACES or task_bytes >= TASK_BYTES:
                    self._submit(task)
                    task, task_bytes = [], 0
                continue
            place.data = None
            if state == "pending":
                self.waiting_dups.setdefault(sha, []).append(place)
            else:
                self._settle_duplicate(place, sha, state)
            self.progress.advance()
        if task:
            self._submit(task)

    def _settle_duplicate(self, place: Place, sha: str, state: Any) -> None:
        if state == "ok":
            self.report.already_present += 1
            self.sources.append(SourceRow(sha, place.kind, place.location, place.member))
        else:  # the same bytes failed elsewhere: the same problem, at this place too
            self._problem(FileProblem(place.location, place.member, state.stage, state.reason, sha, details=state.details))

    def _submit(self, task: list[Place]) -> None:
        self.inflight.append(self.pool.submit(parse.parse_many, task))
        while len(self.inflight) > self.window or (self.inflight and self.inflight[0].done()):
            self._collect(self.inflight.popleft())

    # -- output side --------------------------------------------------------------------------------

    def _collect(self, future: Future) -> None:
        for result in future.result():
            dups = self.waiting_dups.pop(result.file_sha256 if isinstance(result, FileProblem) else result.sha256, [])
            if isinstance(result, FileProblem):
                self._problem(result)
                if result.file_sha256:
                    self.state[result.file_sha256] = result
                for place in dups:
                    self._settle_duplicate(place, result.file_sha256, result)
            else:
                self.state[result.sha256] = "ok"
                self.notebooks.append(result)
                self.notebook_bytes += result.size_bytes
                self.sources.append(SourceRow(result.sha256, result.kind, result.location, result.member))
                for warning in result.warnings:
                    self.problems.append(warning)
                    self.report.warnings.append((warning.location, warning.member, warning.stage, warning.reason))
                for place in dups:
                    self._settle_duplicate(place, result.sha256, "ok")
            self.progress.advance()
        if len(self.notebooks) >= self.settings.batch_notebooks or self.notebook_bytes >= BATCH_BYTES or len(self.sources) + len(self.problems) >= 5000:
            self.flush()

    def _problem(self, problem: FileProblem) -> None:
        self.problems.append(problem)
        if problem.severity == "error":
            self.report.problems.append((problem.location, problem.member, problem.stage, problem.reason))
        else:
            self.report.warnings.append((problem.location, problem.member, problem.stage, problem.reason))

    def flush(self) -> None:
        if not (self.notebooks or self.sources or self.problems):
            return
        notebooks, sources, problems = self.notebooks, self.sources, self.problems
        self.notebooks, self.sources, self.problems, self.notebook_bytes = [], [], [], 0
        counters = self._counters(pending_added=len(notebooks))
        result = self.loader.load(notebooks, sources, problems, counters)
        report = self.report
        report.notebooks_added += len(result.added)
        report.already_present += len(result.present)
        report.sources_added += result.sources_added
        for failed in result.failed:
            report.problems.append((failed.location, failed.member, failed.stage, failed.reason))
        self.progress.advance(0, added=report.notebooks_added)

    def _counters(self, pending_added: int = 0) -> dict[str, Any]:
        r = self.report
        return {
            "files_seen": r.files_seen,
            "notebooks_added": r.notebooks_added + pending_added,
            "sources_added": r.sources_added,
            "problems": len(r.problems),
        }

    def finish(self) -> None:
        if self.lookup:
            self._dispatch()
        while self.inflight:
            self._collect(self.inflight.popleft())
        self.flush()


class _ParallelRun:
    """The state of an ingest whose workers load what they parse (``ingest.load.parse_and_load``).

    The main process only lists the files and sends them out a few at a time; the workers read,
    hash, look up, parse and load them, and send back counts and problems. What the main process
    still records itself: problems found before a file reaches a worker (archive members).
    """

    def __init__(self, session: Session, settings: Settings, report: IngestReport, loader: BatchLoader, pool, progress: _Progress):
        self.session, self.settings, self.report = session, settings, report
        self.loader, self.pool, self.progress = loader, pool, progress
        self.inflight: deque[Future] = deque()
        self.window = 2 * settings.workers
        self.places = max(1, min(TASK_PLACES, settings.batch_notebooks))
        self.task: list[Place] = []
        self.task_bytes = 0
        self.problems: list[FileProblem] = []
        self.counted = time.monotonic()

    def add(self, item: Place | FileProblem) -> None:
        self.report.files_seen += 1
        if isinstance(item, FileProblem):
            self.problems.append(item)
            (self.report.problems if item.severity == "error" else self.report.warnings).append(
                (item.location, item.member, item.stage, item.reason)
            )
            self.progress.advance()
            return
        if item.data is not None:
            size = len(item.data)
        else:
            try:
                size = os.stat(item.path).st_size
            except OSError:
                size = 0  # the worker says why it cannot read it
        self.task.append(item)
        self.task_bytes += size
        if len(self.task) >= self.places or self.task_bytes >= TASK_BYTES:
            self._submit()

    def _submit(self) -> None:
        if not self.task:
            return
        self.inflight.append(self.pool.submit(load.parse_and_load, self.task))
        self.task, self.task_bytes = [], 0
        while len(self.inflight) > self.window or (self.inflight and self.inflight[0].done()):
            self._collect(self.inflight.popleft())

    def _collect(self, future: Future) -> None:
        result: TaskResult = future.result()
        report = self.report
        report.bytes_read += result.bytes_read
        report.notebooks_added += result.added
        report.already_present += result.present
        report.sources_added += result.sources_added
        report.problems.extend(result.problems)
        report.warnings.extend(result.warnings)
        self.progress.advance(result.files, added=report.notebooks_added)
        if time.monotonic() - self.counted > 1.0:  # the run's row shows progress, without a commit per task
            self.loader.update_run(**_final_counters(report))
            self.session.commit()
            self.counted = time.monotonic()

    def finish(self) -> None:
        self._submit()
        while self.inflight:
            self._collect(self.inflight.popleft())
        if self.problems:
            self.loader.load([], [], self.problems)


def _loading_conninfo(session: Session, run_id: int) -> str | None:
    """The database for the workers' own connections, if they see what this session commits.

    They do not when the session is itself inside a transaction it does not end (a test's rolled
    back session, a caller's unit of work): then the main process loads everything.
    """
    import psycopg

    bind = session.get_bind()
    url = getattr(bind, "engine", bind).url
    if url.get_backend_name() != "postgresql":
        return None
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(conninfo, connect_timeout=10) as conn:
            seen = conn.execute("SELECT 1 FROM ingest_run WHERE id = %s", (run_id,)).fetchone()
    except psycopg.Error:
        return None
    return conninfo if seen else None


def ingest_paths(
    paths: Sequence[Path | str],
    *,
    session: Session,
    settings: Settings,
    progress: bool = False,
    cell_analyzer: Callable[[dict], Any] | str | None = "default",
) -> IngestReport:
    """Ingest the notebooks in ``paths`` (files, folders searched recursively for ``*.ipynb``, archives).

    ``cell_analyzer``: an optional picklable callable run in the worker processes on each new notebook
    (an nbformat 4 dict, as ``nbformat.reads`` gives it) returning a picklable result. If it has a
    ``load(*, connection, items)`` method, that runs in the main process inside each batch's
    transaction with ``items = [(notebook_id, cell_ids_by_position, result), ...]`` and the raw
    psycopg connection, so its rows land atomically with the notebook's. The default, ``"default"``,
    is the code analyser (ingest/understand: libraries, calls, plot kinds, stages, context);
    ``None`` ingests without it (``nbatlas analyze`` adds it later).

    Raises FileNotFoundError (before touching the database) if a path does not exist.
    """
    started = time.perf_counter()
    given = [Path(p).expanduser() for p in paths]
    missing = [str(p) for p in given if not p.exists()]
    if missing:
        raise FileNotFoundError("no such file or folder: " + ", ".join(missing))
    found = discover(given)
    total = len(found.files) + sum(count_zip_notebooks(a) or 0 for a in found.archives)

    run = IngestRun(kind="local", args={"paths": [os.path.abspath(p) for p in given], "workers": settings.workers})
    session.add(run)
    session.commit()
    report = IngestReport(run_id=run.id)
    if isinstance(cell_analyzer, str):
        from ingest.understand.store import CodeAnalyzer

        cell_analyzer = CodeAnalyzer()
    loader = BatchLoader(session, run.id, cell_analyzer)
    loading = None
    if settings.workers > 1:
        conninfo = _loading_conninfo(session, run.id)
        loading = None if conninfo is None else (conninfo, run.id)
    report.loaded_by = "main" if loading is None else "workers"
    status = "failed"
    try:
        with _pool(settings, cell_analyzer, loading) as pool, _Progress(progress, total) as bar:
            runner = _Run if loading is None else _ParallelRun
            state = runner(session, settings, report, loader, pool, bar)
            files = found.files
            if loading is not None:
                # largest first: the last tasks are the small ones, so the workers finish together
                files = sorted(files, key=_size, reverse=True)
            for path in files:
                state.add(local_place(path))
            for archive in found.archives:
                counted = count_zip_notebooks(archive) is not None
                for item in iter_archive(archive, settings):
                    if not counted:
                        bar.grow(1)
                    state.add(item)
            state.finish()
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        report.status = status
        report.seconds = time.perf_counter() - started
        try:
            session.rollback()  # a no-op unless a batch was cut short
            loader.update_run(
                status=status,
                finished_at=datetime.now(timezone.utc),
                **{k: v for k, v in _final_counters(report).items()},
            )
            session.commit()
        except Exception:  # the database itself went away: the run row stays 'running'
            pass
    return report


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _final_counters(report: IngestReport) -> dict[str, Any]:
    return {
        "files_seen": report.files_seen,
        "notebooks_added": report.notebooks_added,
        "sources_added": report.sources_added,
        "problems": len(report.problems),
    }
