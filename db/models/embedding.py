"""Embeddings: one vector table per space (code, text, image), a registry of models, and pHashes.

Every vector row names its model and model version, so several models (and two versions of one)
coexist in one table, and changing a model only adds rows. The vector column is ``halfvec``
without a fixed dimension, since models differ in dimension; pgvector indexes need a fixed one,
so each (model, version) gets its own *partial expression* HNSW index::

    CREATE INDEX ... USING hnsw ((embedding::halfvec(1024)) halfvec_cosine_ops)
        WHERE model = 'code-ngrams' AND model_version = '1'

A query uses that index only when it repeats the expression and the predicate, which
``db.queries.similarity`` does. ``halfvec`` (2 bytes a dimension) halves storage and index size
against ``vector`` at no measurable cost in recall, and indexes up to 4,000 dimensions.

A row whose vector is NULL records that the item holds nothing to embed (an empty cell, an SVG
image without a rasteriser, an undecodable picture), so the next run does not retry it.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

from pgvector.sqlalchemy import BIT, HALFVEC
from sqlalchemy import CHAR, BigInteger, Column, ForeignKey, Integer, Text
from sqlmodel import Field, SQLModel

from db.models._types import timestamp_column

SPACE_TABLES = {"code": "code_embedding", "text": "text_embedding", "image": "image_embedding"}
# the column each space's table uses to point at what was embedded
SPACE_KEYS = {"code": "cell_id", "text": "cell_id", "image": "image_sha256"}
# denser graphs than pgvector's defaults (16, 64). Chosen in session 2 on a benchmark whose 100,000
# vectors were copies of only 200 real items (recall@10 at ef_search 100: 0.78 with 24/128, 0.85 with
# 32/200); with the stored items drawn from the whole corpus (session 3) 32/200 gives 0.99 for code
# and text at ef_search 100, for an index build of 4-6 minutes per 100,000 vectors on 2 busy cores.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200

_SAFE_NAME = re.compile(r"^[\w.@:/+\-]{1,200}$")


class EmbeddingModel(SQLModel, table=True):
    """A (space, model, version) that has vectors: its dimension and the HNSW index serving it."""

    __tablename__ = "embedding_model"

    space: str = Field(sa_column=Column(Text, primary_key=True))
    name: str = Field(sa_column=Column(Text, primary_key=True))
    version: str = Field(sa_column=Column(Text, primary_key=True))
    dimension: int = Field(sa_column=Column(Integer, nullable=False))
    index_name: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(sa_column=timestamp_column())


class CodeEmbedding(SQLModel, table=True):
    __tablename__ = "code_embedding"

    cell_id: int = Field(sa_column=Column(BigInteger, ForeignKey("cell.id", ondelete="CASCADE"), primary_key=True))
    model: str = Field(sa_column=Column(Text, primary_key=True))
    model_version: str = Field(sa_column=Column(Text, primary_key=True))
    embedding: list[float] | None = Field(default=None, sa_column=Column(HALFVEC()))


class TextEmbedding(SQLModel, table=True):
    __tablename__ = "text_embedding"

    cell_id: int = Field(sa_column=Column(BigInteger, ForeignKey("cell.id", ondelete="CASCADE"), primary_key=True))
    model: str = Field(sa_column=Column(Text, primary_key=True))
    model_version: str = Field(sa_column=Column(Text, primary_key=True))
    embedding: list[float] | None = Field(default=None, sa_column=Column(HALFVEC()))


class ImageEmbedding(SQLModel, table=True):
    __tablename__ = "image_embedding"

    image_sha256: str = Field(
        sa_column=Column(CHAR(64), ForeignKey("image.sha256", ondelete="CASCADE"), primary_key=True)
    )
    model: str = Field(sa_column=Column(Text, primary_key=True))
    model_version: str = Field(sa_column=Column(Text, primary_key=True))
    embedding: list[float] | None = Field(default=None, sa_column=Column(HALFVEC()))


class ImagePhash(SQLModel, table=True):
    """64-bit DCT perceptual hash per image, searched by Hamming distance (``<~>``) for near-duplicates.

    No index on purpose: an exact scan of 64-bit values is a few milliseconds per 100,000 images
    (see tests/benchmarks/vectors.py), and an approximate index would lose ties at small distances,
    exactly where near-duplicates are.
    """

    __tablename__ = "image_phash"

    image_sha256: str = Field(
        sa_column=Column(CHAR(64), ForeignKey("image.sha256", ondelete="CASCADE"), primary_key=True)
    )
    phash: str | None = Field(default=None, sa_column=Column(BIT(64)))


def check_model_name(value: str) -> str:
    """Model names and versions end up in index predicates: keep them to a safe alphabet."""
    if not _SAFE_NAME.match(value):
        raise ValueError(f"model name or version {value!r} must be 1-200 characters of letters, digits and ._@:/+-")
    return value


def sql_string(value: str) -> str:
    return "'" + check_model_name(value).replace("'", "''") + "'"


def hnsw_index_name(space: str, model: str, version: str) -> str:
    digest = hashlib.sha1(f"{space}\0{model}\0{version}".encode()).hexdigest()[:12]
    return f"ix_{SPACE_TABLES[space]}_hnsw_{digest}"


def hnsw_index_ddl(space: str, model: str, version: str, dimension: int) -> str:
    """``CREATE INDEX IF NOT EXISTS`` for one model's partial HNSW index (cosine)."""
    if not 1 <= int(dimension) <= 4000:
        raise ValueError(f"halfvec HNSW indexes take 1 to 4000 dimensions, not {dimension}")
    return (
        f"CREATE INDEX IF NOT EXISTS {hnsw_index_name(space, model, version)} ON {SPACE_TABLES[space]} "
        f"USING hnsw ((embedding::halfvec({int(dimension)})) halfvec_cosine_ops) "
        f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) "
        f"WHERE model = {sql_string(model)} AND model_version = {sql_string(version)} AND embedding IS NOT NULL"
    )
