"""The qualitative study: samples (named worklists), codebooks and their codes, annotators, annotations.

A sample is drawn once from a recorded specification (unit, size, seed, strata, filters) and keeps
its items in the order they are to be coded. Annotations are one annotator's judgement that a code
applies to an image, a cell or a notebook; they do not belong to a sample (an image coded in one
sample is coded, for that codebook, wherever it appears), but remember the sample they were made in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CHAR, BigInteger, CheckConstraint, Column, ForeignKey, Index, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from db.models._types import fk_column, id_column, jsonb_column, timestamp_column

SAMPLE_UNITS = ("image", "notebook")
TARGET_KINDS = ("image", "cell", "notebook")


class Codebook(SQLModel, table=True):
    __tablename__ = "codebook"

    id: int | None = Field(default=None, sa_column=id_column())
    name: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    created_at: datetime = Field(sa_column=timestamp_column())


class Code(SQLModel, table=True):
    __tablename__ = "code"
    __table_args__ = (
        UniqueConstraint("codebook_id", "name", name="uq_code_name"),
        # one key press, one code: a key is unique within its codebook
        UniqueConstraint("codebook_id", "key", name="uq_code_key"),
    )

    id: int | None = Field(default=None, sa_column=id_column())
    codebook_id: int = Field(sa_column=fk_column("codebook.id", index=False))
    name: str = Field(sa_column=Column(Text, nullable=False))
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    # the keyboard shortcut in the coding pages (one character)
    key: str | None = Field(default=None, sa_column=Column(Text))
    position: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    created_at: datetime = Field(sa_column=timestamp_column())
    updated_at: datetime = Field(sa_column=timestamp_column())


class Annotator(SQLModel, table=True):
    __tablename__ = "annotator"

    id: int | None = Field(default=None, sa_column=id_column())
    name: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    # SHA-256 of the personal token (the token itself is shown once, never stored)
    token_hash: str = Field(sa_column=Column(CHAR(64), nullable=False, unique=True))
    created_at: datetime = Field(sa_column=timestamp_column())


class Sample(SQLModel, table=True):
    __tablename__ = "sample"

    id: int | None = Field(default=None, sa_column=id_column())
    name: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    # image | notebook
    unit: str = Field(sa_column=Column(Text, nullable=False))
    # everything that decides the draw (unit, n, seed, stratify_by, allocation, filter), as given
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=jsonb_column(nullable=False))
    # the equivalent command line, to draw the same sample again
    command: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    # how many units matched the filter, and {stratum: [population, drawn]}
    population: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    strata: dict[str, Any] | None = Field(default=None, sa_column=jsonb_column())
    n_items: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    # the codebook the sample is coded with (its pages default to it)
    codebook_id: int | None = Field(
        default=None, sa_column=fk_column("codebook.id", nullable=True, index=False, ondelete="SET NULL")
    )
    created_by: int | None = Field(
        default=None, sa_column=fk_column("annotator.id", nullable=True, index=False, ondelete="SET NULL")
    )
    created_at: datetime = Field(sa_column=timestamp_column())


class SampleItem(SQLModel, table=True):
    __tablename__ = "sample_item"
    __table_args__ = (
        UniqueConstraint("sample_id", "image_sha256", name="uq_sample_item_image"),
        UniqueConstraint("sample_id", "notebook_id", name="uq_sample_item_notebook"),
        CheckConstraint("num_nonnulls(image_sha256, notebook_id) = 1", name="ck_sample_item_one_unit"),
        Index("ix_sample_item_image", "image_sha256"),
        Index("ix_sample_item_notebook", "notebook_id"),
    )

    sample_id: int = Field(sa_column=Column(BigInteger, ForeignKey("sample.id", ondelete="CASCADE"), primary_key=True))
    # 0-based place in the worklist (the draw's order: strata interleaved)
    position: int = Field(sa_column=Column(Integer, primary_key=True))
    image_sha256: str | None = Field(
        default=None, sa_column=Column(CHAR(64), ForeignKey("image.sha256", ondelete="CASCADE"), nullable=True)
    )
    notebook_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, ForeignKey("notebook.id", ondelete="CASCADE"), nullable=True)
    )
    stratum: str | None = Field(default=None, sa_column=Column(Text))


class Annotation(SQLModel, table=True):
    __tablename__ = "annotation"
    __table_args__ = (
        # an annotator applies a code to a thing once (a second key press removes it)
        Index(
            "uq_annotation", "annotator_id", "code_id", "image_sha256", "cell_id", "notebook_id",
            unique=True, postgresql_nulls_not_distinct=True,
        ),
        CheckConstraint(
            "(target_kind = 'image' AND image_sha256 IS NOT NULL AND cell_id IS NULL AND notebook_id IS NULL) OR "
            "(target_kind = 'cell' AND cell_id IS NOT NULL AND notebook_id IS NOT NULL AND image_sha256 IS NULL) OR "
            "(target_kind = 'notebook' AND notebook_id IS NOT NULL AND cell_id IS NULL AND image_sha256 IS NULL)",
            name="ck_annotation_target",
        ),
        Index("ix_annotation_image", "image_sha256"),
        Index("ix_annotation_cell", "cell_id"),
        Index("ix_annotation_notebook", "notebook_id"),
        Index("ix_annotation_code", "code_id"),
    )

    id: int | None = Field(default=None, sa_column=id_column())
    # a code or annotator with annotations cannot be deleted: coding is research data
    code_id: int = Field(sa_column=fk_column("code.id", index=False, ondelete="RESTRICT"))
    annotator_id: int = Field(sa_column=fk_column("annotator.id", index=False, ondelete="RESTRICT"))
    # image | cell | notebook
    target_kind: str = Field(sa_column=Column(Text, nullable=False))
    image_sha256: str | None = Field(
        default=None, sa_column=Column(CHAR(64), ForeignKey("image.sha256", ondelete="CASCADE"), nullable=True)
    )
    cell_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, ForeignKey("cell.id", ondelete="CASCADE"), nullable=True)
    )
    # the notebook coded, or the notebook of the coded cell (so a notebook's coding includes its cells')
    notebook_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, ForeignKey("notebook.id", ondelete="CASCADE"), nullable=True)
    )
    # the sample it was coded in, if any
    sample_id: int | None = Field(
        default=None, sa_column=fk_column("sample.id", nullable=True, index=False, ondelete="SET NULL")
    )
    memo: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(sa_column=timestamp_column())
    updated_at: datetime = Field(sa_column=timestamp_column())
