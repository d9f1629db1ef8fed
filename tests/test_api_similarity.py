"""Similarity search through the API, on the real corpus: a picture or code sent by the client finds its
original, stored items find their neighbours, filters narrow the search inside SQL, and every result
carries its distance and the way to its notebook. Public mode too.

The real-corpus database (``real_corpus_url``) is embedded once with the default models by the embed
job (it adds only what is missing: tests/test_embed.py embeds the same database).
"""

from __future__ import annotations

import ast
import base64
import io
import warnings

import pytest
from PIL import Image
from sqlalchemy import create_engine, text
from sqlmodel import Session

from api.app import create_app
from api.schema import sdl
from db.settings import Settings
from tests.test_api_schema import gql, run


@pytest.fixture(scope="module")
def corpus(real_corpus_url, tmp_path_factory):
    from ingest.embed.job import embed

    engine = create_engine(real_corpus_url)
    with Session(engine) as session:
        embed(session=session, settings=Settings(home=tmp_path_factory.mktemp("embed"), database_url=real_corpus_url),
              progress=False)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def app(corpus, real_corpus_url, tmp_path_factory):
    app = create_app(Settings(home=tmp_path_factory.mktemp("sim") / "home", database_url=real_corpus_url), public=False)
    yield app
    app.state.db.dispose()


def rows(engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).all()


def data(app, query: str, variables: dict | None = None) -> dict:
    body = gql(app, query, variables)
    assert "errors" not in body, body["errors"]
    return body["data"]


def error(app, query: str, variables: dict | None = None) -> str:
    body = gql(app, query, variables)
    assert body.get("errors"), body
    return body["errors"][0]["message"]


def resized_jpeg(data: bytes) -> bytes:
    """The picture at 70% of its size as a JPEG of quality 80, transparency flattened onto white (as a
    notebook shows it: JPEG has no alpha, and a plain RGB conversion would turn transparent pixels black)."""
    img = Image.open(io.BytesIO(data)).convert("RGBA")
    img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img).convert("RGB")
    img = img.resize((max(2, round(img.width * 0.7)), max(2, round(img.height * 0.7))), Image.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=80)
    return out.getvalue()


def lonely_images(engine, n: int) -> list[tuple[str, bytes]]:
    """Raster images with no other stored image within 10 pHash bits (the corpus holds a few plots
    twice: for those, "the original first" would be a coin toss between identical pictures)."""
    return [(sha, bytes(data)) for sha, data in rows(engine, """
        SELECT i.sha256, i.data FROM image i JOIN image_phash p ON p.image_sha256 = i.sha256
        WHERE p.phash IS NOT NULL AND i.width >= 200 AND NOT EXISTS (
            SELECT 1 FROM image_phash q WHERE q.image_sha256 <> p.image_sha256 AND (q.phash <~> p.phash) <= 10)
        ORDER BY md5(i.sha256) LIMIT :n""", n=n)]


SIMILAR_IMAGES = """query($image: String, $id: ID, $f: ImageFilter, $n: Int) {
    similarImages(image: $image, imageId: $id, filter: $f, first: $n) {
        distance image { sha256 outputs(first: 1) { cell { source notebook { sha256 } } } } } }"""
DUPLICATES = """query($image: String, $id: ID, $d: Int!) {
    duplicateImages(image: $image, imageId: $id, maxDistance: $d, first: 3) {
        distance image { sha256 outputs(first: 1) { cell { source notebook { sha256 } } } } } }"""


