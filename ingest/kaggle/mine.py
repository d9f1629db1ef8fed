"""The mining job: list Kaggle notebooks, draw a reproducible sample, pull each at its current version,
ingest as it goes, and keep the record (run, listing as seen, ledger) that makes it resumable.

Phases of a run (a re-run of the same specification resumes the unfinished run):

1. **Listing.** Every scope (one per competition, or one for a dataset / search / user) is listed page
   after page in the chosen order; Python notebooks only. Each row is recorded with its rank, votes and
   version as seen; then ``--limit`` / ``--top-percent`` / ``--sample --seed`` mark the selection.
2. **Pulling.** Each selected (ref, version) not already in the ledger is downloaded (a bounded number
   at once, politely) to ``$NBATLAS_HOME/kaggle/<owner>/<slug>/v<version>.ipynb`` with its metadata
   beside it, then ingested in small batches; the ledger row says pulled / invalid / skipped / failed.
   A file already on disk is never downloaded again, so a killed run loses no download.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import shlex
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from sqlalchemy import delete, func, select
from sqlmodel import Session

from db.models import KagglePull, MiningListing, MiningRun
from db.models._types import utcnow
from db.settings import Settings
from ingest.kaggle import store
from ingest.kaggle.client import KaggleClient, KaggleCredentialsError, KernelInfo

SortBy = Literal["votes", "hotness", "date-run", "views"]
DONE = ("pulled", "invalid", "skipped")


class MiningError(RuntimeError):
    """The run cannot go on (a bad specification, a run already in progress...)."""


class MiningSpec(BaseModel):
    """Everything that decides which notebooks a run pulls. Stored whole in ``mining_run.spec``."""

    competitions: list[str] = Field(default_factory=list)
    dataset: str | None = None
    search: str | None = None
    user: str | None = None
    top_competitions: int | None = Field(default=None, ge=1)
    competition_search: str | None = None
    competition_category: str | None = None
    competition_sort: str = "numberOfTeams"
    sort_by: SortBy = "votes"
    limit: int | None = Field(default=None, ge=1)
    top_percent: float | None = Field(default=None, gt=0, le=100)
    sample: int | None = Field(default=None, ge=1)
    seed: int | None = None
    with_outputs: bool = False
    with_data: bool = False

    @model_validator(mode="after")
    def _check(self) -> "MiningSpec":
        if not (self.competitions or self.top_competitions or self.dataset or self.search or self.user):
            raise ValueError("say what to mine: --competition, --top-competitions, --dataset, --search or --user")
        sizes = [name for name, v in (("--limit", self.limit), ("--top-percent", self.top_percent), ("--sample", self.sample)) if v is not None]
        if len(sizes) > 1:
            raise ValueError(f"{' and '.join(sizes)} exclude each other: choose one way to size the sample")
        if self.sample is not None and self.seed is None:
            raise ValueError("--sample needs --seed, so the same sample can be drawn again")
        if self.seed is not None and self.sample is None:
            raise ValueError("--seed only applies to --sample")
        self.competitions = list(dict.fromkeys(c.strip() for c in self.competitions if c.strip()))
        return self

    def canonical(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def spec_hash(self, kind: str = "kaggle") -> str:
        blob = json.dumps({"kind": kind, **self.canonical()}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def command(self) -> str:
        """The ``nbatlas`` command line that asks for exactly this specification."""
        parts = ["nbatlas", "mine", "kaggle"]
        for c in self.competitions:
            parts += ["--competition", c]
        for flag, value in (("--dataset", self.dataset), ("--search", self.search), ("--user", self.user),
                            ("--top-competitions", self.top_competitions), ("--competition-search", self.competition_search),
                            ("--competition-category", self.competition_category)):
            if value is not None:
                parts += [flag, str(value)]
        if self.top_competitions and self.competition_sort != "numberOfTeams":
            parts += ["--competition-sort", self.competition_sort]
        parts += ["--sort-by", self.sort_by]
        for flag, value in (("--limit", self.limit), ("--top-percent", self.top_percent), ("--sample", self.sample), ("--seed", self.seed)):
            if value is not None:
                parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        if self.with_outputs:
            parts.append("--with-outputs")
        if self.with_data:
            parts.append("--with-data")
        return shlex.join(parts)


@dataclass(frozen=True)
class Scope:
    """One listing: a competition's notebooks (with the other filters), or the filters alone."""

    competition: str | None
    dataset: str | None
    search: str | None
    user: str | None

    @property
    def label(self) -> str:
        parts = [f"{k}:{v}" for k, v in (("competition", self.competition), ("dataset", self.dataset),
                                          ("search", self.search), ("user", self.user)) if v]
        return " ".join(parts)


