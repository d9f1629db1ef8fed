"""The ``embed`` job: vectors for whatever has none yet, in batches, in parallel, with progress.

For each space it asks the database for the cells (or images) that have no row for the chosen
model, embeds them a batch at a time in a pool of worker processes (the built-in embedders are
pure Python + numpy, one core each), and writes each batch with a binary COPY in its own
transaction: an interrupted run keeps what it wrote and the next run carries on from there.
Images get their pHash in the same pass (one decode serves both). When a model has vectors and
no HNSW index yet, the index is built at the end.

Neural models (``st:...``) run in this process: PyTorch uses the cores itself.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from sqlmodel import Session

from db.queries import similarity as sim
from db.settings import Settings
from ingest.embed import BUILTIN, get_embedder
from ingest.embed.phash import phash_bits
from ingest.embed.protocol import SPACES, Embedder, ImageItem

IMAGE_BATCH = 32  # images are heavier than cells: smaller batches keep every worker busy


@dataclass
class SpaceReport:
    space: str
    model: str
    version: str
    dimension: int
    embedded: int = 0  # rows written with a vector
    empty: int = 0  # rows written with nothing to embed (empty cell, undecodable image)
    phashes: int = 0  # image pHashes written
    seconds: float = 0.0
    index: str | None = None

    @property
    def items_per_second(self) -> float:
        done = self.embedded + self.empty
        return done / self.seconds if self.seconds > 0 else 0.0


@dataclass
class EmbedReport:
    spaces: list[SpaceReport] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            s.space: {
                "model": s.model, "version": s.version, "dimension": s.dimension, "embedded": s.embedded,
                "empty": s.empty, "phashes": s.phashes, "seconds": round(s.seconds, 2), "index": s.index,
            }
            for s in self.spaces
        }


# ---------------------------------------------------------------- worker side (picklable functions)


@lru_cache(maxsize=8)
def _worker_embedder(space: str, name: str, max_pixels: int | None) -> Embedder:
    embedder = get_embedder(space, name)
    if space == "image":
        embedder.max_pixels = max_pixels
    return embedder


def _embed_cells(space: str, name: str, sources: list[str]) -> np.ndarray:
    return _worker_embedder(space, name, None).embed(sources)


def _embed_images(
    name: str | None, max_pixels: int | None, items: list[tuple[ImageItem, bool, bool]], embedder: Embedder | None = None
) -> tuple[np.ndarray | None, list[str | None]]:
    """Vectors for the items that need one (others get NaN rows, not written) and pHashes for all."""
    needs_vector = [i for i, (_, vec, _) in enumerate(items) if vec]
    vectors = None
    if needs_vector:
        embedder = embedder or _worker_embedder("image", name, max_pixels)
        part = embedder.embed([items[i][0] for i in needs_vector])
        vectors = np.full((len(items), part.shape[1]), np.nan, dtype=np.float32)
        vectors[needs_vector] = part
    phashes = [phash_bits(item, max_pixels=max_pixels) if ph else None for item, _, ph in items]
    return vectors, phashes


# ---------------------------------------------------------------- driver


def _pool(workers: int) -> Executor:
    methods = multiprocessing.get_all_start_methods()
    # fork: workers start in milliseconds with numpy, Pillow and scipy already imported
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


def _pipeline(
    fetch: Callable[[], list],
    compute: Callable[[list], object],
    write: Callable[[list, object], None],
    pool: Executor | None,
    depth: int,
) -> None:
    """Read batches ahead while workers compute; write them back in order, one transaction each."""
    pending: deque = deque()
    exhausted = False
    while True:
        while not exhausted and len(pending) < depth:
            batch = fetch()
            if not batch:
                exhausted = True
                break
            pending.append((batch, pool.submit(compute, batch) if pool is not None else None))
        if not pending:
            return
        batch, future = pending.popleft()
        write(batch, future.result() if future is not None else compute(batch))


def embed(
    *,
    session: Session,
    settings: Settings,
    spaces: Iterable[str] = SPACES,
    models: Mapping[str, str] | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    console: Console | None = None,
) -> EmbedReport:
    """Embed every cell and image that has no vector yet for the chosen model of each space.

    ``models`` maps a space to a model name (default: settings ``embed_<space>_model``). Returns
    what was written per space. Safe to interrupt and run again.
    """
    workers = max(1, workers if workers is not None else settings.workers)
    batch_size = batch_size or settings.embed_batch
    report = EmbedReport()
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
    )
    pool: Executor | None = None
    try:
        with Progress(*columns, console=console or Console(stderr=True), disable=not progress, transient=False) as bar:
            for space in spaces:
                name = (models or {}).get(space) or getattr(settings, f"embed_{space}_model")
                embedder = get_embedder(space, name, settings=settings)
                ref = sim.register_model(
                    session=session, space=space, name=embedder.name, version=embedder.version,
                    dimension=embedder.dimension,
                )
                session.commit()
                builtin = name in BUILTIN[space]
                total = (
                    sim.count_missing_images(session=session, ref=ref) if space == "image"
                    else sim.count_missing_cells(session=session, ref=ref)
                )
                use_pool = builtin and workers > 1 and total > batch_size
                if use_pool and pool is None:
                    pool = _pool(workers)
                task = bar.add_task(f"{space}: {embedder.name}", total=total, rate="")
                result = SpaceReport(space, embedder.name, embedder.version, embedder.dimension)
                started = time.perf_counter()

                def advance(n: int, result=result, task=task, started=started) -> None:
                    elapsed = time.perf_counter() - started
                    done = result.embedded + result.empty
                    bar.update(task, advance=n, rate=f"{done / elapsed:,.0f}/s" if elapsed > 0 else "")

                if space == "image":
                    _embed_image_space(session, settings, ref, embedder, builtin, pool if use_pool else None,
                                       workers, result, advance)
                else:
                    _embed_cell_space(session, ref, embedder, builtin, pool if use_pool else None, workers,
                                      batch_size, result, advance)
                result.seconds = time.perf_counter() - started
                if _has_vectors(session, ref):
                    bar.update(task, description=f"{space}: {embedder.name} (building HNSW index)")
                    result.index = sim.ensure_hnsw_index(session=session, ref=ref)
                    session.commit()
                    bar.update(task, description=f"{space}: {embedder.name}")
                report.spaces.append(result)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return report


def _has_vectors(session: Session, ref: sim.ModelRef) -> bool:
    from sqlalchemy import text

    table = sim.SPACE_TABLES[ref.space]
    return session.execute(
        text(f"SELECT EXISTS (SELECT 1 FROM {table} e WHERE {sim._model_sql(ref)} AND e.embedding IS NOT NULL)")
    ).scalar_one()


def _embed_cell_space(session, ref, embedder, builtin, pool, workers, batch_size, result, advance) -> None:
    last = {"id": 0}

    def fetch() -> list:
        rows = sim.missing_cells(session=session, ref=ref, after_id=last["id"], limit=batch_size)
        if rows:
            last["id"] = rows[-1][0]
        return rows

    def compute(rows: list) -> np.ndarray:
        sources = [source for _, source in rows]
        if builtin:
            return _embed_cells(ref.space, ref.name, sources)
        return embedder.embed(sources)

    def write(rows: list, vectors: np.ndarray) -> None:
        sim.write_embeddings(session=session, ref=ref, keys=[i for i, _ in rows], vectors=vectors)
        session.commit()
        empty = int(np.isnan(vectors).any(axis=1).sum())
        result.embedded += len(rows) - empty
        result.empty += empty
        advance(len(rows))

    _pipeline(fetch, compute if pool is None else _CellTask(ref.space, ref.name), write, pool, depth=2 * workers)


class _CellTask:
    """A picklable compute step for the pool (closures are not picklable)."""

    def __init__(self, space: str, name: str) -> None:
        self.space, self.name = space, name

    def __call__(self, rows: list) -> np.ndarray:
        return _embed_cells(self.space, self.name, [source for _, source in rows])


class _ImageTask:
    def __init__(self, name: str, max_pixels: int) -> None:
        self.name, self.max_pixels = name, max_pixels

    def __call__(self, rows: list) -> tuple[np.ndarray | None, list[str | None]]:
        return _embed_images(self.name, self.max_pixels, _image_items(rows))


def _image_items(rows: list[sim.MissingImage]) -> list[tuple[ImageItem, bool, bool]]:
    return [(ImageItem(r.mime, r.data, r.svg), r.needs_vector, r.needs_phash) for r in rows]


def _embed_image_space(session, settings, ref, embedder, builtin, pool, workers, result, advance) -> None:
    last = {"sha": ""}

    def fetch() -> list:
        rows = sim.missing_images(session=session, ref=ref, after_sha256=last["sha"], limit=IMAGE_BATCH)
        if rows:
            last["sha"] = rows[-1].sha256
        return rows

    def compute(rows: list):
        return _embed_images(None, settings.max_image_pixels, _image_items(rows), embedder=embedder)

    def write(rows: list, out) -> None:
        vectors, phashes = out
        wanted = [i for i, r in enumerate(rows) if r.needs_vector]
        if wanted and vectors is not None:
            part = vectors[wanted]
            sim.write_embeddings(session=session, ref=ref, keys=[rows[i].sha256 for i in wanted], vectors=part)
            empty = int(np.isnan(part).any(axis=1).sum())
            result.embedded += len(wanted) - empty
            result.empty += empty
        sim.write_phashes(session=session, rows=[(r.sha256, p) for r, p in zip(rows, phashes) if r.needs_phash])
        result.phashes += sum(1 for r, p in zip(rows, phashes) if r.needs_phash and p is not None)
        session.commit()
        advance(len(rows))

    task = _ImageTask(ref.name, settings.max_image_pixels) if pool is not None else compute
    _pipeline(fetch, task, write, pool, depth=2 * workers)


def embed_after_ingest(*, session: Session, settings: Settings, progress: bool = True) -> EmbedReport:
    """What ``nbatlas ingest --embed`` calls once the notebooks are in: every space, default models."""
    return embed(session=session, settings=settings, progress=progress)
