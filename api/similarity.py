"""Similarity search in the API: plots like this one, code like this, text like this, near-duplicates.

Each search takes a stored item (an image or cell id) or a query the client sends (a picture as
base64, a code string, a markdown text), and a filter that PostgreSQL applies in the same statement
as the nearest-neighbour order (``db.queries.similarity``), so a filtered search still returns
``first`` results. A query the client sends is embedded here with the same embedder that made the
stored vectors (``db.embed``: pure computation, no model files); the vectors themselves never leave
the server. Results are nearest first, each with its distance: cosine distance (0 = same direction,
2 = opposite) in the vector spaces, Hamming distance in bits (0..64) between perceptual hashes for
near-duplicates. The image, cell and notebook of each result are the corpus's own types, so the
notebook context (the cell that drew a plot, its notebook, the markdown around it) is one selection
away.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache

import anyio.to_thread
import numpy as np
import strawberry
from strawberry.types import Info

from api import types as t
from api.database import UserError
from api.ids import db_id, parse_global_id
from api.inputs import CellFilterInput, ImageFilterInput
from db.queries import similarity as sim
from db.settings import Settings

# what a client may send as a query: a plot is rarely over a megabyte; the public server's request
# body limit is lower still (its BodySizeLimit answers 413 before this is reached)
MAX_QUERY_IMAGE_BYTES = 4 * 1024 * 1024
MAX_QUERY_TEXT_CHARS = 100_000
# a small PNG can decode to a huge canvas (a compression bomb): the query's decoder stops here
MAX_QUERY_IMAGE_PIXELS = 25_000_000
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_DATA_URL = re.compile(r"^data:[\w/+.-]+;base64,", re.IGNORECASE)


# --- the query's vector ------------------------------------------------------------------------------

@lru_cache(maxsize=16)
def _embedder(space: str, name: str, max_pixels: int | None):
    from db.embed import get_embedder

    embedder = get_embedder(space, name)
    if space == "image":
        embedder.max_pixels = max_pixels
    return embedder


def _model_name(settings: Settings, space: str, model: str | None) -> str:
    return model or getattr(settings, f"embed_{space}_model")


def _resolve_model(*, session, space: str, name: str) -> sim.ModelRef:
    ref = sim.model_ref(session=session, space=space, name=name)
    if ref is None:
        raise UserError(
            f"this corpus has no {space} vectors from model {name!r} yet: run `nbatlas embed --space {space}`"
            + (" (or pass another model)" if name else "")
        )
    return ref


def _embed_query(space: str, name: str, version: str, item, settings: Settings) -> np.ndarray:
    from db.embed import EmbedderUnavailable

    try:
        embedder = _embedder(space, name, _max_pixels(settings))
    except (EmbedderUnavailable, ValueError) as exc:
        raise UserError(f"this server cannot embed a {space} query with model {name!r}: {exc}") from None
    if embedder.version != version:
        raise UserError(
            f"the stored {space} vectors were made by {name} version {version}, this server has version "
            f"{embedder.version}: re-run `nbatlas embed --space {space}`, or search by a stored item's id"
        )
    vector = embedder.embed([item])[0]
    if np.isnan(vector).any():
        what = (
            "the picture could not be decoded (PNG, JPEG, GIF or WebP, at most 25 million pixels)"
            if space == "image" else "it has nothing to embed"
        )
        raise UserError(f"the {space} query gives no vector: {what}")
    return vector


def _max_pixels(settings: Settings) -> int:
    return min(settings.max_image_pixels, MAX_QUERY_IMAGE_PIXELS)


def _decode_picture(image: str) -> bytes:
    text = _DATA_URL.sub("", image.strip(), count=1)
    # base64 is 4 characters per 3 bytes: refuse before decoding what is too big anyway
    if len(text) > (MAX_QUERY_IMAGE_BYTES * 4) // 3 + 8:
        raise UserError(
            f"the image is over {MAX_QUERY_IMAGE_BYTES // (1024 * 1024)} MB; send a smaller picture "
            "(a plot's features survive shrinking), or search by a stored image's id"
        )
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:
            data = base64.urlsafe_b64decode(text)
        except (binascii.Error, ValueError):
            raise UserError("image must be the picture's bytes in base64 (optionally a data: URL)") from None
    if not data:
        raise UserError("image is empty")
    if len(data) > MAX_QUERY_IMAGE_BYTES:
        raise UserError(f"the image is {len(data):,} bytes; at most {MAX_QUERY_IMAGE_BYTES:,} are accepted")
    return data


def _image_key(image_id: str) -> str:
    """An image's SHA-256 from its global id (or the SHA-256 itself)."""
    if _SHA256.match(image_id):
        return image_id.lower()
    _, key = parse_global_id(image_id, expect="Image")
    return key.lower()


