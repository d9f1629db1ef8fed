"""Importers for Kaggle's bulk archives: Meta Kaggle Code and KGTorrent.

* **Meta Kaggle Code**: one file per kernel version id, at
  ``{id // 1_000_000:04d}/{(id // 1000) % 1000:03d}/{id}.ipynb``, joined with the Meta Kaggle CSVs
  (KernelVersions, Kernels, KernelVersionCompetitionSources, KernelVersionDatasetSources, Competitions,
  Users; KernelLanguages, DatasetVersions and Datasets when present).
* **KGTorrent**: ``UserName_CurrentUrlSlug.ipynb`` files plus the same tables exported as CSV.

The real archives are hundreds of GB: the CSVs are streamed in blocks (pyarrow) and only the rows of
the files actually present are kept; notebooks are ingested in batches. Files without a metadata row
are imported too, with what is known (the kernel version id), and say so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select
from sqlmodel import Session

from db.models import MiningListing, MiningRun, Source
from db.models._types import utcnow
from db.settings import Settings
from ingest.kaggle import store

ArchiveKind = Literal["meta-kaggle-code", "kgtorrent"]
CODE_FILE = re.compile(r"(\d{4})/(\d{3})/(\d+)\.ipynb")


class ArchiveError(RuntimeError):
    """The archive or its metadata cannot be read as that layout."""


class ArchiveSelection(BaseModel):
    """Which notebooks of an archive to import: the same sampling options as ``nbatlas mine kaggle``."""

    competitions: list[str] = Field(default_factory=list)
    sort_by: Literal["votes", "date-run", "views"] = "votes"
    limit: int | None = Field(default=None, ge=1)
    top_percent: float | None = Field(default=None, gt=0, le=100)
    sample: int | None = Field(default=None, ge=1)
    seed: int | None = None
    # current: the kernel's current version only (as Kaggle shows it); all: every version file
    versions: Literal["current", "all"] = "current"
    # python: drop kernels Meta Kaggle says are not Python (files without metadata are kept)
    language: Literal["python", "all"] = "python"

    @model_validator(mode="after")
    def _check(self) -> "ArchiveSelection":
        sizes = [n for n, v in (("--limit", self.limit), ("--top-percent", self.top_percent), ("--sample", self.sample)) if v is not None]
        if len(sizes) > 1:
            raise ValueError(f"{' and '.join(sizes)} exclude each other: choose one way to size the sample")
        if self.sample is not None and self.seed is None:
            raise ValueError("--sample needs --seed, so the same sample can be drawn again")
        return self


@dataclass(slots=True)
class ArchiveKernel:
    """One notebook file of the archive and what the metadata says about it (slots: millions of them)."""

    path: Path
    member: str
    kernel_version_id: int | None = None
    kernel_id: int | None = None
    ref: str | None = None
    version: int | None = None
    title: str | None = None
    author: str | None = None
    votes: int | None = None
    views: int | None = None
    medal: int | None = None
    language: str | None = None
    kernel_type: str | None = None
    last_run_at: datetime | None = None
    competition_sources: list[str] = field(default_factory=list)
    dataset_sources: list[str] = field(default_factory=list)
    docker_image: str | None = None
    enable_internet: bool | None = None
    run_time_seconds: float | None = None
    is_current: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_metadata(self) -> bool:
        return self.ref is not None

    def fields(self) -> dict[str, Any]:
        extra = {k: v for k, v in self.extra.items() if v is not None}
        if not self.has_metadata:
            extra.setdefault("metadata", "no metadata row for this file")
        return {
            "ref": self.ref, "version": self.version, "kernel_id": self.kernel_id,
            "kernel_version_id": self.kernel_version_id, "title": self.title, "author": self.author,
            "votes": self.votes, "language": self.language, "kernel_type": self.kernel_type,
            "last_run_at": self.last_run_at, "competition_sources": self.competition_sources,
            "dataset_sources": self.dataset_sources, "docker_image": self.docker_image,
            "enable_internet": self.enable_internet, "medal": self.medal, "views": self.views,
            "run_time_seconds": self.run_time_seconds, "extra": extra or None,
        }


@dataclass
class ArchiveReport:
    run_id: int
    files: int = 0
    with_metadata: int = 0
    without_metadata: int = 0
    selected: int = 0
    imported: int = 0
    already: int = 0
    problems: int = 0
    ignored: list[str] = field(default_factory=list)


# --- Meta Kaggle tables, streamed ------------------------------------------------------------

_DATE_FORMATS = ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")


def parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    value = value.strip().rstrip("Z")
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(value.split(".")[0], fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return None


class MetaKaggle:
    """The Meta Kaggle CSVs in one folder, read as streams filtered to the ids wanted."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._files: dict[str, Path] = {}
        if folder is not None:
            if not folder.is_dir():
                raise ArchiveError(f"{folder}: not a folder of Meta Kaggle CSV files")
            for p in folder.iterdir():
                if p.suffix.lower() == ".csv":
                    self._files[p.stem.lower()] = p

    def has(self, table: str) -> bool:
        return table.lower() in self._files

    def rows(self, table: str, columns: dict[str, pa.DataType], *, key: str | None = None,
             keep: Iterable[Any] | None = None) -> Iterator[dict[str, Any]]:
        """Rows of ``table`` (only ``columns``), those whose ``key`` is in ``keep`` when given."""
        path = self._files.get(table.lower())
        if path is None:
            return
        wanted = None
        if keep is not None:
            values = list(keep)
            if not values:
                return
            wanted = pa.array(values, type=columns[key])
        try:
            reader = pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=8 << 20),
                # titles hold commas, quotes and newlines
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(include_columns=list(columns), include_missing_columns=True,
                                                     column_types=columns, strings_can_be_null=True),
            )
            for batch in reader:
                if wanted is not None:
                    batch = batch.filter(pc.is_in(batch.column(key), value_set=wanted))
                if batch.num_rows:
                    yield from batch.to_pylist()
        except (pa.ArrowInvalid, OSError) as exc:
            raise ArchiveError(f"{path}: cannot read it as a Meta Kaggle CSV ({exc})") from exc


