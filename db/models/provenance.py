"""Where notebooks came from: ingest runs, sources (provenance) and the problems found per file."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CHAR, Column, Index, Integer, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from db.models._types import fk_column, id_column, jsonb_column, timestamp_column


class IngestRun(SQLModel, table=True):
    __tablename__ = "ingest_run"

    id: int | None = Field(default=None, sa_column=id_column())
    # local | archive | kaggle
    kind: str = Field(sa_column=Column(Text, nullable=False))
    args: dict[str, Any] = Field(default_factory=dict, sa_column=jsonb_column(nullable=False))
    started_at: datetime = Field(sa_column=timestamp_column())
    finished_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    files_seen: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    notebooks_added: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    sources_added: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    problems: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    # running | finished | failed | interrupted
    status: str = Field(default="running", sa_column=Column(Text, nullable=False))


class Source(SQLModel, table=True):
    """One place a notebook was found. The same file found at two places: one notebook, two sources."""

    __tablename__ = "source"
    __table_args__ = (UniqueConstraint("notebook_id", "kind", "location", "member", name="uq_source_place"),)

    id: int | None = Field(default=None, sa_column=id_column())
    notebook_id: int = Field(sa_column=fk_column("notebook.id"))
    # local | archive | kaggle
    kind: str = Field(sa_column=Column(Text, nullable=False, index=True))
    # absolute file path, archive path, or Kaggle kernel ref (owner/slug)
    location: str = Field(sa_column=Column(Text, nullable=False))
    # path inside an archive; '' when not from an archive
    member: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    fetched_at: datetime = Field(sa_column=timestamp_column())
    run_id: int | None = Field(default=None, sa_column=fk_column("ingest_run.id", nullable=True, ondelete="SET NULL"))
    # free metadata (Kaggle fields get real columns in a later migration)
    metadata_: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", jsonb_column().type, nullable=False, server_default=text("'{}'::jsonb")))


class Problem(SQLModel, table=True):
    """A file that could not be ingested (severity 'error') or was ingested with a caveat ('warning')."""

    __tablename__ = "problem"
    __table_args__ = (
        # the same problem found again by a re-run is not a new row
        Index("uq_problem", "location", "member", "file_sha256", "stage", "severity", unique=True, postgresql_nulls_not_distinct=True),
    )

    id: int | None = Field(default=None, sa_column=id_column())
    run_id: int | None = Field(default=None, sa_column=fk_column("ingest_run.id", nullable=True, ondelete="SET NULL"))
    location: str = Field(sa_column=Column(Text, nullable=False))
    member: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    file_sha256: str | None = Field(default=None, sa_column=Column(CHAR(64)))
    notebook_id: int | None = Field(default=None, sa_column=fk_column("notebook.id", nullable=True))
    # read | limit | decode | json | notebook | schema | image | archive | load
    stage: str = Field(sa_column=Column(Text, nullable=False))
    severity: str = Field(default="error", sa_column=Column(Text, nullable=False))
    reason: str = Field(sa_column=Column(Text, nullable=False))
    details: dict[str, Any] | None = Field(default=None, sa_column=jsonb_column())
    found_at: datetime = Field(sa_column=timestamp_column())
