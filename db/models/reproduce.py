"""Reproductions: notebooks re-executed in a sandbox, stored beside the originals, cell by cell.

A *run request* is one ``nbatlas reproduce`` invocation (backend, image, limits, selection); it
asks for one *run* per selected notebook, and the unique (request, notebook) pair is what makes
a retried or duplicated job harmless. A run's cells point at the original cells (``cell_id``) and
its outputs/images use the same shapes as the original ``output``/``output_image`` tables, with
images content-addressed in the shared ``image`` table: a plot reproduced pixel for pixel is the
same image row as the original.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CHAR, BigInteger, Boolean, Column, Double, ForeignKey, Index, Integer, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from db.models._types import fk_column, id_column, jsonb_column, timestamp_column

# the outcome of a run, as the researcher reads it
RUN_STATUSES = ("ok", "error", "timeout", "oom", "killed", "infrastructure_error")
# a cell's own outcome; not_run: the run stopped before it; skipped: markdown/raw/empty
CELL_STATUSES = (*RUN_STATUSES, "not_run", "skipped")


class RunRequest(SQLModel, table=True):
    __tablename__ = "run_request"

    id: int | None = Field(default=None, sa_column=id_column())
    created_at: datetime = Field(sa_column=timestamp_column())
    backend: str = Field(sa_column=Column(Text, nullable=False))  # docker | local
    image: str = Field(sa_column=Column(Text, nullable=False))
    timeout_s: float = Field(sa_column=Column(Double, nullable=False))
    limits: dict[str, Any] = Field(default_factory=dict, sa_column=jsonb_column(nullable=False))
    data_dir: str | None = Field(default=None, sa_column=Column(Text))
    # the notebook filter as given (``--where``), for the record
    selection: dict[str, Any] = Field(default_factory=dict, sa_column=jsonb_column(nullable=False))
    n_notebooks: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    note: str | None = Field(default=None, sa_column=Column(Text))


class Run(SQLModel, table=True):
    __tablename__ = "run"
    __table_args__ = (
        UniqueConstraint("request_id", "notebook_id", name="uq_run_request_notebook"),
        Index("ix_run_notebook", "notebook_id"),
        Index("ix_run_request_status", "request_id", "status"),
        Index("ix_run_failure_class", "failure_class"),
    )

    id: int | None = Field(default=None, sa_column=id_column())
    request_id: int = Field(sa_column=fk_column("run_request.id", index=False))
    notebook_id: int = Field(sa_column=fk_column("notebook.id", index=False))
    backend: str = Field(sa_column=Column(Text, nullable=False))
    image: str | None = Field(default=None, sa_column=Column(Text))
    # repo digest when the image came from a registry, else the engine's content-addressed image id
    image_digest: str | None = Field(default=None, sa_column=Column(Text))
    worker: str | None = Field(default=None, sa_column=Column(Text))  # host:pid:start of the worker
    attempt: int = Field(default=1, sa_column=Column(Integer, nullable=False))

    status: str = Field(sa_column=Column(Text, nullable=False, index=True))
    ename: str | None = Field(default=None, sa_column=Column(Text))
    evalue: str | None = Field(default=None, sa_column=Column(Text))
    traceback: list[str] | None = Field(default=None, sa_column=Column(ARRAY(Text)))
    failing_cell_position: int | None = Field(default=None, sa_column=Column(Integer))
    # missing_module | missing_data_file | name_error | out_of_order | python2_syntax | ... (scoring.py)
    failure_class: str | None = Field(default=None, sa_column=Column(Text))
    failure_detail: str | None = Field(default=None, sa_column=Column(Text))  # e.g. the missing module's name

    started_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    wall_s: float | None = Field(default=None, sa_column=Column(Double))
    run_s: float | None = Field(default=None, sa_column=Column(Double))
    kernel_startup_s: float | None = Field(default=None, sa_column=Column(Double))
    overhead_s: float | None = Field(default=None, sa_column=Column(Double))
    exit_code: int | None = Field(default=None, sa_column=Column(Integer))
    oom_killed: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    timed_out: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    output_truncated: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    output_bytes: int | None = Field(default=None, sa_column=Column(BigInteger))
    n_code_cells: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    n_cells_run: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    n_cells_ok: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    environment: dict[str, Any] | None = Field(default=None, sa_column=jsonb_column())  # python, packages
    log_tail: str | None = Field(default=None, sa_column=Column(Text))
    detail: str | None = Field(default=None, sa_column=Column(Text))  # what nbatlas observed

    # Pimentel et al. (2019): ran without error; same results; plus same results ignoring images and
    # same plots. NULL: not comparable (the original had no outputs / no plots to compare).
    ran_without_error: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    same_results: bool | None = Field(default=None, sa_column=Column(Boolean))
    same_results_ignoring_images: bool | None = Field(default=None, sa_column=Column(Boolean))
    same_plots: bool | None = Field(default=None, sa_column=Column(Boolean))
    n_cells_compared: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    n_cells_same: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    n_images_compared: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    n_images_same: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    created_at: datetime = Field(sa_column=timestamp_column())


class RunCell(SQLModel, table=True):
    __tablename__ = "run_cell"
    __table_args__ = (UniqueConstraint("run_id", "position"), Index("ix_run_cell_cell", "cell_id"))

    id: int | None = Field(default=None, sa_column=id_column())
    run_id: int = Field(sa_column=fk_column("run.id", index=False))
    # the original cell this reproduces (same notebook, same position)
    cell_id: int | None = Field(default=None, sa_column=fk_column("cell.id", nullable=True, index=False))
    position: int = Field(sa_column=Column(Integer, nullable=False))
    status: str = Field(sa_column=Column(Text, nullable=False))
    duration_s: float | None = Field(default=None, sa_column=Column(Double))
    execution_count: int | None = Field(default=None, sa_column=Column(Integer))
    truncated_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    # same | different | not_compared (the original never ran it) | missing (the run never reached it)
    comparison: str | None = Field(default=None, sa_column=Column(Text))
    text_same: bool | None = Field(default=None, sa_column=Column(Boolean))
    images_same: bool | None = Field(default=None, sa_column=Column(Boolean))
    n_images_original: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    n_images_reproduced: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    max_phash_distance: int | None = Field(default=None, sa_column=Column(Integer))  # over matched images
    max_pixel_diff: float | None = Field(default=None, sa_column=Column(Double))  # mean |a-b| in [0, 1]
    difference: str | None = Field(default=None, sa_column=Column(Text))  # first difference, for reading
    details: dict[str, Any] | None = Field(default=None, sa_column=jsonb_column())


class RunOutput(SQLModel, table=True):
    """Same shape as ``output``: what the reproduced cell printed or displayed."""

    __tablename__ = "run_output"
    __table_args__ = (UniqueConstraint("run_cell_id", "position"), Index("ix_run_output_run", "run_id"))

    id: int | None = Field(default=None, sa_column=id_column())
    run_cell_id: int = Field(sa_column=fk_column("run_cell.id", index=False))
    run_id: int = Field(sa_column=fk_column("run.id", index=False))
    position: int = Field(sa_column=Column(Integer, nullable=False))
    output_type: str = Field(sa_column=Column(Text, nullable=False))
    mime_types: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False))
    data: dict[str, Any] | None = Field(default=None, sa_column=jsonb_column())
    metadata_: dict[str, Any] | None = Field(default=None, sa_column=Column("metadata", jsonb_column().type))
    execution_count: int | None = Field(default=None, sa_column=Column(Integer))
    name: str | None = Field(default=None, sa_column=Column(Text))
    text: str | None = Field(default=None, sa_column=Column(Text))
    ename: str | None = Field(default=None, sa_column=Column(Text))
    evalue: str | None = Field(default=None, sa_column=Column(Text))
    traceback: list[str] | None = Field(default=None, sa_column=Column(ARRAY(Text)))
    extra: dict[str, Any] | None = Field(default=None, sa_column=jsonb_column())


class RunOutputImage(SQLModel, table=True):
    __tablename__ = "run_output_image"

    run_output_id: int = Field(sa_column=Column(BigInteger, ForeignKey("run_output.id", ondelete="CASCADE"), primary_key=True))
    mime: str = Field(sa_column=Column(Text, primary_key=True))
    image_sha256: str = Field(sa_column=Column(CHAR(64), ForeignKey("image.sha256"), nullable=False, index=True))
    b64_layout: str | None = Field(default=None, sa_column=Column(Text))
