"""Similarity search over the embedding tables, and the bookkeeping the ``embed`` job needs.

Search functions return ``(key, distance)`` rows, nearest first: cosine distance (0 = same
direction, 2 = opposite) for the vector spaces, Hamming distance in bits (0..64) for pHashes.
Filters (``db.queries.filters``) go into the same SQL statement as the nearest-neighbour order,
so "plots like this one, drawn by Kaggle notebooks" is one query, not a post-filter that would
return fewer rows than asked.

How filtered HNSW searches keep their recall: pgvector 0.8's iterative index scan
(``hnsw.iterative_scan = relaxed_order``) keeps walking the graph until enough rows have passed
the filter (or ``hnsw.max_scan_tuples`` were visited); relaxed order means the rows come out
almost sorted, so the top-k is re-sorted outside a materialised CTE. When a filter is selective
enough, PostgreSQL plans a plain scan of the matching rows instead, which is exact.

Each model's partial HNSW index is used only when the query repeats its expression
(``embedding::halfvec(N)``) and its predicate (model, version as literals, embedding not null):
``_model_conditions`` and ``_distance`` build exactly those.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from pgvector.sqlalchemy import HALFVEC
from sqlalchemy import bindparam, cast, literal_column, select, text
from sqlalchemy.types import Float, Text
from sqlmodel import Session

from db.models.embedding import (
    BIT,
    SPACE_KEYS,
    SPACE_TABLES,
    CodeEmbedding,
    EmbeddingModel,
    ImageEmbedding,
    ImagePhash,
    TextEmbedding,
    hnsw_index_ddl,
    hnsw_index_name,
    sql_string,
)
from db.queries.filters import CellFilter, ImageFilter, cell_t, image_t

_TABLES = {
    "code": CodeEmbedding.__table__,
    "text": TextEmbedding.__table__,
    "image": ImageEmbedding.__table__,
}
_CELL_TYPES = {"code": "code", "text": "markdown"}
phash_t = ImagePhash.__table__
model_t = EmbeddingModel.__table__


class Neighbour(NamedTuple):
    key: int | str  # cell id (code, text) or image SHA-256 (image)
    distance: float


@dataclass(frozen=True)
class ModelRef:
    """A (space, model, version) with vectors in the database, and their dimension."""

    space: str
    name: str
    version: str
    dimension: int


class NoVector(LookupError):
    """The item asked about has no vector for this model (not embedded yet, or nothing to embed)."""


# ---------------------------------------------------------------- models and indexes


def register_model(*, session: Session, space: str, name: str, version: str, dimension: int) -> ModelRef:
    """Record a model the first time it writes vectors; a known one keeps its row (and must agree)."""
    sql_string(name), sql_string(version)  # validates
    session.execute(
        text(
            "INSERT INTO embedding_model (space, name, version, dimension, created_at) "
            "VALUES (:space, :name, :version, :dim, now()) ON CONFLICT DO NOTHING"
        ),
        {"space": space, "name": name, "version": version, "dim": dimension},
    )
    ref = model_ref(session=session, space=space, name=name, version=version)
    if ref is None or ref.dimension != dimension:
        raise ValueError(
            f"{space} model {name} version {version} is registered with {ref and ref.dimension} dimensions, "
            f"not {dimension}: give a changed model a new version"
        )
    return ref


def model_ref(*, session: Session, space: str, name: str, version: str | None = None) -> ModelRef | None:
    """The registered model; without a version, its newest version."""
    query = "SELECT space, name, version, dimension FROM embedding_model WHERE space = :space AND name = :name"
    params = {"space": space, "name": name}
    if version is not None:
        query += " AND version = :version"
        params["version"] = version
    row = session.execute(text(query + " ORDER BY created_at DESC, version DESC LIMIT 1"), params).first()
    return ModelRef(*row) if row else None


def list_models(*, session: Session, space: str | None = None) -> list[tuple[ModelRef, int, str | None]]:
    """Every registered model with its number of stored vectors and its index name (if built)."""
    rows = session.execute(
        text(
            "SELECT space, name, version, dimension, index_name FROM embedding_model "
            "WHERE (CAST(:space AS text) IS NULL OR space = :space) ORDER BY space, name, created_at"
        ),
        {"space": space},
    ).all()
    out = []
    for r in rows:
        ref = ModelRef(r.space, r.name, r.version, r.dimension)
        count = session.execute(
            text(f"SELECT count(*) FROM {SPACE_TABLES[ref.space]} e WHERE {_model_sql(ref)} AND embedding IS NOT NULL")
        ).scalar_one()
        out.append((ref, count, r.index_name))
    return out


def ensure_hnsw_index(*, session: Session, ref: ModelRef) -> str:
    """Create the model's HNSW index if it does not exist yet; returns its name."""
    session.execute(text(hnsw_index_ddl(ref.space, ref.name, ref.version, ref.dimension)))
    name = hnsw_index_name(ref.space, ref.name, ref.version)
    session.execute(
        text("UPDATE embedding_model SET index_name = :ix WHERE space = :s AND name = :n AND version = :v"),
        {"ix": name, "s": ref.space, "n": ref.name, "v": ref.version},
    )
    return name


