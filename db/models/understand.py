"""What nbatlas understood of the code: per-cell facts, per-figure plot kinds, per-notebook analysis state.

Written by the analyser (``ingest/understand``) at ingest, or later by ``nbatlas analyze``. Every row
carries the ``analyzer_version`` that produced it, so stale analysis can be found and recomputed
without re-ingesting the notebook.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CHAR, BigInteger, Boolean, Column, ForeignKey, Index, Integer, Text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from db.models._types import jsonb_column, timestamp_column


class NotebookAnalysis(SQLModel, table=True):
    """One row per analysed notebook: which analyser version ran, and notebook-wide facts."""

    __tablename__ = "notebook_analysis"
    __table_args__ = (Index("ix_notebook_analysis_libraries", "libraries", postgresql_using="gin"),)

    notebook_id: int = Field(sa_column=Column(BigInteger, ForeignKey("notebook.id", ondelete="CASCADE"), primary_key=True))
    analyzer_version: int = Field(sa_column=Column(Integer, nullable=False, index=True))
    analyzed_at: datetime = Field(sa_column=timestamp_column())
    # top-level libraries imported or called anywhere in the notebook (NULL: its code was not analysed,
    # another kernel language; 0010_not_analysed)
    libraries: list[str] | None = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=True))
    n_code_cells: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    n_unparsed_cells: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    n_visualisation_cells: int = Field(default=0, sa_column=Column(Integer, nullable=False))


class CellAnalysis(SQLModel, table=True):
    """Code facts of one cell (markdown cells get a row too: their stage is that of the code they introduce)."""

    __tablename__ = "cell_analysis"
    __table_args__ = (
        Index("ix_cell_analysis_libraries", "libraries", postgresql_using="gin"),
        Index("ix_cell_analysis_call_names", "call_names", postgresql_using="gin"),
        Index("ix_cell_analysis_plot_kinds", "plot_kinds", postgresql_using="gin"),
        Index("ix_cell_analysis_stage", "stage", "cell_id"),
    )

    cell_id: int = Field(sa_column=Column(BigInteger, ForeignKey("cell.id", ondelete="CASCADE"), primary_key=True))
    # denormalised so facets per notebook need no join through cell
    notebook_id: int = Field(sa_column=Column(BigInteger, ForeignKey("notebook.id", ondelete="CASCADE"), nullable=False, index=True))
    analyzer_version: int = Field(sa_column=Column(Integer, nullable=False))
    # False: the code did not parse even after IPython's transformer; facts then come from tokens
    parsed: bool = Field(default=True, sa_column=Column(Boolean, nullable=False))
    parse_error: str | None = Field(default=None, sa_column=Column(Text))
    # the cell used IPython syntax (%magic, !shell, ?help)
    ipython_syntax: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    # [{module, name?, alias, line}]
    imports: list[dict[str, Any]] | None = Field(default=None, sa_column=jsonb_column())
    # [{name (resolved), text (as written), line, args?, kwargs?, resolved?, via?}]
    calls: list[dict[str, Any]] | None = Field(default=None, sa_column=jsonb_column())
    # resolved call names, for "cells that call X" filters
    call_names: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False))
    libraries: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False))
    stage: str = Field(sa_column=Column(Text, nullable=False))
    stage_evidence: list[str] | None = Field(default=None, sa_column=jsonb_column())
    is_visualisation: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    plot_kinds: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False))


class OutputPlot(SQLModel, table=True):
    """A figure an output shows, one row per mime (an image, or an interactive plotly/bokeh/vega figure)."""

    __tablename__ = "output_plot"
    __table_args__ = (
        Index("ix_output_plot_kinds", "plot_kinds", postgresql_using="gin"),
        Index("ix_output_plot_cell", "cell_id"),
        Index("ix_output_plot_notebook", "notebook_id"),
        Index("ix_output_plot_image", "image_sha256"),
    )

    output_id: int = Field(sa_column=Column(BigInteger, ForeignKey("output.id", ondelete="CASCADE"), primary_key=True))
    mime: str = Field(sa_column=Column(Text, primary_key=True))
    cell_id: int = Field(sa_column=Column(BigInteger, ForeignKey("cell.id", ondelete="CASCADE"), nullable=False))
    notebook_id: int = Field(sa_column=Column(BigInteger, ForeignKey("notebook.id", ondelete="CASCADE"), nullable=False))
    # the stored image (null for interactive figures, whose JSON stays in output.data)
    image_sha256: str | None = Field(default=None, sa_column=Column(CHAR(64), ForeignKey("image.sha256"), nullable=True))
    interactive: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    analyzer_version: int = Field(sa_column=Column(Integer, nullable=False))
    plot_kinds: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False))
    # [{kind, call, line, rule, via?}]: why each kind was given
    evidence: list[dict[str, Any]] | None = Field(default=None, sa_column=jsonb_column())
    # the plotting calls of the cell (or of its figure segment) that drew this figure
    plot_calls: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False))
    # which figure segment of the cell drew it (null: the cell's figures could not be told apart)
    segment: int | None = Field(default=None, sa_column=Column(Integer))
    # nearest markdown before the cell, and the markdown cell right after it
    context_before: str | None = Field(default=None, sa_column=Column(Text))
    context_after: str | None = Field(default=None, sa_column=Column(Text))
    analyzed_at: datetime = Field(sa_column=timestamp_column())
