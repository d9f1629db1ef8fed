"""Image bytes, for serving: one content-addressed image by its SHA-256."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import bindparam, text
from sqlalchemy.types import CHAR
from sqlmodel import Session


class ImageContent(NamedTuple):
    sha256: str
    mime: str
    content: bytes  # raster bytes, or the SVG's UTF-8 text (what its SHA-256 is computed over)
    width: int | None
    height: int | None


_CONTENT = text("SELECT sha256, mime, data, svg, width, height FROM image WHERE sha256 = :sha").bindparams(
    bindparam("sha", type_=CHAR(64))
)


def image_content(*, session: Session, sha256: str) -> ImageContent | None:
    row = session.execute(_CONTENT, {"sha": sha256.lower()}).first()
    if row is None:
        return None
    content = row.data if row.data is not None else (row.svg or "").encode("utf-8")
    return ImageContent(row.sha256, row.mime, bytes(content), row.width, row.height)