def _exactly_one(**given) -> None:
    named = [k for k, v in given.items() if v is not None]
    if len(named) != 1:
        raise UserError(f"give exactly one of {' or '.join(given)}" + (f" (got {', '.join(named)})" if named else ""))


def _text_query(value: str, what: str) -> str:
    if len(value) > MAX_QUERY_TEXT_CHARS:
        raise UserError(f"{what} is {len(value):,} characters; at most {MAX_QUERY_TEXT_CHARS:,} are accepted")
    if not value.strip():
        raise UserError(f"{what} is empty")
    return value


async def _vector(info: Info, space: str, name: str, item) -> tuple[sim.ModelRef, np.ndarray]:
    db = info.context.db
    ref = await db.read(_resolve_model, space=space, name=name)
    vector = await anyio.to_thread.run_sync(_embed_query, space, name, ref.version, item, db.settings)
    return ref, vector


# --- searches (composed of db.queries.similarity calls, one session each) -----------------------------

def _search_cells(*, session, space: str, name: str, cell_id, vector, first: int, filter, settings: Settings):
    ref = _resolve_model(session=session, space=space, name=name)
    try:
        return sim.similar_cells(
            session=session, model=ref, cell_id=cell_id, vector=vector, first=first, filter=filter,
            ef_search=settings.hnsw_ef_search, max_scan_tuples=settings.hnsw_max_scan_tuples,
        )
    except sim.NoVector as exc:
        raise UserError(str(exc)) from None


def _search_images(*, session, name: str, sha256, vector, first: int, filter, settings: Settings):
    ref = _resolve_model(session=session, space="image", name=name)
    try:
        return sim.similar_images(
            session=session, model=ref, image_sha256=sha256, vector=vector, first=first, filter=filter,
            ef_search=settings.hnsw_ef_search, max_scan_tuples=settings.hnsw_max_scan_tuples,
        )
    except sim.NoVector as exc:
        raise UserError(str(exc)) from None


def _search_duplicates(*, session, name: str, sha256, phash, vector, max_distance: int, first: int, filter):
    # the image model only orders images at the same Hamming distance: without one, still answer
    ref = sim.model_ref(session=session, space="image", name=name)
    try:
        return sim.duplicate_images(
            session=session, image_sha256=sha256, phash=phash, max_distance=max_distance, first=first,
            filter=filter, model=ref, vector=vector if ref is not None else None,
        )
    except sim.NoVector as exc:
        raise UserError(str(exc)) from None


# --- types ----------------------------------------------------------------------------------------------

@strawberry.type(description="An image near the query, with its distance; `image.outputs` leads to the cells and notebooks that drew it.")
class SimilarImage:
    distance: float = strawberry.field(description="Cosine distance in the image model's space (0 = same direction).")
    image: t.Image


@strawberry.type(description="A near-duplicate image: its perceptual hash differs from the query's in `distance` bits.")
class DuplicateImage:
    distance: int = strawberry.field(description="Hamming distance between the 64-bit pHashes (0 = same hash).")
    image: t.Image


@strawberry.type(description="A cell near the query, with its distance and its notebook.")
class SimilarCell:
    distance: float = strawberry.field(description="Cosine distance in the model's space (0 = same direction).")
    cell: t.Cell

    @strawberry.field(description="The notebook the cell belongs to.")
    async def notebook(self, info: Info) -> t.Notebook:
        return await info.context.loaders.notebook.load(self.cell.notebook_id)


@strawberry.type(description="An embedding model with vectors in this corpus.")
class EmbeddingModel:
    space: str = strawberry.field(description="code | text | image")
    name: str
    version: str
    dimension: int
    vectors: int = strawberry.field(description="Items with a vector from this model.")
    indexed: bool = strawberry.field(description="Has its HNSW index (searches use it).")


async def _images(info: Info, found: list[sim.Neighbour], make) -> list:
    images = await info.context.loaders.image.load_many([n.key for n in found])
    return [make(distance=n.distance, image=img) for n, img in zip(found, images) if img is not None]


async def _cells(info: Info, found: list[sim.Neighbour]) -> list[SimilarCell]:
    cells = await info.context.loaders.cell.load_many([n.key for n in found])
    return [SimilarCell(distance=n.distance, cell=c) for n, c in zip(found, cells) if c is not None]


def _first(info: Info, first: int | None) -> int:
    return info.context.page_size(first, default=10)


