"""The one settings object. Every knob is an environment variable prefixed ``NBATLAS_``."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("nbatlas", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NBATLAS_", env_file=None, extra="ignore")

    home: Path = Field(default_factory=_default_home, description="Where nbatlas keeps its embedded database, caches and demo corpus.")
    database_url: str | None = Field(default=None, description="Use this PostgreSQL (with pgvector) instead of the embedded one.")

    # ingest limits: each breach is a recorded problem naming the file, never a crash
    max_file_bytes: int = 200 * 1024 * 1024
    max_image_pixels: int = 178_956_970  # Pillow's own decompression-bomb threshold x2
    max_archive_members: int = 1_000_000
    max_archive_bytes: int = 50 * 1024**3  # total unpacked size of one archive
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1)
    batch_notebooks: int = 64  # notebooks per COPY transaction

    # embeddings: a built-in name (code-ngrams, text-words, plot-descriptor), or with the `ml` extra
    # "st:<sentence-transformers model name or local path>" (e.g. "st:all-MiniLM-L6-v2", "st:clip-ViT-B-32")
    embed_code_model: str = "code-ngrams"
    embed_text_model: str = "text-words"
    embed_image_model: str = "plot-descriptor"
    embed_batch: int = 256  # items per batch (one worker task, one COPY)
    hnsw_ef_search: int = 100  # candidate list of an HNSW search: recall@10 >= 0.98 at 100k vectors (tests/benchmarks/vectors.py)
    hnsw_max_scan_tuples: int = 20_000  # how far a filtered search may walk the index before giving up

    # API
    api_token: str | None = None
    public: bool = False
    statement_timeout_ms: int = 2000
    max_page_size: int = 100
    readonly_database_url: str | None = None
    # The public API's own SELECT-only role, created by migration 0009 (db/roles.py); without a
    # password it cannot log in (a deployment sets one and uses it in the public service's URL).
    public_role: str = "nbatlas_public"
    public_role_password: str | None = None
    private_max_page_size: int = 1000  # the owner's own server: bigger pages, no other limits
    max_query_bytes: int = 32 * 1024  # public: GraphQL document size
    max_request_bytes: int = 256 * 1024  # public: request body size
    max_query_depth: int = 10  # public
    max_aliases: int = 30  # public
    max_tokens: int = 2000  # public: lexical tokens of a GraphQL document
    max_result_nodes: int = 20_000  # public: objects one query may return (page sizes multiplied)
    rate_limit_per_second: float = 5.0  # public: token bucket refill per client
    rate_limit_burst: int = 60  # public: token bucket size per client
    image_rate_limit_per_second: float = 50.0  # public: images and thumbnails, a budget of their own
    image_rate_limit_burst: int = 300  # public: a gallery page shows dozens of thumbnails at once
    trust_proxy: bool = False  # honour X-Forwarded-For (only behind a proxy that sets it)
    thumbnail_max_width: int = 1024
    export_statement_timeout_ms: int = 600_000  # public: an export is one long COPY

    @property
    def pgdata(self) -> Path:
        return self.home / "pg"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
