"""Kaggle: mining runs (the record that lets anyone re-draw a sample), the listing as seen, the pull
ledger, and the Kaggle metadata of every notebook that came from Kaggle or its archives."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Float, Index, Integer, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from db.models._types import fk_column, id_column, jsonb_column, timestamp_column

# timestamps unknown until something happens use a plain column: timestamp_column() defaults to now


class MiningRun(SQLModel, table=True):
    """One ``nbatlas mine kaggle`` / ``nbatlas import meta-kaggle-code|kgtorrent`` invocation (resumed runs
    keep their row): the full specification, when, how it went."""

    __tablename__ = "mining_run"

    id: int | None = Field(default=None, sa_column=id_column())
    # kaggle | meta-kaggle-code | kgtorrent
    kind: str = Field(sa_column=Column(Text, nullable=False, index=True))
    # every option that decides the sample (selection, order, size, seed, ...), as given
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=jsonb_column(nullable=False))
    # sha256 of the canonical spec: the same command again finds its unfinished run and resumes it
    spec_hash: str = Field(sa_column=Column(Text, nullable=False, index=True))
    # what the spec resolved to at listing time, e.g. the top competitions as Kaggle ranked them then
    resolved: dict[str, Any] | None = Field(default=None, sa_column=jsonb_column())
    # the equivalent command line, to re-draw the same sample
    command: str | None = Field(default=None, sa_column=Column(Text))
    started_at: datetime = Field(sa_column=timestamp_column())
    listed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    finished_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # running | finished | failed | interrupted
    status: str = Field(default="running", sa_column=Column(Text, nullable=False, index=True))
    error: str | None = Field(default=None, sa_column=Column(Text))
    # the process working on it, so a second invocation does not resume a run that is still alive
    host: str | None = Field(default=None, sa_column=Column(Text))
    pid: int | None = Field(default=None, sa_column=Column(Integer))
    resumed: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    listed: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    selected: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    pulled: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    skipped: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    failed: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    # HTTP calls retried after a 429 / 5xx / connection error (politeness, for the record)
    retries: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))


class MiningListing(SQLModel, table=True):
    """A kernel as the listing showed it when the run listed its scope (competition, dataset, search...)."""

    __tablename__ = "mining_listing"
    # one row per kernel version per scope (archives imported with --versions all list several versions)
    __table_args__ = (Index("uq_mining_listing", "run_id", "scope", "ref", "version", unique=True, postgresql_nulls_not_distinct=True),)

    id: int | None = Field(default=None, sa_column=id_column())
    run_id: int = Field(sa_column=fk_column("mining_run.id", index=False))
    # competition:<slug> | dataset:<owner/slug> | search:<term> | user:<name> | archive
    scope: str = Field(sa_column=Column(Text, nullable=False))
    # 1-based position in the scope's listing, in the run's sort order
    rank: int = Field(sa_column=Column(Integer, nullable=False))
    ref: str = Field(sa_column=Column(Text, nullable=False, index=True))
    version: int | None = Field(default=None, sa_column=Column(Integer))
    title: str | None = Field(default=None, sa_column=Column(Text))
    author: str | None = Field(default=None, sa_column=Column(Text))
    votes: int | None = Field(default=None, sa_column=Column(Integer))
    language: str | None = Field(default=None, sa_column=Column(Text))
    kernel_type: str | None = Field(default=None, sa_column=Column(Text))
    last_run_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # chosen by the run's --limit / --top-percent / --sample
    selected: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false")))
    seen_at: datetime = Field(sa_column=timestamp_column())


class KagglePull(SQLModel, table=True):
    """The ledger: one row per kernel version ever asked for, so nothing is pulled twice."""

    __tablename__ = "kaggle_pull"
    __table_args__ = (
        # a kernel listed without a version number is keyed by version NULL
        Index("uq_kaggle_pull", "ref", "version", unique=True, postgresql_nulls_not_distinct=True),
    )

    id: int | None = Field(default=None, sa_column=id_column())
    ref: str = Field(sa_column=Column(Text, nullable=False))
    version: int | None = Field(default=None, sa_column=Column(Integer))
    # the run that last worked on it
    run_id: int | None = Field(default=None, sa_column=fk_column("mining_run.id", nullable=True, ondelete="SET NULL"))
    # pulled | invalid (pulled, but not a notebook nbformat can read: a problem row says why) |
    # skipped (not a Python notebook) | failed (could not be downloaded; a re-run tries again).
    # A download on disk but not yet ingested has no row: the file itself (path) is the record.
    status: str = Field(sa_column=Column(Text, nullable=False, index=True))
    reason: str | None = Field(default=None, sa_column=Column(Text))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    path: str | None = Field(default=None, sa_column=Column(Text))
    notebook_id: int | None = Field(default=None, sa_column=fk_column("notebook.id", nullable=True, ondelete="SET NULL"))
    with_outputs: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false")))
    with_data: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false")))
    first_at: datetime = Field(sa_column=timestamp_column())
    updated_at: datetime = Field(sa_column=timestamp_column())


class KaggleKernel(SQLModel, table=True):
    """Kaggle metadata of one provenance row (a source of kind kaggle / meta-kaggle-code / kgtorrent)."""

    __tablename__ = "kaggle_kernel"
    __table_args__ = (
        UniqueConstraint("source_id", name="uq_kaggle_kernel_source"),
        Index("ix_kaggle_kernel_competitions", "competition_sources", postgresql_using="gin"),
        Index("ix_kaggle_kernel_datasets", "dataset_sources", postgresql_using="gin"),
    )

    id: int | None = Field(default=None, sa_column=id_column())
    source_id: int = Field(sa_column=fk_column("source.id", index=False))
    # denormalised from source so filters by notebook need no join
    notebook_id: int = Field(sa_column=fk_column("notebook.id"))
    # api | meta-kaggle-code | kgtorrent
    origin: str = Field(sa_column=Column(Text, nullable=False))
    # owner/slug; NULL for an archive file whose kernel has no metadata row
    ref: str | None = Field(default=None, sa_column=Column(Text, index=True))
    version: int | None = Field(default=None, sa_column=Column(Integer))
    # Kaggle's numeric ids (Kernels.Id, KernelVersions.Id)
    kernel_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    kernel_version_id: int | None = Field(default=None, sa_column=Column(BigInteger, index=True))
    title: str | None = Field(default=None, sa_column=Column(Text))
    author: str | None = Field(default=None, sa_column=Column(Text, index=True))
    votes: int | None = Field(default=None, sa_column=Column(Integer, index=True))
    language: str | None = Field(default=None, sa_column=Column(Text))
    kernel_type: str | None = Field(default=None, sa_column=Column(Text))
    last_run_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    competition_sources: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False, server_default="{}"))
    dataset_sources: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False, server_default="{}"))
    kernel_sources: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False, server_default="{}"))
    model_sources: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False, server_default="{}"))
    docker_image: str | None = Field(default=None, sa_column=Column(Text))
    machine_shape: str | None = Field(default=None, sa_column=Column(Text))
    is_private: bool | None = Field(default=None, sa_column=Column(Boolean))
    enable_gpu: bool | None = Field(default=None, sa_column=Column(Boolean))
    enable_internet: bool | None = Field(default=None, sa_column=Column(Boolean))
    medal: int | None = Field(default=None, sa_column=Column(Integer))
    views: int | None = Field(default=None, sa_column=Column(Integer))
    run_time_seconds: float | None = Field(default=None, sa_column=Column(Float))
    mining_run_id: int | None = Field(default=None, sa_column=fk_column("mining_run.id", nullable=True, ondelete="SET NULL"))
    # fields Kaggle sent that have no column, so nothing is lost
    extra: dict[str, Any] | None = Field(default=None, sa_column=jsonb_column())
    fetched_at: datetime = Field(sa_column=timestamp_column())