def test_a_resized_jpeg_of_a_real_plot_finds_its_original(app, corpus):
    sample = lonely_images(corpus, 10)
    assert len(sample) == 10
    ranks = []
    for sha, raw in sample:
        picture = base64.b64encode(resized_jpeg(raw)).decode()
        # near-duplicates: the original is the top hit, a few bits away
        duplicates = data(app, DUPLICATES, {"image": "data:image/jpeg;base64," + picture, "d": 10})["duplicateImages"]
        top = duplicates[0]
        assert top["image"]["sha256"] == sha and 0 <= top["distance"] <= 10 and isinstance(top["distance"], int)
        # similar plots: a space where plots of one kind are close, not a duplicate detector, so the
        # original is near the top rather than always first
        similar = data(app, SIMILAR_IMAGES, {"image": picture, "n": 5})["similarImages"]
        shas = [s["image"]["sha256"] for s in similar]
        ranks.append(shas.index(sha) if sha in shas else None)
        assert [s["distance"] for s in similar] == sorted(s["distance"] for s in similar)
        # the notebook context: the cell that drew it and its notebook
        drawn = top["image"]["outputs"][0]["cell"]
        assert drawn["source"] and len(drawn["notebook"]["sha256"]) == 64
    print(f"\nrank of the original among similarImages of its resized JPEG: {ranks}")
    assert sum(r is not None for r in ranks) >= 9 and sum(r == 0 for r in ranks) >= 7


def test_stored_images_find_neighbours_and_filters_apply_inside_the_search(app, corpus):
    kind, n_kind = rows(corpus, """SELECT k, count(DISTINCT image_sha256) FROM output_plot, unnest(plot_kinds) k
                                   WHERE image_sha256 IS NOT NULL GROUP BY k ORDER BY 2 DESC LIMIT 1""")[0]
    assert n_kind > 12
    sha = rows(corpus, """SELECT i.sha256 FROM image i JOIN image_embedding e ON e.image_sha256 = i.sha256
                          WHERE e.embedding IS NOT NULL AND NOT EXISTS (SELECT 1 FROM output_plot p
                          WHERE p.image_sha256 = i.sha256 AND :k = ANY(p.plot_kinds)) ORDER BY i.sha256 LIMIT 1""", k=kind)[0][0]
    image_id = data(app, "query($s: String!) { image(sha256: $s) { id } }", {"s": sha})["image"]["id"]

    plain = data(app, SIMILAR_IMAGES, {"id": image_id, "n": 10})["similarImages"]
    assert len(plain) == 10 and sha not in [r["image"]["sha256"] for r in plain]
    assert [r["distance"] for r in plain] == sorted(r["distance"] for r in plain)
    by_sha = data(app, SIMILAR_IMAGES, {"id": sha, "n": 10})["similarImages"]
    assert by_sha == plain

    # the nearest images of one plot kind, though the query image is of another kind: every one of
    # the 12 asked for comes back (a filter applied after a top-k search would leave few or none)
    narrowed = data(app, SIMILAR_IMAGES, {"id": image_id, "n": 12, "f": {"plotKind": [kind]}})["similarImages"]
    shas = [r["image"]["sha256"] for r in narrowed]
    assert len(shas) == 12
    of_kind = {s for (s,) in rows(corpus, "SELECT DISTINCT image_sha256 FROM output_plot WHERE :k = ANY(plot_kinds)", k=kind)}
    assert set(shas) <= of_kind
    assert [r["distance"] for r in narrowed] == sorted(r["distance"] for r in narrowed)
    # and the filtered answer is the exact top 12 of that kind (checked against a scan in SQL)
    exact = [s for (s,) in rows(corpus, """
        SELECT e.image_sha256 FROM image_embedding e, image_embedding q
        WHERE q.image_sha256 = :q AND e.model = q.model AND e.image_sha256 <> :q AND e.embedding IS NOT NULL
          AND e.image_sha256 = ANY(:kind)
        ORDER BY e.embedding <=> q.embedding, e.image_sha256 LIMIT 12""", q=sha, kind=list(of_kind))]
    assert len(set(shas) & set(exact)) >= 11

    dups = data(app, DUPLICATES, {"id": image_id, "d": 64})["duplicateImages"]
    assert len(dups) == 3 and sha not in [d["image"]["sha256"] for d in dups]
    bits = {s: b for s, b in rows(corpus, "SELECT image_sha256, phash::text FROM image_phash WHERE phash IS NOT NULL")}
    for d in dups:  # the distance is the Hamming distance of the stored hashes
        assert d["distance"] == sum(a != b for a, b in zip(bits[sha], bits[d["image"]["sha256"]]))