@strawberry.type
class SimilarityQuery:
    @strawberry.field(
        description=(
            "Images that look like a stored image (`imageId`: its id or SHA-256; itself excluded) or like a "
            "picture you send (`image`: its bytes in base64, at most 4 MB), nearest first. The filter applies "
            "inside the same search. `model`: an image model of `embeddingModels` (default: the configured one)."
        )
    )
    async def similar_images(
        self,
        info: Info,
        image_id: strawberry.ID | None = None,
        image: str | None = None,
        first: int | None = None,
        filter: ImageFilterInput | None = None,
        model: str | None = None,
    ) -> list[SimilarImage]:
        _exactly_one(imageId=image_id, image=image)
        ctx = info.context
        first = _first(info, first)
        name = _model_name(ctx.db.settings, "image", model)
        sha256, vector = None, None
        if image_id is not None:
            sha256 = _image_key(image_id)
        else:
            _, vector = await _vector(info, "image", name, _decode_picture(image))
        found = await ctx.db.read(
            _search_images, name=name, sha256=sha256, vector=vector, first=first,
            filter=filter.to_filter() if filter is not None else None, settings=ctx.db.settings,
        )
        return await _images(info, found, SimilarImage)

    @strawberry.field(
        description=(
            "Near-duplicates of a stored image (`imageId`) or of a picture you send (`image`, base64): the same "
            "plot re-rendered, resized or re-encoded, by perceptual-hash Hamming distance (at most `maxDistance` "
            "bits of 64), nearest first; ties are ordered by the image model."
        )
    )
    async def duplicate_images(
        self,
        info: Info,
        image_id: strawberry.ID | None = None,
        image: str | None = None,
        max_distance: int = 8,
        first: int | None = None,
        filter: ImageFilterInput | None = None,
    ) -> list[DuplicateImage]:
        _exactly_one(imageId=image_id, image=image)
        if not 0 <= max_distance <= 64:
            raise UserError(f"maxDistance is a number of bits, 0 to 64, not {max_distance}")
        ctx = info.context
        first = _first(info, first)
        name = _model_name(ctx.db.settings, "image", None)
        sha256 = phash = vector = None
        if image_id is not None:
            sha256 = _image_key(image_id)
        else:
            data = _decode_picture(image)
            phash = await anyio.to_thread.run_sync(_phash, data, _max_pixels(ctx.db.settings))
            try:
                _, vector = await _vector(info, "image", name, data)
            except UserError:
                vector = None  # no image vectors (yet): Hamming order alone
        found = await ctx.db.read(
            _search_duplicates, name=name, sha256=sha256, phash=phash, vector=vector, max_distance=max_distance,
            first=first, filter=filter.to_filter() if filter is not None else None,
        )
        return await _images(info, [sim.Neighbour(n.key, int(n.distance)) for n in found], DuplicateImage)

    @strawberry.field(
        description=(
            "Code cells like a stored cell (`cellId`; itself excluded) or like code you send (`code`), nearest "
            "first: the same code with other variable names, formatting or comments comes first. The filter "
            "applies inside the same search."
        )
    )
    async def similar_cells(
        self,
        info: Info,
        cell_id: strawberry.ID | None = None,
        code: str | None = None,
        first: int | None = None,
        filter: CellFilterInput | None = None,
        model: str | None = None,
    ) -> list[SimilarCell]:
        return await _similar_cells(info, "code", cell_id, code, "code", first, filter, model)

    @strawberry.field(
        description=(
            "Markdown cells like a stored cell (`cellId`; itself excluded) or like a text you send (`text`), "
            "nearest first. The filter applies inside the same search."
        )
    )
    async def similar_text(
        self,
        info: Info,
        cell_id: strawberry.ID | None = None,
        text: str | None = None,
        first: int | None = None,
        filter: CellFilterInput | None = None,
        model: str | None = None,
    ) -> list[SimilarCell]:
        return await _similar_cells(info, "text", cell_id, text, "text", first, filter, model)

    @strawberry.field(description="The embedding models with vectors in this corpus, by space.")
    async def embedding_models(self, info: Info, space: str | None = None) -> list[EmbeddingModel]:
        rows = await info.context.db.read(sim.list_models, space=space)
        return [
            EmbeddingModel(space=ref.space, name=ref.name, version=ref.version, dimension=ref.dimension,
                           vectors=count, indexed=index is not None)
            for ref, count, index in rows
        ]


def _phash(data: bytes, max_pixels: int | None) -> str:
    from db.embed.phash import phash_bits

    bits = phash_bits(data, max_pixels=max_pixels)
    if bits is None:
        raise UserError(
            "the picture could not be decoded (PNG, JPEG, GIF or WebP, at most 25 million pixels), so it has no perceptual hash"
        )
    return bits


async def _similar_cells(info: Info, space: str, cell_id, query: str | None, arg: str, first, filter, model) -> list[SimilarCell]:
    given = {"cellId": cell_id, arg: query}
    _exactly_one(**given)
    ctx = info.context
    first = _first(info, first)
    name = _model_name(ctx.db.settings, space, model)
    key, vector = None, None
    if cell_id is not None:
        key = db_id(cell_id, "Cell")
    else:
        _, vector = await _vector(info, space, name, _text_query(query, arg))
    found = await ctx.db.read(
        _search_cells, space=space, name=name, cell_id=key, vector=vector, first=first,
        filter=filter.to_filter() if filter is not None else None, settings=ctx.db.settings,
    )
    return await _cells(info, found)