I64, STR = pa.int64(), pa.string()
KERNEL_VERSION_COLUMNS = {"Id": I64, "ScriptId": I64, "ScriptLanguageId": I64, "AuthorUserId": I64, "CreationDate": STR,
                          "VersionNumber": I64, "Title": STR, "EvaluationDate": STR, "TotalVotes": I64,
                          "IsInternetEnabled": STR, "RunningTimeInMilliseconds": pa.float64(), "DockerImage": STR}
KERNEL_COLUMNS = {"Id": I64, "AuthorUserId": I64, "CurrentKernelVersionId": I64, "CurrentUrlSlug": STR, "Medal": I64,
                  "TotalViews": I64, "TotalVotes": I64}


def _truthy(value: Any) -> bool | None:
    if value is None:
        return None
    return str(value).strip().lower() in ("true", "1", "t", "yes")


class _Joiner:
    """Joins kernel version ids (and their kernels) with the rest of Meta Kaggle."""

    def __init__(self, meta: MetaKaggle) -> None:
        self.meta = meta

    def versions(self, ids: Iterable[int]) -> dict[int, dict]:
        return {r["Id"]: r for r in self.meta.rows("KernelVersions", KERNEL_VERSION_COLUMNS, key="Id", keep=ids)}

    def kernels(self, *, ids: Iterable[int] | None = None, slugs: Iterable[str] | None = None) -> dict[int, dict]:
        if slugs is not None:
            return {r["Id"]: r for r in self.meta.rows("Kernels", KERNEL_COLUMNS, key="CurrentUrlSlug", keep=slugs)}
        return {r["Id"]: r for r in self.meta.rows("Kernels", KERNEL_COLUMNS, key="Id", keep=ids or [])}

    def user_names(self, ids: Iterable[int]) -> dict[int, str]:
        return {r["Id"]: r["UserName"] for r in self.meta.rows("Users", {"Id": I64, "UserName": STR}, key="Id", keep=ids)
                if r["UserName"]}

    def languages(self) -> dict[int, tuple[str | None, str | None]]:
        """ScriptLanguageId -> (language, kernel type), from KernelLanguages when present."""
        found = {}
        for r in self.meta.rows("KernelLanguages", {"Id": I64, "Name": STR, "IsNotebook": STR}):
            name = (r["Name"] or "").lower()
            language = "python" if name in ("python", "ipython", "python3") or "python" in name else (
                "r" if name in ("r", "rmarkdown", "ir") else name or None)
            found[r["Id"]] = (language, "notebook" if _truthy(r["IsNotebook"]) else "script")
        return found

    def competition_sources(self, version_ids: Iterable[int]) -> dict[int, list[str]]:
        links = list(self.meta.rows("KernelVersionCompetitionSources", {"KernelVersionId": I64, "SourceCompetitionId": I64},
                                    key="KernelVersionId", keep=version_ids))
        slugs = {r["Id"]: r["Slug"] for r in self.meta.rows("Competitions", {"Id": I64, "Slug": STR}, key="Id",
                                                                  keep={link["SourceCompetitionId"] for link in links})}
        found: dict[int, list[str]] = defaultdict(list)
        for link in links:
            slug = slugs.get(link["SourceCompetitionId"]) or f"competition-id:{link['SourceCompetitionId']}"
            if slug not in found[link["KernelVersionId"]]:
                found[link["KernelVersionId"]].append(slug)
        return found

    def dataset_sources(self, version_ids: Iterable[int]) -> dict[int, list[str]]:
        links = list(self.meta.rows("KernelVersionDatasetSources", {"KernelVersionId": I64, "SourceDatasetVersionId": I64},
                                    key="KernelVersionId", keep=version_ids))
        # owner/slug when DatasetVersions (+ Datasets, Users) are there; the version id otherwise
        dv = {r["Id"]: r for r in self.meta.rows("DatasetVersions", {"Id": I64, "DatasetId": I64, "Slug": STR}, key="Id",
                                                   keep={link["SourceDatasetVersionId"] for link in links})}
        ds = {r["Id"]: r for r in self.meta.rows("Datasets", {"Id": I64, "OwnerUserId": I64}, key="Id",
                                                   keep={r["DatasetId"] for r in dv.values() if r["DatasetId"] is not None})}
        owners = self.user_names({r["OwnerUserId"] for r in ds.values() if r["OwnerUserId"] is not None})
        found: dict[int, list[str]] = defaultdict(list)
        for link in links:
            version = dv.get(link["SourceDatasetVersionId"])
            name = f"dataset-version-id:{link['SourceDatasetVersionId']}"
            if version and version["Slug"]:
                owner = owners.get((ds.get(version["DatasetId"]) or {}).get("OwnerUserId"))
                name = f"{owner}/{version['Slug']}" if owner else version["Slug"]
            if name not in found[link["KernelVersionId"]]:
                found[link["KernelVersionId"]].append(name)
        return found

    def describe(self, kernels_by_version: dict[int, ArchiveKernel], versions: dict[int, dict], kernels: dict[int, dict],
                 users: dict[int, str]) -> None:
        """Fill every ArchiveKernel whose version row is known."""
        languages = self.languages()
        competitions = self.competition_sources(list(versions))
        datasets = self.dataset_sources(list(versions))
        for vid, ak in kernels_by_version.items():
            v = versions.get(vid)
            if v is None:
                continue
            k = kernels.get(v["ScriptId"]) or {}
            author = users.get(k.get("AuthorUserId") or v.get("AuthorUserId"))
            slug = k.get("CurrentUrlSlug")
            ak.kernel_id = v["ScriptId"]
            ak.ref = f"{author}/{slug}" if author and slug else None
            ak.version = v["VersionNumber"]
            ak.title = v["Title"]
            ak.author = author
            ak.votes = k.get("TotalVotes") if k else v.get("TotalVotes")
            ak.views = k.get("TotalViews")
            ak.medal = k.get("Medal")
            ak.language, ak.kernel_type = languages.get(v["ScriptLanguageId"], (None, None))
            ak.last_run_at = parse_date(v.get("EvaluationDate")) or parse_date(v.get("CreationDate"))
            ak.competition_sources = competitions.get(vid, [])
            ak.dataset_sources = datasets.get(vid, [])
            ak.docker_image = v.get("DockerImage")
            ak.enable_internet = _truthy(v.get("IsInternetEnabled"))
            run_ms = v.get("RunningTimeInMilliseconds")
            ak.run_time_seconds = run_ms / 1000 if run_ms is not None else None
            ak.is_current = (k.get("CurrentKernelVersionId") == vid) if k else None
            ak.extra = {"version_votes": v.get("TotalVotes"), "created_at": v.get("CreationDate"),
                        "script_language_id": v.get("ScriptLanguageId")}
            if ak.ref is None:
                # the version row exists but its kernel or author does not: keep what is known
                ak.extra["metadata"] = "kernel or author row missing"