# ---------------------------------------------------------------- what is missing


def _model_sql(ref: ModelRef, alias: str = "e") -> str:
    return f"{alias}.model = {sql_string(ref.name)} AND {alias}.model_version = {sql_string(ref.version)}"


def count_missing_cells(*, session: Session, ref: ModelRef) -> int:
    """How many cells of the space's type (code or markdown) have no row for this model yet."""
    sql = (
        f"SELECT count(*) FROM cell c WHERE c.cell_type = '{_CELL_TYPES[ref.space]}' AND NOT EXISTS "
        f"(SELECT 1 FROM {SPACE_TABLES[ref.space]} e WHERE e.cell_id = c.id AND {_model_sql(ref)})"
    )
    return session.execute(text(sql)).scalar_one()


def missing_cells(*, session: Session, ref: ModelRef, after_id: int = 0, limit: int = 256) -> list[tuple[int, str]]:
    """The next cells (by id, after ``after_id``) with no row for this model: (id, source)."""
    sql = (
        f"SELECT c.id, c.source FROM cell c WHERE c.cell_type = '{_CELL_TYPES[ref.space]}' AND c.id > :after "
        f"AND NOT EXISTS (SELECT 1 FROM {SPACE_TABLES[ref.space]} e WHERE e.cell_id = c.id AND {_model_sql(ref)}) "
        "ORDER BY c.id LIMIT :limit"
    )
    return [tuple(r) for r in session.execute(text(sql), {"after": after_id, "limit": limit})]


class MissingImage(NamedTuple):
    sha256: str
    mime: str
    data: bytes | None
    svg: str | None
    needs_vector: bool
    needs_phash: bool


def _image_missing_sql(ref: ModelRef) -> tuple[str, str]:
    vector = f"NOT EXISTS (SELECT 1 FROM image_embedding e WHERE e.image_sha256 = i.sha256 AND {_model_sql(ref)})"
    phash = "NOT EXISTS (SELECT 1 FROM image_phash p WHERE p.image_sha256 = i.sha256)"
    return vector, phash


def count_missing_images(*, session: Session, ref: ModelRef) -> int:
    """Images lacking a vector for this model or a pHash (one decode serves both)."""
    vector, phash = _image_missing_sql(ref)
    return session.execute(text(f"SELECT count(*) FROM image i WHERE ({vector} OR {phash})")).scalar_one()


def missing_images(*, session: Session, ref: ModelRef, after_sha256: str = "", limit: int = 64) -> list[MissingImage]:
    """The next images (by SHA-256, after ``after_sha256``) lacking a vector for ``ref`` or a pHash."""
    vector, phash = _image_missing_sql(ref)
    sql = (
        f"SELECT i.sha256, i.mime, i.data, i.svg, {vector} AS needs_vector, {phash} AS needs_phash FROM image i "
        f"WHERE i.sha256 > :after AND ({vector} OR {phash}) ORDER BY i.sha256 LIMIT :limit"
    )
    return [
        MissingImage(r.sha256, r.mime, bytes(r.data) if r.data is not None else None, r.svg, r.needs_vector, r.needs_phash)
        for r in session.execute(text(sql), {"after": after_sha256, "limit": limit})
    ]