def _renamed(source: str) -> str:
    """The cell with every name it binds renamed, its comments and formatting gone (an ast round trip)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = ast.parse(source)
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    bound |= {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
    new = {name: f"var_{i}" for i, name in enumerate(sorted(bound))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in new:
            node.id = new[node.id]
        elif isinstance(node, ast.arg) and node.arg in new:
            node.arg = new[node.arg]
    return ast.unparse(tree)


def code_sample(engine, n: int) -> list[tuple[int, str]]:
    """Real code cells of at least 5 lines that parse as Python 3, bind a name, and have no identical
    copy elsewhere in the corpus (with a copy, "the original" is not one cell)."""
    out = []
    for cid, source in rows(engine, """
            SELECT c.id, c.source FROM cell c JOIN code_embedding e ON e.cell_id = c.id
            WHERE c.cell_type = 'code' AND e.embedding IS NOT NULL AND array_length(regexp_split_to_array(btrim(c.source), '\\n'), 1) >= 5
              AND c.source !~ '(^|\\n)\\s*[%!]' AND NOT EXISTS (SELECT 1 FROM code_embedding o
                  WHERE o.cell_id <> e.cell_id AND o.model = e.model AND (o.embedding <=> e.embedding) < 0.001)
            ORDER BY md5(c.id::text) LIMIT 200"""):
        try:
            renamed = _renamed(source)
        except SyntaxError:
            continue
        if "var_" in renamed:
            out.append((cid, renamed))
        if len(out) == n:
            break
    return out


def test_code_with_renamed_variables_finds_its_original_in_the_top_3(app, corpus):
    sample = code_sample(corpus, 12)
    assert len(sample) == 12
    query = """query($code: String!) { similarCells(code: $code, first: 3) {
        distance cell { dbId cellType } notebook { sha256 } } }"""
    for cid, renamed in sample:
        found = data(app, query, {"code": renamed})["similarCells"]
        assert cid in [f["cell"]["dbId"] for f in found], (cid, renamed[:200], found)
        assert all(f["cell"]["cellType"] == "code" and len(f["notebook"]["sha256"]) == 64 for f in found)
        assert [f["distance"] for f in found] == sorted(f["distance"] for f in found)


def test_similar_cells_and_text_by_id_with_filters(app, corpus):
    (cid, nb), = rows(corpus, """SELECT c.id, c.notebook_id FROM cell c JOIN code_embedding e ON e.cell_id = c.id
                               WHERE e.embedding IS NOT NULL AND c.source LIKE '%sns.%' ORDER BY c.id LIMIT 1""")
    query = """query($id: ID!, $f: CellFilter) { similarCells(cellId: $id, first: 8, filter: $f) {
        distance cell { dbId source notebook { dbId } } } }"""
    plain = data(app, query, {"id": str(cid)})["similarCells"]
    assert len(plain) == 8 and cid not in [r["cell"]["dbId"] for r in plain]
    seaborn = data(app, query, {"id": str(cid), "f": {"library": ["seaborn"]}})["similarCells"]
    assert len(seaborn) == 8
    uses = {c for (c,) in rows(corpus, "SELECT cell_id FROM cell_analysis WHERE 'seaborn' = ANY(libraries)")}
    assert {r["cell"]["dbId"] for r in seaborn} <= uses
    within = data(app, query, {"id": str(cid), "f": {"notebook": {"ids": [str(nb)]}}})["similarCells"]
    assert within and {r["cell"]["notebook"]["dbId"] for r in within} == {nb}

    # markdown: a stored cell, and a cell's own words sent as text
    (mid, words), = rows(corpus, """SELECT c.id, c.source FROM cell c JOIN text_embedding e ON e.cell_id = c.id
                                  WHERE e.embedding IS NOT NULL AND length(c.source) BETWEEN 300 AND 1500
                                  ORDER BY md5(c.id::text) LIMIT 1""")
    by_id = data(app, "query($id: ID!) { similarText(cellId: $id, first: 5) { distance cell { dbId cellType } } }",
                 {"id": str(mid)})["similarText"]
    assert len(by_id) == 5 and all(r["cell"]["cellType"] == "markdown" for r in by_id)
    assert mid not in [r["cell"]["dbId"] for r in by_id]
    plain_words = " ".join(w.strip("#*_`[]()") for w in words.split())
    by_text = data(app, "query($t: String!) { similarText(text: $t, first: 3) { distance cell { dbId } } }",
                   {"t": plain_words})["similarText"]
    assert by_text[0]["cell"]["dbId"] == mid or by_text[0]["distance"] < 1e-3


def test_models_are_listed_and_vectors_never_leave_the_server(app):
    models = data(app, "{ embeddingModels { space name version dimension vectors indexed } }")["embeddingModels"]
    spaces = {m["space"]: m for m in models if m["name"] in ("code-ngrams", "text-words", "plot-descriptor")}
    assert set(spaces) == {"code", "text", "image"}
    assert all(m["vectors"] > 100 and m["indexed"] for m in spaces.values())
    schema = sdl(public=False)
    assert "[Float" not in schema and "[Float" not in sdl(public=True)


def test_bad_queries_get_clear_errors(app, corpus):
    sha = rows(corpus, "SELECT sha256 FROM image WHERE data IS NOT NULL LIMIT 1")[0][0]
    tiny = base64.b64encode(b"\x89PNG not really").decode()
    assert "exactly one of imageId or image" in error(app, SIMILAR_IMAGES, {"image": tiny, "id": sha})
    assert "exactly one of imageId or image" in error(app, SIMILAR_IMAGES, {})
    assert "could not be decoded" in error(app, SIMILAR_IMAGES, {"image": tiny})
    assert "base64" in error(app, SIMILAR_IMAGES, {"image": "not base64 at all!"})
    huge = base64.b64encode(b"\0" * (5 * 1024 * 1024)).decode()
    assert "over 4 MB" in error(app, SIMILAR_IMAGES, {"image": huge})
    bomb = io.BytesIO()  # a few kilobytes that would decode to 36 million pixels
    Image.new("1", (6000, 6000)).save(bomb, "PNG")
    assert len(bomb.getvalue()) < 100_000
    assert "25 million pixels" in error(app, DUPLICATES, {"image": base64.b64encode(bomb.getvalue()).decode(), "d": 8})
    assert "not an nbatlas id" in error(app, SIMILAR_IMAGES, {"id": "nope"})
    assert "bits, 0 to 64" in error(app, DUPLICATES, {"id": sha, "d": 65})
    assert "exactly one of cellId or code" in error(app, "{ similarCells { distance } }")
    assert "has not been embedded" in error(app, '{ similarCells(cellId: "999999999") { distance } }')
    assert "no text vectors from model 'nope'" in error(app, '{ similarText(text: "roc curve", model: "nope") { distance } }')
    assert "first must be between" in error(app, '{ similarText(text: "roc curve", first: 100000) { distance } }')


def test_public_server_searches_read_only_with_its_limits(corpus, real_corpus_url, tmp_path):
    public = create_app(Settings(home=tmp_path / "home", database_url=real_corpus_url), public=True)
    try:
        ((sha, raw),) = lonely_images(corpus, 1)
        small = resized_jpeg(raw)
        body = gql(public, SIMILAR_IMAGES, {"image": base64.b64encode(small).decode(), "n": 1})
        assert body["data"]["similarImages"][0]["image"]["sha256"] == sha
        # the public body limit (256 KB) stops a big upload before it is decoded or embedded
        big = base64.b64encode(b"\xff" * 300_000).decode()
        refused = run(public, "POST", "/graphql", json={"query": SIMILAR_IMAGES, "variables": {"image": big}})
        assert refused.status_code == 413
    finally:
        public.state.db.dispose()