# --- scanning the two layouts ------------------------------------------------------------------


def scan_meta_kaggle_code(root: Path, ignored: list[str]) -> Iterator[tuple[int, Path, str]]:
    """(kernel version id, path, member) of every ``.ipynb`` in the Meta Kaggle Code layout."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith(".ipynb"):
                continue
            path = Path(dirpath) / name
            member = path.relative_to(root).as_posix()
            m = CODE_FILE.fullmatch(member)
            if not m:
                ignored.append(f"{member}: not at {{id//1e6:04d}}/{{id//1000%1000:03d}}/{{id}}.ipynb")
                continue
            vid = int(m.group(3))
            if m.group(1) != f"{vid // 1_000_000:04d}" or m.group(2) != f"{(vid // 1000) % 1000:03d}":
                ignored.append(f"{member}: kernel version {vid} belongs in {vid // 1_000_000:04d}/{(vid // 1000) % 1000:03d}/")
                continue
            yield vid, path, member


def scan_kgtorrent(root: Path, ignored: list[str]) -> dict[str, tuple[Path, str]]:
    """``UserName_CurrentUrlSlug`` -> (path, member) for every ``.ipynb`` under ``root``."""
    found: dict[str, tuple[Path, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith(".ipynb"):
                continue
            path = Path(dirpath) / name
            member = path.relative_to(root).as_posix()
            stem = name[: -len(".ipynb")]
            if "_" not in stem:
                ignored.append(f"{member}: not named UserName_CurrentUrlSlug.ipynb")
            if stem in found:
                ignored.append(f"{member}: same name as {found[stem][1]}, kept the first")
                continue
            found[stem] = (path, member)
    return found


# --- selection ---------------------------------------------------------------------------------


def _sort_key(sort_by: str) -> Callable[[ArchiveKernel], tuple]:
    if sort_by == "votes":
        return lambda k: (-(k.votes or 0), k.kernel_version_id or 0, k.member)
    if sort_by == "views":
        return lambda k: (-(k.views or 0), k.kernel_version_id or 0, k.member)
    return lambda k: (-(k.last_run_at.timestamp() if k.last_run_at else 0), k.kernel_version_id or 0, k.member)


def select_kernels(kernels: list[ArchiveKernel], sel: ArchiveSelection) -> tuple[list[tuple[str, int, ArchiveKernel]], dict[str, int]]:
    """(scope, rank, kernel) of the chosen files, and the number of candidates per scope."""
    from ingest.kaggle.mine import MiningSpec, select_ranks  # the one definition of limit / top-percent / sample

    candidates = [k for k in kernels if sel.language == "all" or k.language in (None, "python")]
    if sel.language == "python":
        candidates = [k for k in candidates if k.kernel_type in (None, "notebook")]
    if sel.versions == "current":
        by_kernel: dict[Any, list[ArchiveKernel]] = defaultdict(list)
        for k in candidates:
            by_kernel[k.kernel_id if k.kernel_id is not None else ("file", k.member)].append(k)
        candidates = []
        for group in by_kernel.values():
            current = [k for k in group if k.is_current]
            # the current version's file may be missing from the archive: the newest present stands in
            candidates.append(current[0] if current else max(group, key=lambda k: (k.version or 0, k.kernel_version_id or 0)))
    spec = MiningSpec.model_construct(limit=sel.limit, top_percent=sel.top_percent, sample=sel.sample, seed=sel.seed)
    scopes: list[tuple[str, list[ArchiveKernel]]]
    if sel.competitions:
        scopes = [(f"competition:{c}", [k for k in candidates if c in k.competition_sources]) for c in sel.competitions]
    else:
        scopes = [("archive", candidates)]
    chosen: list[tuple[str, int, ArchiveKernel]] = []
    totals: dict[str, int] = {}
    for label, members in scopes:
        members.sort(key=_sort_key(sel.sort_by))
        totals[label] = len(members)
        for rank in select_ranks(len(members), spec, label):
            chosen.append((label, rank, members[rank - 1]))
    return chosen, totals


# --- the import job ----------------------------------------------------------------------------

IngestFiles = Callable[[list[Path]], Any]


class ArchiveImporter:
    def __init__(self, kind: ArchiveKind, root: Path, meta_dir: Path | None, selection: ArchiveSelection, *,
                 session: Session, settings: Settings, ingest_files: IngestFiles, progress: bool = False,
                 batch_size: int = 256) -> None:
        if not root.is_dir():
            raise ArchiveError(f"{root}: not a folder (extract the archive first)")
        self.kind, self.root, self.selection = kind, root.resolve(), selection
        self.meta = MetaKaggle(meta_dir)
        self.join = _Joiner(self.meta)
        self.session, self.settings = session, settings
        self.ingest_files, self.progress, self.batch_size = ingest_files, progress, batch_size

    def read(self, report: ArchiveReport) -> list[ArchiveKernel]:
        if self.kind == "meta-kaggle-code":
            return self._read_code(report)
        return self._read_kgtorrent(report)

    def _read_code(self, report: ArchiveReport) -> list[ArchiveKernel]:
        by_version = {vid: ArchiveKernel(path=path, member=member, kernel_version_id=vid)
                      for vid, path, member in scan_meta_kaggle_code(self.root, report.ignored)}
        versions = self.join.versions(list(by_version))
        kernels = self.join.kernels(ids={v["ScriptId"] for v in versions.values() if v["ScriptId"] is not None})
        users = self.join.user_names({k["AuthorUserId"] for k in kernels.values() if k["AuthorUserId"] is not None})
        self.join.describe(by_version, versions, kernels, users)
        return list(by_version.values())

    def _read_kgtorrent(self, report: ArchiveReport) -> list[ArchiveKernel]:
        files = scan_kgtorrent(self.root, report.ignored)
        # a user name may itself hold "_": try every split, keep the one the tables confirm
        slugs = {stem[i + 1:] for stem in files for i, ch in enumerate(stem) if ch == "_"}
        kernels = self.join.kernels(slugs=slugs)
        users = self.join.user_names({k["AuthorUserId"] for k in kernels.values() if k["AuthorUserId"] is not None})
        by_name: dict[str, dict] = {}
        for k in kernels.values():
            name = users.get(k["AuthorUserId"])
            if name and k["CurrentUrlSlug"]:
                by_name.setdefault(f"{name}_{k['CurrentUrlSlug']}", k)
        found: list[ArchiveKernel] = []
        by_version: dict[int, ArchiveKernel] = {}
        for stem, (path, member) in files.items():
            ak = ArchiveKernel(path=path, member=member)
            k = by_name.get(stem)
            if k is not None:
                # what Kernels alone says; the version row, when there is one, adds the rest
                ak.kernel_id, ak.author = k["Id"], users[k["AuthorUserId"]]
                ak.ref = f"{ak.author}/{k['CurrentUrlSlug']}"
                ak.votes, ak.views, ak.medal, ak.is_current = k["TotalVotes"], k["TotalViews"], k["Medal"], True
                if k["CurrentKernelVersionId"] is not None:
                    ak.kernel_version_id = k["CurrentKernelVersionId"]
                    by_version[ak.kernel_version_id] = ak
            found.append(ak)
        self.join.describe(by_version, self.join.versions(list(by_version)), kernels, users)
        return found

    def run(self) -> ArchiveReport:
        spec = {"kind": self.kind, "root": str(self.root), "meta": str(self.meta.folder) if self.meta.folder else None,
                **self.selection.model_dump(mode="json")}
        run = MiningRun(kind=self.kind, spec=spec, spec_hash=hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest(),
                        status="running", started_at=utcnow(), host=os.uname().nodename, pid=os.getpid())
        self.session.add(run)
        self.session.commit()
        report = ArchiveReport(run_id=run.id)
        try:
            kernels = self.read(report)
            report.files = len(kernels)
            report.with_metadata = sum(1 for k in kernels if k.has_metadata)
            report.without_metadata = report.files - report.with_metadata
            chosen, totals = select_kernels(kernels, self.selection)
            report.selected = len(chosen)
            run.resolved = {"files": report.files, "with_metadata": report.with_metadata,
                            "without_metadata": report.without_metadata, "listed": totals,
                            "ignored": report.ignored[:1000]}
            run.listed, run.selected, run.listed_at = sum(totals.values()), len(chosen), utcnow()
            now = utcnow()
            for scope, rank, k in chosen:
                self.session.add(MiningListing(
                    run_id=run.id, scope=scope, rank=rank, ref=k.ref or f"{self.kind}:{k.member}", version=k.version,
                    title=k.title, author=k.author, votes=k.votes, language=k.language, kernel_type=k.kernel_type,
                    last_run_at=k.last_run_at, selected=True, seen_at=now,
                ))
            self.session.commit()
            unique = list({k.member: k for _, _, k in chosen}.values())
            self._ingest(run, unique, report)
            run.status, run.finished_at = "finished", utcnow()
            run.pulled, run.failed = report.imported + report.already, report.problems
            self.session.commit()
        except BaseException as exc:
            self.session.rollback()
            run.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            run.error = f"{type(exc).__name__}: {exc}"
            run.pulled, run.failed = report.imported + report.already, report.problems
            self.session.commit()
            raise
        return report

    def _ingest(self, run: MiningRun, kernels: list[ArchiveKernel], report: ArchiveReport) -> None:
        from ingest.kaggle.mine import _progress

        with _progress(self.progress, "importing") as bar:
            task = bar.add_task(f"importing {self.kind}", total=len(kernels)) if bar else None
            for start in range(0, len(kernels), self.batch_size):
                batch = kernels[start:start + self.batch_size]
                # a re-run skips what an earlier run of this archive already imported
                done = set(self.session.execute(
                    select(Source.member).where(Source.kind == self.kind, Source.location == str(self.root),
                                                Source.member.in_([k.member for k in batch]))
                ).scalars())
                todo = [k for k in batch if k.member not in done]
                report.already += len(batch) - len(todo)
                if todo:
                    result = self.ingest_files([k.path for k in todo])
                    ingest_run_id = getattr(result, "run_id", None)
                    shas = {k.member: store.file_sha256(k.path) for k in todo}
                    ids = store.notebook_ids_by_sha(self.session, list(shas.values()))
                    for k in todo:
                        nid = ids.get(shas[k.member])
                        if nid is None:
                            report.problems += 1  # the ingest recorded the problem, naming the file
                            continue
                        store.attach_kernel(self.session, notebook_id=nid, kind=self.kind, location=str(self.root),
                                            member=k.member, origin=self.kind, fields=k.fields(), mining_run_id=run.id,
                                            ingest_run_id=ingest_run_id)
                        report.imported += 1
                    run.pulled, run.failed = report.imported + report.already, report.problems
                    self.session.commit()
                if bar:
                    bar.update(task, advance=len(batch))


def import_archive(kind: ArchiveKind, root: Path, *, meta_dir: Path | None, selection: ArchiveSelection, session: Session,
                   settings: Settings, ingest_files: IngestFiles | None = None, progress: bool = False) -> ArchiveReport:
    """Import a Meta Kaggle Code or KGTorrent folder; ``ingest_files(paths)`` defaults to the local ingest."""
    if ingest_files is None:
        from ingest.local import ingest_paths

        def ingest_files(paths: list[Path]):
            return ingest_paths(paths, session=session, settings=settings, progress=False)

    return ArchiveImporter(kind, root, meta_dir, selection, session=session, settings=settings,
                           ingest_files=ingest_files, progress=progress).run()