def select_ranks(total: int, spec: MiningSpec, scope_label: str) -> list[int]:
    """Which 1-based ranks of a listing of ``total`` the spec selects (sorted)."""
    if total <= 0:
        return []
    if spec.limit is not None:
        return list(range(1, min(spec.limit, total) + 1))
    if spec.top_percent is not None:
        # at least one notebook per listing: "the top 5%" of 10 notebooks is the top one
        n = max(1, math.ceil(total * spec.top_percent / 100 - 1e-9))
        return list(range(1, min(n, total) + 1))
    if spec.sample is not None:
        # seeded per scope, so adding a competition to the spec does not change another's sample
        rng = random.Random(f"nbatlas:{spec.seed}:{scope_label}")
        return sorted(r + 1 for r in rng.sample(range(total), min(spec.sample, total)))
    return list(range(1, total + 1))


@dataclass
class MiningReport:
    run_id: int
    resumed: bool = False
    listed: int = 0
    selected: int = 0
    pulled: int = 0
    already: int = 0
    invalid: int = 0
    skipped: int = 0
    failed: int = 0
    retries: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    # scopes (labels) whose listing held no Python notebook: a misspelt competition or dataset
    # lists nothing rather than failing, so the run would otherwise look like a successful empty one
    empty_listings: list[str] = field(default_factory=list)


_SCOPE_HINTS = {
    "competition": "check the slug, as in kaggle.com/competitions/<slug>",
    "dataset": "check owner/slug, as in kaggle.com/datasets/<owner>/<slug>",
    "search": "try another term",
    "user": "check the user name, as in kaggle.com/<user>",
}


def empty_listing_message(label: str) -> str:
    """What to tell the researcher about a scope that listed no Python notebook."""
    parts = re.split(r"(?:^| )(competition|dataset|search|user):", label)[1:]
    named = list(zip(parts[::2], parts[1::2]))
    what = " and ".join(f"{key} {value!r}" for key, value in named) or label
    hints = "; ".join(_SCOPE_HINTS[key] for key, _ in named[:1])  # the first criterion is the likely typo
    if len(named) > 1:
        hints += ", or the criteria together match nothing"
    return f"Kaggle listed no Python notebook for {what}" + (f": {hints}" if hints else "")


@dataclass
class _Downloaded:
    ref: str
    version: int | None
    path: Path
    info: KernelInfo


@dataclass
class _Skipped:
    ref: str
    version: int | None
    reason: str


def spool_path(settings: Settings, ref: str, version: int | None) -> Path:
    owner, _, slug = ref.partition("/")
    return settings.home / "kaggle" / owner / slug / f"v{version if version is not None else 'current'}.ipynb"


def input_dir(settings: Settings) -> Path:
    """Mount this at ``/kaggle/input`` to reproduce: competition and dataset files by slug."""
    return settings.home / "kaggle" / "input"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".part{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _info_to_json(info: KernelInfo) -> dict[str, Any]:
    data = store.kernel_fields(info)
    if data.get("last_run_at") is not None:
        data["last_run_at"] = data["last_run_at"].isoformat()
    return data


def _info_from_json(data: dict[str, Any]) -> KernelInfo:
    data = dict(data)
    if data.get("last_run_at"):
        data["last_run_at"] = datetime.fromisoformat(data["last_run_at"])
    data["extra"] = data.get("extra") or {}
    return KernelInfo(**data)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


IngestFiles = Callable[[list[Path]], Any]


