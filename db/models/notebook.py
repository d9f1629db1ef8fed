"""The notebook aggregate: a notebook file (by content), its cells and their outputs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CHAR, Column, Index, Integer, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from db.models._types import fk_column, id_column, jsonb_column, timestamp_column


class Notebook(SQLModel, table=True):
    __tablename__ = "notebook"

    id: int | None = Field(default=None, sa_column=id_column())
    # identity is the file's bytes: the same file found twice is one notebook, two sources
    sha256: str = Field(sa_column=Column(CHAR(64), nullable=False, unique=True))
    size_bytes: int = Field(sa_column=Column(Integer, nullable=False))
    nbformat: int = Field(sa_column=Column(Integer, nullable=False))
    nbformat_minor: int = Field(sa_column=Column(Integer, nullable=False))
    # the version on disk before upgrading to 4 (3 for old notebooks)
    original_nbformat: int = Field(sa_column=Column(Integer, nullable=False))
    kernel_name: str | None = Field(default=None, sa_column=Column(Text))
    language: str | None = Field(default=None, sa_column=Column(Text, index=True))
    metadata_: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", jsonb_column().type, nullable=False))
    n_cells: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    n_outputs: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    n_image_outputs: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    # top-level keys nbatlas has no column for (and canonical keys the file lacked), so nothing is lost
    extra: dict[str, Any] | None = Field(default=None, sa_column=jsonb_column())
    # PostgreSQL text cannot hold NUL or lone surrogates: when a notebook has them, every stored string
    # of it writes such a character as this escape character + 4 hex digits (see ingest.parse)
    text_escape: str | None = Field(default=None, sa_column=Column(Text))
    run_id: int | None = Field(default=None, sa_column=fk_column("ingest_run.id", nullable=True, ondelete="SET NULL"))
    ingested_at: datetime = Field(sa_column=timestamp_column())


class Cell(SQLModel, table=True):
    __tablename__ = "cell"
    __table_args__ = (UniqueConstraint("notebook_id", "position"), Index("ix_cell_type", "cell_type"))

    id: int | None = Field(default=None, sa_column=id_column())
    notebook_id: int = Field(sa_column=fk_column("notebook.id", index=False))
    position: int = Field(sa_column=Column(Integer, nullable=False))
    cell_type: str = Field(sa_column=Column(Text, nullable=False))
    # nbformat 4.5 cell id, when the notebook has one
    cell_key: str | None = Field(default=None, sa_column=Column(Text))
    source: str = Field(default="", sa_column=Column(Text, nullable=False))
    execution_count: int | None = Field(default=None, sa_column=Column(Integer))
    metadata_: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", jsonb_column().type, nullable=False))
    attachments: dict[str, Any] | None = Field(default=None, sa_column=jsonb_column())
    # keys nbatlas has no column for (and canonical keys the cell lacked), so nothing is lost
    extra: dict[str, Any] | None = Field(default=None, sa_column=jsonb_column())


class Output(SQLModel, table=True):
    __tablename__ = "output"
    __table_args__ = (UniqueConstraint("cell_id", "position"), Index("ix_output_notebook", "notebook_id"))

    id: int | None = Field(default=None, sa_column=id_column())
    cell_id: int = Field(sa_column=fk_column("cell.id", index=False))
    # denormalised so filters by notebook need no join through cell
    notebook_id: int = Field(sa_column=fk_column("notebook.id", index=False))
    position: int = Field(sa_column=Column(Integer, nullable=False))
    output_type: str = Field(sa_column=Column(Text, nullable=False))
    # every mime type of the bundle, image ones included, in the notebook's order
    mime_types: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False))
    # the mime bundle without the images (those live in output_image -> image)
    data: dict[str, Any] | None = Field(default=None, sa_column=jsonb_column())
    metadata_: dict[str, Any] | None = Field(default=None, sa_column=Column("metadata", jsonb_column().type))
    execution_count: int | None = Field(default=None, sa_column=Column(Integer))
    # stream outputs
    name: str | None = Field(default=None, sa_column=Column(Text))
    text: str | None = Field(default=None, sa_column=Column(Text))
    # error outputs
    ename: str | None = Field(default=None, sa_column=Column(Text))
    evalue: str | None = Field(default=None, sa_column=Column(Text))
    traceback: list[str] | None = Field(default=None, sa_column=Column(ARRAY(Text)))
    # keys nbformat allows but nbatlas has no column for, kept so nothing is lost
    extra: dict[str, Any] | None = Field(default=None, sa_column=jsonb_column())
