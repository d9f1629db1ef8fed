"""Images, content-addressed: an identical plot drawn by many notebooks is stored once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CHAR, Column, ForeignKey, Integer, LargeBinary, Text, BigInteger
from sqlmodel import Field, SQLModel

from db.models._types import timestamp_column


class Image(SQLModel, table=True):
    __tablename__ = "image"

    # SHA-256 of the decoded bytes (for SVG: of its UTF-8 text)
    sha256: str = Field(sa_column=Column(CHAR(64), primary_key=True))
    mime: str = Field(sa_column=Column(Text, nullable=False, index=True))
    # raster images as bytes; SVG kept as text instead
    data: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    svg: str | None = Field(default=None, sa_column=Column(Text))
    size_bytes: int = Field(sa_column=Column(Integer, nullable=False))
    width: int | None = Field(default=None, sa_column=Column(Integer))
    height: int | None = Field(default=None, sa_column=Column(Integer))
    created_at: datetime = Field(sa_column=timestamp_column())


class OutputImage(SQLModel, table=True):
    __tablename__ = "output_image"

    output_id: int = Field(sa_column=Column(BigInteger, ForeignKey("output.id", ondelete="CASCADE"), primary_key=True))
    mime: str = Field(sa_column=Column(Text, primary_key=True))
    image_sha256: str = Field(sa_column=Column(CHAR(64), ForeignKey("image.sha256"), nullable=False, index=True))
    # how the notebook wrote the base64 (null: one line, as base64.b64encode does;
    # 'lines76': base64.encodebytes' 76-column lines; 'raw': written some other way, and the
    # original string is kept in output.data under this mime), so the notebook is rebuilt exactly
    b64_layout: str | None = Field(default=None, sa_column=Column(Text))