class KaggleMiner:
    """One run of the mining job. Use :func:`mine_kaggle`."""

    def __init__(self, spec: MiningSpec, *, session: Session, settings: Settings, client: KaggleClient,
                 ingest_files: IngestFiles, progress: bool = False, batch_size: int = 16) -> None:
        self.spec = spec
        self.session = session
        self.settings = settings
        self.client = client
        self.ingest_files = ingest_files
        self.progress = progress
        self.batch_size = batch_size
        self._retries_before = 0
        self._data_lock = threading.Lock()
        self._data_done: set[str] = set()

    # --- the run record --------------------------------------------------------------------

    def _open_run(self, new_run: bool) -> tuple[MiningRun, bool]:
        spec_hash = self.spec.spec_hash()
        if not new_run:
            run = self.session.execute(
                select(MiningRun)
                .where(MiningRun.kind == "kaggle", MiningRun.spec_hash == spec_hash, MiningRun.status != "finished")
                .order_by(MiningRun.id.desc())
                .limit(1)
                .with_for_update()
            ).scalar_one_or_none()
            if run is not None:
                if (run.status == "running" and run.host == socket.gethostname() and run.pid
                        and run.pid != os.getpid() and _pid_alive(run.pid)):
                    raise MiningError(f"mining run {run.id} with this specification is still running (pid {run.pid})")
                run.status, run.error = "running", None
                run.host, run.pid = socket.gethostname(), os.getpid()
                run.resumed += 1
                self._retries_before = run.retries
                self.session.commit()
                return run, True
        run = MiningRun(
            kind="kaggle", spec=self.spec.canonical(), spec_hash=spec_hash, command=self.spec.command(),
            status="running", host=socket.gethostname(), pid=os.getpid(), started_at=utcnow(),
        )
        self.session.add(run)
        self.session.commit()
        return run, False

    def _save_counts(self, run: MiningRun, report: MiningReport) -> None:
        run.retries = self._retries_before + self.client.retries
        report.retries = run.retries
        counts = dict(self.session.execute(
            select(KagglePull.status, func.count()).where(KagglePull.run_id == run.id).group_by(KagglePull.status)
        ).all())
        run.pulled = counts.get("pulled", 0)
        run.skipped = counts.get("skipped", 0)
        run.failed = counts.get("failed", 0) + counts.get("invalid", 0)

    # --- listing ------------------------------------------------------------------------------

    def _scopes(self, run: MiningRun) -> list[Scope]:
        spec = self.spec
        competitions = list(spec.competitions)
        resolved: dict[str, Any] = {}
        if spec.top_competitions:
            top = self.client.competitions(search=spec.competition_search, category=spec.competition_category,
                                           sort_by=spec.competition_sort, limit=spec.top_competitions)
            resolved["top_competitions"] = [
                {"slug": c.slug, "title": c.title, "team_count": c.team_count, "category": c.category} for c in top
            ]
            competitions += [c.slug for c in top if c.slug not in competitions]
        run.resolved = {**(run.resolved or {}), **resolved, "competitions": competitions}
        if competitions:
            return [Scope(c, spec.dataset, spec.search, spec.user) for c in competitions]
        return [Scope(None, spec.dataset, spec.search, spec.user)]

    def _list(self, run: MiningRun, report: MiningReport) -> None:
        # a run killed while listing lists again from scratch: the listing is one snapshot
        self.session.execute(delete(MiningListing).where(MiningListing.run_id == run.id))
        scopes = self._scopes(run)
        totals: dict[str, int] = {}
        targets: set[tuple[str, int | None]] = set()
        with _progress(self.progress, "listing") as bar:
            task = bar.add_task("listing", total=len(scopes)) if bar else None
            for scope in scopes:
                rows = list(self._list_scope(scope))
                chosen = set(select_ranks(len(rows), self.spec, scope.label))
                now = utcnow()
                for rank, info in enumerate(rows, start=1):
                    self.session.add(MiningListing(
                        run_id=run.id, scope=scope.label, rank=rank, ref=info.ref, version=info.version,
                        title=info.title, author=info.author, votes=info.votes, language=info.language,
                        kernel_type=info.kernel_type, last_run_at=info.last_run_at, selected=rank in chosen, seen_at=now,
                    ))
                totals[scope.label] = len(rows)
                report.listed += len(rows)
                # a notebook listed by two competitions is one notebook to pull
                targets.update((info.ref, info.version) for rank, info in enumerate(rows, start=1) if rank in chosen)
                if bar:
                    bar.update(task, advance=1, description=f"listed {scope.label}: {len(rows)}")
        report.selected = len(targets)
        run.resolved = {**(run.resolved or {}), "listed": totals}
        run.listed, run.selected = report.listed, report.selected
        run.listed_at = utcnow()
        self._save_counts(run, report)
        self.session.commit()

    def _list_scope(self, scope: Scope) -> Iterator[KernelInfo]:
        n = 0
        for info in self.client.iter_kernels(competition=scope.competition, dataset=scope.dataset, search=scope.search,
                                             user=scope.user, sort_by=self.spec.sort_by):
            if not info.is_python_notebook:
                continue
            yield info
            n += 1
            # --limit needs no more than the first N (fewer calls to Kaggle); the other sizes need the total
            if self.spec.limit is not None and n >= self.spec.limit:
                return

    # --- pulling ------------------------------------------------------------------------------

    def _targets(self, run: MiningRun) -> list[tuple[str, int | None]]:
        rows = self.session.execute(
            select(MiningListing.ref, MiningListing.version, MiningListing.scope, MiningListing.rank)
            .where(MiningListing.run_id == run.id, MiningListing.selected)
            .order_by(MiningListing.id)
        ).all()
        return list(dict.fromkeys((ref, version) for ref, version, _, _ in rows))

    def _download(self, ref: str, version: int | None) -> _Downloaded | _Skipped:
        """Worker thread: HTTP and files only, no database."""
        path = spool_path(self.settings, ref, version)
        meta_path = path.with_suffix(".json")
        if path.exists() and meta_path.exists():
            info = _info_from_json(json.loads(meta_path.read_text()))
        else:
            with self.client.polite.downloads:
                pulled = self.client.get_kernel(ref, version)
            info = pulled.info
            if pulled.language or pulled.kernel_type:
                info.language = (pulled.language or info.language or "").lower() or None
                info.kernel_type = (pulled.kernel_type or info.kernel_type or "").lower() or None
            if not info.is_python_notebook:
                return _Skipped(ref, version, f"not a Python notebook (language {info.language}, type {info.kernel_type})")
            # metadata first, then the notebook: a notebook on disk always has its metadata beside it
            _write_atomic(meta_path, json.dumps(_info_to_json(info), indent=1).encode())
            _write_atomic(path, pulled.source.encode("utf-8", "surrogatepass"))
        if self.spec.with_outputs:
            out = path.with_name(path.stem + ".output")
            if not out.exists():
                with self.client.polite.downloads:
                    self.client.download_outputs(ref, out.with_name(out.name + ".part"))
                os.replace(out.with_name(out.name + ".part"), out)
        if self.spec.with_data:
            self._download_inputs(info)
        return _Downloaded(ref, version, path, info)

    def _download_inputs(self, info: KernelInfo) -> None:
        wanted = [("competition", c, c) for c in info.competition_sources]
        wanted += [("dataset", d, d.rsplit("/", 1)[-1]) for d in info.dataset_sources]
        for kind, ref, slug in wanted:
            dest = input_dir(self.settings) / slug
            with self._data_lock:
                if dest.exists() or ref in self._data_done:
                    continue
                self._data_done.add(ref)
            part = dest.with_name(dest.name + ".part")
            with self.client.polite.downloads:
                if kind == "competition":
                    self.client.download_competition_data(ref, part)
                else:
                    self.client.download_dataset(ref, part)
            os.replace(part, dest)

    def _ingest_batch(self, run: MiningRun, batch: list[_Downloaded], report: MiningReport) -> None:
        if not batch:
            return
        result = self.ingest_files([d.path for d in batch])
        ingest_run_id = getattr(result, "run_id", None)
        shas = {d.path: store.file_sha256(d.path) for d in batch}
        ids = store.notebook_ids_by_sha(self.session, list(shas.values()))
        problems = store.problems_of(self.session, result, [d.path for d in batch if shas[d.path] not in ids])
        for d in batch:
            nid = ids.get(shas[d.path])
            if nid is None:
                reason = problems.get(os.path.abspath(d.path), "the file did not become a notebook (no problem recorded)")
                store.record_pull(self.session, ref=d.ref, version=d.version, run_id=run.id, status="invalid",
                                  reason=reason, path=str(d.path))
                report.invalid += 1
                report.failures.append((d.ref, reason))
                continue
            info = d.info
            store.attach_kernel(
                self.session, notebook_id=nid, kind="kaggle", location=d.ref, origin="api",
                fields=store.kernel_fields(info), mining_run_id=run.id, ingest_run_id=ingest_run_id,
                source_metadata={"version": info.version, "spool": str(d.path)},
            )
            store.record_pull(self.session, ref=d.ref, version=d.version, run_id=run.id, status="pulled", path=str(d.path),
                              notebook_id=nid, with_outputs=self.spec.with_outputs, with_data=self.spec.with_data)
            report.pulled += 1
        self._save_counts(run, report)
        self.session.commit()

    def _pull(self, run: MiningRun, report: MiningReport) -> None:
        targets = self._targets(run)
        ledger = store.ledger_rows(self.session, targets)
        todo: list[tuple[str, int | None]] = []
        for key in targets:
            row = ledger.get(key)
            if row is not None and row.status in DONE:
                report.already += 1
            else:
                todo.append(key)
        order = {key: i for i, key in enumerate(todo)}
        batch: list[_Downloaded] = []
        with _progress(self.progress, "pulling") as bar, ThreadPoolExecutor(max_workers=self.client.polite.settings.concurrency) as pool:
            task = bar.add_task("pulling", total=len(todo)) if bar else None
            pending: dict[Future, tuple[str, int | None]] = {}
            queue = list(reversed(todo))
            window = self.client.polite.settings.concurrency * 2
            try:
                while queue or pending:
                    # a bounded window keeps Ctrl-C and kills cheap: few downloads are ever in flight
                    while queue and len(pending) < window:
                        key = queue.pop()
                        pending[pool.submit(self._download, *key)] = key
                    done, _ = wait(list(pending), return_when=FIRST_COMPLETED, timeout=1.0)
                    for future in sorted(done, key=lambda f: order[pending[f]]):
                        ref, version = pending.pop(future)
                        try:
                            outcome = future.result()
                        except KaggleCredentialsError:
                            raise
                        except Exception as exc:  # one notebook that cannot be pulled never stops the run
                            reason = f"{type(exc).__name__}: {exc}"
                            store.record_pull(self.session, ref=ref, version=version, run_id=run.id, status="failed", reason=reason)
                            report.failed += 1
                            report.failures.append((ref, reason))
                            self._save_counts(run, report)
                            self.session.commit()
                        else:
                            if isinstance(outcome, _Skipped):
                                store.record_pull(self.session, ref=ref, version=version, run_id=run.id, status="skipped", reason=outcome.reason)
                                report.skipped += 1
                                self._save_counts(run, report)
                                self.session.commit()
                            else:
                                batch.append(outcome)
                        if bar:
                            bar.update(task, advance=1)
                    if batch and (len(batch) >= self.batch_size or not pending or not done):
                        self._ingest_batch(run, batch, report)
                        batch = []
                self._ingest_batch(run, batch, report)
                batch = []
            except BaseException:
                for future in pending:
                    future.cancel()
                pool.shutdown(wait=False, cancel_futures=True)
                raise

    def run(self, *, new_run: bool = False) -> MiningReport:
        run, resumed = self._open_run(new_run)
        report = MiningReport(run_id=run.id, resumed=resumed, listed=run.listed, selected=run.selected)
        try:
            if run.listed_at is None:
                report.listed = report.selected = 0
                self._list(run, report)
            report.empty_listings = [label for label, n in ((run.resolved or {}).get("listed") or {}).items() if not n]
            self._pull(run, report)
            run.status, run.finished_at = "finished", utcnow()
            self._save_counts(run, report)
            self.session.commit()
        except KeyboardInterrupt:
            self.session.rollback()
            run.status, run.error = "interrupted", "interrupted by the user"
            self._save_counts(run, report)
            self.session.commit()
            raise
        except BaseException as exc:
            self.session.rollback()
            run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
            self._save_counts(run, report)
            self.session.commit()
            raise
        return report


def mine_kaggle(spec: MiningSpec, *, session: Session, settings: Settings, client: KaggleClient,
                ingest_files: IngestFiles | None = None, progress: bool = False, new_run: bool = False) -> MiningReport:
    """Run (or resume) the mining run of ``spec``. ``ingest_files(paths)`` defaults to the local ingest."""
    if ingest_files is None:
        from ingest.local import ingest_paths

        # parse in this process: downloads run in threads, and forking a threaded process is unsafe
        inline = settings.model_copy(update={"workers": 1})

        def ingest_files(paths: list[Path]):
            return ingest_paths(paths, session=session, settings=inline, progress=False)

    return KaggleMiner(spec, session=session, settings=settings, client=client, ingest_files=ingest_files,
                       progress=progress).run(new_run=new_run)


class _NoProgress:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _progress(enabled: bool, what: str):
    if not enabled:
        return _NoProgress()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=False)
