"""Writing Kaggle records: provenance rows with their Kaggle metadata, and the pull ledger."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session

from db.models import KaggleKernel, KagglePull, Notebook, Problem, Source
from db.models._types import utcnow
from ingest.kaggle.client import KernelInfo

KERNEL_COLUMNS = (
    "ref", "version", "kernel_id", "kernel_version_id", "title", "author", "votes", "language", "kernel_type",
    "last_run_at", "competition_sources", "dataset_sources", "kernel_sources", "model_sources", "docker_image",
    "machine_shape", "is_private", "enable_gpu", "enable_internet", "medal", "views", "run_time_seconds", "extra",
)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def notebook_ids_by_sha(session: Session, shas: list[str]) -> dict[str, int]:
    if not shas:
        return {}
    rows = session.execute(select(Notebook.sha256, Notebook.id).where(Notebook.sha256.in_(shas)))
    return {sha: nid for sha, nid in rows}


def problems_of(session: Session, report: Any, paths: list[Path]) -> dict[str, str]:
    """Why each of ``paths`` (files that did not become notebooks) failed: from the ingest report,
    else from the problem table. Keyed by absolute path."""
    wanted = {os.path.abspath(p) for p in paths}
    found: dict[str, str] = {}
    for location, _member, stage, reason in getattr(report, "problems", None) or []:
        if location in wanted:
            found.setdefault(location, f"{stage}: {reason}")
    missing = sorted(wanted - found.keys())
    found.update(problems_by_location(session, missing))
    return found


def problems_by_location(session: Session, locations: list[str]) -> dict[str, str]:
    """The error recorded for each file that did not become a notebook (newest first)."""
    if not locations:
        return {}
    rows = session.execute(
        select(Problem.location, Problem.stage, Problem.reason)
        .where(Problem.location.in_(locations), Problem.severity == "error")
        .order_by(Problem.found_at.desc())
    )
    found: dict[str, str] = {}
    for location, stage, reason in rows:
        found.setdefault(location, f"{stage}: {reason}")
    return found


def attach_kernel(session: Session, *, notebook_id: int, kind: str, location: str, member: str = "",
                  origin: str, fields: dict[str, Any], mining_run_id: int | None, ingest_run_id: int | None = None,
                  source_metadata: dict[str, Any] | None = None) -> int:
    """A provenance row (``kind``, ``location``) for the notebook and its Kaggle metadata row; idempotent."""
    stmt = insert(Source).values(
        notebook_id=notebook_id, kind=kind, location=location, member=member, run_id=ingest_run_id,
        fetched_at=utcnow(), metadata_=source_metadata or {},
    )
    stmt = stmt.on_conflict_do_update(
        constraint="uq_source_place", set_={"fetched_at": stmt.excluded.fetched_at, "metadata": stmt.excluded.metadata}
    ).returning(Source.id)
    source_id = session.execute(stmt).scalar_one()
    values = {k: fields.get(k) for k in KERNEL_COLUMNS}
    for key in ("competition_sources", "dataset_sources", "kernel_sources", "model_sources"):
        values[key] = list(values[key] or [])
    values.update(source_id=source_id, notebook_id=notebook_id, origin=origin, mining_run_id=mining_run_id, fetched_at=utcnow())
    kstmt = insert(KaggleKernel).values(**values)
    kstmt = kstmt.on_conflict_do_update(
        constraint="uq_kaggle_kernel_source",
        set_={k: kstmt.excluded[k] for k in (*KERNEL_COLUMNS, "mining_run_id", "fetched_at", "origin")},
    )
    session.execute(kstmt)
    return source_id


def kernel_fields(info: KernelInfo) -> dict[str, Any]:
    data = asdict(info)
    extra = {k: v for k, v in (data.pop("extra") or {}).items() if v not in (None, [], "")}
    data["extra"] = extra or None
    return data


def ledger_rows(session: Session, keys: list[tuple[str, int | None]]) -> dict[tuple[str, int | None], KagglePull]:
    if not keys:
        return {}
    refs = sorted({ref for ref, _ in keys})
    rows = session.execute(select(KagglePull).where(KagglePull.ref.in_(refs))).scalars()
    wanted = set(keys)
    return {(r.ref, r.version): r for r in rows if (r.ref, r.version) in wanted}


def record_pull(session: Session, *, ref: str, version: int | None, run_id: int, status: str, reason: str | None = None,
                path: str | None = None, notebook_id: int | None = None, with_outputs: bool = False,
                with_data: bool = False, attempt: bool = True) -> None:
    """Upsert the ledger row of (ref, version)."""
    now = utcnow()
    stmt = insert(KagglePull).values(
        ref=ref, version=version, run_id=run_id, status=status, reason=reason, attempts=1 if attempt else 0, path=path,
        notebook_id=notebook_id, with_outputs=with_outputs, with_data=with_data, first_at=now, updated_at=now,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["ref", "version"],
        set_={
            "run_id": stmt.excluded.run_id,
            "status": stmt.excluded.status,
            "reason": stmt.excluded.reason,
            "attempts": KagglePull.attempts + (1 if attempt else 0),
            "path": stmt.excluded.path,
            "notebook_id": stmt.excluded.notebook_id,
            "with_outputs": stmt.excluded.with_outputs,
            "with_data": stmt.excluded.with_data,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    session.execute(stmt)