# ---------------------------------------------------------------- writing


def _raw_connection(session: Session):
    conn = session.connection().connection.driver_connection
    from pgvector.psycopg import register_vector

    if not getattr(conn, "_nbatlas_vector_types", False):
        register_vector(conn)
        conn._nbatlas_vector_types = True  # type: ignore[attr-defined]
    return conn


def write_embeddings(*, session: Session, ref: ModelRef, keys: Sequence[int | str], vectors: np.ndarray) -> int:
    """Store one batch with binary COPY. A NaN row is stored as NULL: "nothing to embed"."""
    from pgvector import HalfVector

    if len(keys) != len(vectors):
        raise ValueError("one vector per key")
    if len(keys) == 0:
        return 0
    if vectors.shape[1] != ref.dimension:
        raise ValueError(f"{ref.name} vectors have {vectors.shape[1]} dimensions, registered {ref.dimension}")
    conn = _raw_connection(session)
    # char(64) takes the same binary wire format as text
    key_type = "bigint" if SPACE_KEYS[ref.space] == "cell_id" else "text"
    half = vectors.astype(np.float16)
    with conn.cursor() as cur:
        with cur.copy(
            f"COPY {SPACE_TABLES[ref.space]} ({SPACE_KEYS[ref.space]}, model, model_version, embedding) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types([key_type, "text", "text", "halfvec"])
            for key, row in zip(keys, half):
                vec = None if np.isnan(row).any() else HalfVector(row)
                copy.write_row((key, ref.name, ref.version, vec))
    return len(keys)


def write_phashes(*, session: Session, rows: Iterable[tuple[str, str | None]]) -> int:
    """Store (image_sha256, 64-character bit string or None) pairs."""
    rows = list(rows)
    if rows:
        session.execute(
            text(
                "INSERT INTO image_phash (image_sha256, phash) VALUES (:sha, CAST(:bits AS bit(64))) "
                "ON CONFLICT (image_sha256) DO UPDATE SET phash = EXCLUDED.phash"
            ),
            [{"sha": sha, "bits": bits} for sha, bits in rows],
        )
    return len(rows)


# ---------------------------------------------------------------- searching


def _search_settings(session: Session, *, ef_search: int, max_scan_tuples: int) -> None:
    session.execute(
        text(
            "SELECT set_config('hnsw.ef_search', :ef, true), set_config('hnsw.iterative_scan', 'relaxed_order', true), "
            "set_config('hnsw.max_scan_tuples', :mst, true)"
        ),
        {"ef": str(int(ef_search)), "mst": str(int(max_scan_tuples))},
    )


def _stored_vector(session: Session, ref: ModelRef, key: int | str) -> str:
    table = SPACE_TABLES[ref.space]
    row = session.execute(
        text(f"SELECT embedding::text FROM {table} e WHERE e.{SPACE_KEYS[ref.space]} = :key AND {_model_sql(ref)}"),
        {"key": key},
    ).first()
    if row is None or row[0] is None:
        what = "cell" if ref.space != "image" else "image"
        state = "has not been embedded" if row is None else "holds nothing to embed"
        raise NoVector(f"{what} {key} {state} with {ref.space} model {ref.name} (version {ref.version})")
    return row[0]


def _vector_text(vector: Sequence[float] | np.ndarray) -> str:
    arr = np.asarray(vector, dtype=np.float32).ravel()
    return "[" + ",".join(repr(float(v)) for v in arr.astype(np.float16).astype(np.float32)) + "]"


def _neighbours(
    session: Session,
    ref: ModelRef,
    *,
    key: int | str | None,
    vector: Sequence[float] | np.ndarray | None,
    first: int,
    conditions: list,
    join,
    exact: bool,
    ef_search: int,
    max_scan_tuples: int,
) -> list[Neighbour]:
    if (key is None) == (vector is None):
        raise ValueError("give either the id of an embedded item or a query vector, not both")
    if first < 1:
        return []
    e = _TABLES[ref.space].alias("e")
    key_col = e.c[SPACE_KEYS[ref.space]]
    if vector is None:
        query_text = _stored_vector(session, ref, key)
    else:
        if len(vector) != ref.dimension:
            raise ValueError(f"the query vector has {len(vector)} dimensions, {ref.name} has {ref.dimension}")
        if not np.isfinite(np.asarray(vector, dtype=np.float32)).all():
            raise ValueError("the query holds nothing to embed (its vector is not finite)")
        query_text = _vector_text(vector)
    q = cast(bindparam("q", query_text, type_=Text), HALFVEC(ref.dimension))
    if exact:
        # the same distance without the index expression: PostgreSQL cannot use the HNSW index
        distance = e.c.embedding.op("<=>", return_type=Float)(cast(bindparam("q", query_text, type_=Text), HALFVEC()))
    else:
        distance = cast(e.c.embedding, HALFVEC(ref.dimension)).op("<=>", return_type=Float)(q)
    where = [literal_column(_model_sql(ref)), e.c.embedding.isnot(None)]
    if key is not None:
        where.append(key_col != key)
    inner = (
        select(key_col.label("key"), distance.label("distance"))
        .select_from(join(e))
        .where(*where, *conditions)
        .order_by(literal_column("distance"))
        .limit(first)
    )
    _search_settings(session, ef_search=ef_search, max_scan_tuples=max_scan_tuples)
    relaxed = inner.cte("relaxed").prefix_with("MATERIALIZED")
    outer = select(relaxed.c.key, relaxed.c.distance.cast(Float)).order_by(relaxed.c.distance, relaxed.c.key)
    return [Neighbour(k.strip() if isinstance(k, str) else k, float(d)) for k, d in session.execute(outer)]


def similar_cells(
    *,
    session: Session,
    model: ModelRef,
    cell_id: int | None = None,
    vector: Sequence[float] | np.ndarray | None = None,
    first: int = 10,
    filter: CellFilter | None = None,
    exact: bool = False,
    ef_search: int = 100,
    max_scan_tuples: int = 20_000,
) -> list[Neighbour]:
    """Cells nearest to a stored cell (``cell_id``, itself excluded) or to a query vector.

    ``model`` is a code or text model (``model_ref(space="code"|"text", ...)``); ``filter`` narrows the
    candidate cells inside the same statement. ``exact=True`` scans instead of using the index.
    """
    if model.space not in ("code", "text"):
        raise ValueError(f"similar_cells needs a code or text model, not {model.space}")
    conds = filter.where(cell_t) if filter is not None and not filter.is_empty() else []
    join = (lambda e: e.join(cell_t, cell_t.c.id == e.c.cell_id)) if conds else (lambda e: e)
    return _neighbours(
        session, model, key=cell_id, vector=vector, first=first, conditions=conds, join=join,
        exact=exact, ef_search=ef_search, max_scan_tuples=max_scan_tuples,
    )


def similar_code(*, session: Session, model: ModelRef, **kwargs) -> list[Neighbour]:
    """``similar_cells`` over the code space (the API's ``similarCells``)."""
    if model.space != "code":
        raise ValueError("similar_code needs a code model")
    return similar_cells(session=session, model=model, **kwargs)


def similar_text(*, session: Session, model: ModelRef, **kwargs) -> list[Neighbour]:
    """``similar_cells`` over the markdown space (the API's ``similarText``)."""
    if model.space != "text":
        raise ValueError("similar_text needs a text model")
    return similar_cells(session=session, model=model, **kwargs)


def similar_images(
    *,
    session: Session,
    model: ModelRef,
    image_sha256: str | None = None,
    vector: Sequence[float] | np.ndarray | None = None,
    first: int = 10,
    filter: ImageFilter | None = None,
    exact: bool = False,
    ef_search: int = 100,
    max_scan_tuples: int = 20_000,
) -> list[Neighbour]:
    """Images nearest to a stored image (itself excluded) or to a query vector, in one image model's space."""
    if model.space != "image":
        raise ValueError(f"similar_images needs an image model, not {model.space}")
    conds = filter.where(image_t) if filter is not None and not filter.is_empty() else []
    join = (lambda e: e.join(image_t, image_t.c.sha256 == e.c.image_sha256)) if conds else (lambda e: e)
    return _neighbours(
        session, model, key=image_sha256.lower() if image_sha256 else None, vector=vector, first=first,
        conditions=conds, join=join, exact=exact, ef_search=ef_search, max_scan_tuples=max_scan_tuples,
    )


def image_phash(*, session: Session, image_sha256: str) -> str | None:
    row = session.execute(
        text("SELECT phash::text FROM image_phash WHERE image_sha256 = :sha"), {"sha": image_sha256.lower()}
    ).first()
    return row[0] if row else None


def duplicate_images(
    *,
    session: Session,
    image_sha256: str | None = None,
    phash: str | None = None,
    max_distance: int = 8,
    first: int = 50,
    filter: ImageFilter | None = None,
    model: ModelRef | None = None,
    vector: Sequence[float] | np.ndarray | None = None,
) -> list[Neighbour]:
    """Near-duplicates by pHash: images within ``max_distance`` bits (Hamming), nearest first.

    Give a stored image (itself excluded; exact copies are one row, content-addressed) or a
    64-character bit string (``ingest.embed.phash.phash_bits`` of an uploaded picture). With an
    image ``model`` (and, for an uploaded picture, its ``vector`` in that model), images at the
    same Hamming distance are ordered by their distance in that model: 64 bits often tie.
    """
    if (image_sha256 is None) == (phash is None):
        raise ValueError("give either image_sha256 or phash")
    if not 0 <= max_distance <= 64:
        raise ValueError("max_distance is a number of bits, 0 to 64")
    if image_sha256 is not None:
        image_sha256 = image_sha256.lower()
        phash = image_phash(session=session, image_sha256=image_sha256)
        if phash is None:
            raise NoVector(f"image {image_sha256} has no perceptual hash (not embedded yet, or not decodable)")
    if len(phash) != 64 or set(phash) - {"0", "1"}:
        raise ValueError("a pHash is 64 characters of 0 and 1")
    p = phash_t.alias("p")
    distance = p.c.phash.op("<~>", return_type=Float)(cast(bindparam("bits", phash, type_=Text), BIT(64)))
    conds = [p.c.phash.isnot(None), distance <= max_distance]
    if image_sha256 is not None:
        conds.append(p.c.image_sha256 != image_sha256)
    source = p
    if filter is not None and not filter.is_empty():
        source = source.join(image_t, image_t.c.sha256 == p.c.image_sha256)
        conds += filter.where(image_t)
    order = [literal_column("distance")]
    if model is not None:
        if model.space != "image":
            raise ValueError("ties are broken in an image model's space")
        query_text = None
        if vector is not None:
            query_text = _vector_text(vector)
        elif image_sha256 is not None:
            try:
                query_text = _stored_vector(session, model, image_sha256)
            except NoVector:
                query_text = None
        if query_text is not None:
            e = ImageEmbedding.__table__.alias("e")
            source = source.outerjoin(
                e, (e.c.image_sha256 == p.c.image_sha256) & literal_column(_model_sql(model))
            )
            order.append(e.c.embedding.op("<=>", return_type=Float)(cast(bindparam("q", query_text, type_=Text), HALFVEC())).asc().nulls_last())
    query = (
        select(p.c.image_sha256, distance.cast(Float).label("distance"))
        .select_from(source)
        .where(*conds)
        .order_by(*order, p.c.image_sha256)
        .limit(first)
    )
    return [Neighbour(sha.strip(), float(d)) for sha, d in session.execute(query)]
