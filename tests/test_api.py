"""The private API over HTTP, served the way a user serves it (`nbatlas serve`), on the real corpus.

One server for the module, on a database with all of ../shared/corpus/real ingested; every claim is
checked against the database itself (independent SQL) or against the notebook files on disk.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text

from analysis.client import GraphQLErrors, NbatlasClient
from ingest.serve_process import ServerNotServing, free_port, stop_server, wait_until_serving
from tests.conftest import REAL_CORPUS, cli_env

NBATLAS = str(Path(sys.executable).with_name("nbatlas"))
TIMEOUT = 120  # seconds; generous: CI machines are shared, and speed is the benchmark's business


def http_get(url: str, **kwargs) -> httpx.Response:
    return httpx.get(url, timeout=TIMEOUT, **kwargs)


@contextmanager
def serve(database_url: str, home: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run `nbatlas serve --port P [args]` as a subprocess until the block ends; yields its base URL."""
    port = free_port()
    full_env = {**cli_env(database_url, home), **(env or {})}
    log = open(home.parent / f"serve-{port}.log", "wb")
    proc = subprocess.Popen(
        [NBATLAS, "serve", "--port", str(port), "--log-level", "warning", *args],
        env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_serving(proc, base, 120)
        except ServerNotServing as exc:
            log.flush()
            raise RuntimeError(f"nbatlas serve: {exc}: {(home.parent / f'serve-{port}.log').read_text()}") from None
        yield base
    finally:
        stop_server(proc)
        log.close()


@pytest.fixture(scope="module")
def api_url(real_corpus_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("api") / "home"
    with serve(real_corpus_url, home) as base:
        yield base


@pytest.fixture(scope="module")
def client(api_url: str) -> Iterator[NbatlasClient]:
    with NbatlasClient(api_url) as c:
        yield c


@pytest.fixture(scope="module")
def db(real_corpus_url: str):
    eng = create_engine(real_corpus_url)
    yield eng
    eng.dispose()


def scalar(db, sql: str, **params):
    with db.connect() as conn:
        return conn.execute(text(sql), params).scalar()


# --- counts, paging, lookups ---------------------------------------------------------------------


def test_stats_equal_the_ingest_counts(client, db):
    from sqlmodel import Session

    from db.queries.stats import corpus_stats

    fields = "notebooks sources cells outputs imageOutputs images problems warnings notebooksWithWarnings " \
             "upgradedToV4 runs notebookBytes imageBytes"
    stats = client.query(f"{{ stats {{ {fields} }} }}")["stats"]
    with Session(db) as session:
        expected = dict(corpus_stats(session=session))
    assert stats == {re.sub(r"_(.)", lambda m: m.group(1).upper(), k): v for k, v in expected.items()}
    # and independently of corpus_stats: every file of the real corpus is one notebook
    assert stats["notebooks"] == scalar(db, "SELECT count(*) FROM notebook") == len(list(REAL_CORPUS.glob("*.ipynb")))
    assert stats["cells"] == scalar(db, "SELECT count(*) FROM cell") > 1000
    assert stats["images"] == scalar(db, "SELECT count(*) FROM image") > 100


def test_paging_cells_visits_every_cell_exactly_once(client, db):
    query = """query($first: Int, $after: String) {
        cells(first: $first, after: $after) { nodes { dbId } pageInfo { hasNextPage endCursor } totalCount }
    }"""
    seen = [cell["dbId"] for cell in client.paginate(query, "cells", page_size=100)]
    with db.connect() as conn:
        expected = sorted(conn.execute(text("SELECT id FROM cell")).scalars())
    assert len(seen) == len(set(seen)) == len(expected)
    assert seen == expected  # keyset order: by id


def test_filtered_pages_and_total_count(client, db):
    query = """query($first: Int, $after: String) {
        cells(first: $first, after: $after, filter: {cellType: ["markdown"], notebook: {nbformat: [3]}}) {
            nodes { dbId cellType notebook { originalNbformat } } pageInfo { hasNextPage endCursor } totalCount
        }
    }"""
    cells = list(client.paginate(query, "cells", page_size=50))
    expected = scalar(
        db, "SELECT count(*) FROM cell c JOIN notebook n ON n.id = c.notebook_id "
        "WHERE c.cell_type = 'markdown' AND n.original_nbformat = 3"
    )
    assert len(cells) == expected > 50
    assert {(c["cellType"], c["notebook"]["originalNbformat"]) for c in cells} == {("markdown", 3)}
    total = client.query(query, {"first": 1})["cells"]["totalCount"]
    assert total == expected


def test_nested_connection_pages_through_one_notebooks_cells(client, db):
    nb_id = scalar(db, "SELECT id FROM notebook ORDER BY n_cells DESC LIMIT 1")
    n_cells = scalar(db, "SELECT count(*) FROM cell WHERE notebook_id = :id", id=nb_id)
    query = """query($id: ID!, $first: Int, $after: String) {
        notebook(id: $id) { cells(first: $first, after: $after) { nodes { position } pageInfo { hasNextPage endCursor } } }
    }"""
    positions = [c["position"] for c in client.paginate(query, "notebook.cells", {"id": str(nb_id)}, page_size=7)]
    assert positions == list(range(n_cells))


def test_node_and_notebook_lookups(client):
    first = client.query("{ notebooks(first: 1) { nodes { id sha256 dbId } } }")["notebooks"]["nodes"][0]
    again = client.query(
        "query($id: ID!) { node(id: $id) { __typename ... on Notebook { sha256 } } }", {"id": first["id"]}
    )["node"]
    assert again == {"__typename": "Notebook", "sha256": first["sha256"]}
    by_sha = client.query("query($s: String) { notebook(sha256: $s) { id } }", {"s": first["sha256"].upper()})
    assert by_sha["notebook"]["id"] == first["id"]
    with pytest.raises(GraphQLErrors, match="not an nbatlas id"):
        client.query('{ node(id: "bm90IGFuIGlk") { id } }')
    with pytest.raises(GraphQLErrors, match="invalid cursor"):
        client.query('{ cells(first: 1, after: "WyJub3RlYm9vayIsMV0=") { nodes { id } } }')  # a notebook cursor


def test_one_notebook_with_everything_matches_the_database(client, db):
    nb_id = scalar(db, "SELECT id FROM notebook WHERE n_image_outputs > 0 ORDER BY id LIMIT 1")
    data = client.query(
        """query($id: ID!) { notebook(id: $id) {
            nCells sources { kind location }
            cells(first: 1000) { nodes { position cellType outputs { outputType mimeTypes images { sha256 mime } } } }
        } }""",
        {"id": str(nb_id)},
    )["notebook"]
    cells = data["cells"]["nodes"]
    assert len(cells) == data["nCells"] == scalar(db, "SELECT count(*) FROM cell WHERE notebook_id = :i", i=nb_id)
    outputs = [o for c in cells for o in c["outputs"]]
    assert len(outputs) == scalar(db, "SELECT count(*) FROM output WHERE notebook_id = :i", i=nb_id)
    images = [i["sha256"] for o in outputs for i in o["images"]]
    with db.connect() as conn:
        expected = conn.execute(
            text("SELECT oi.image_sha256 FROM output o JOIN output_image oi ON oi.output_id = o.id "
                 "WHERE o.notebook_id = :i ORDER BY o.id, oi.mime"), {"i": nb_id}
        ).scalars().all()
    assert images == expected and images
    assert data["sources"][0]["kind"] == "local" and Path(data["sources"][0]["location"]).exists()


# --- search and facets ---------------------------------------------------------------------------

PHRASE_FILE = "Carl-McBride-Ellis__My-kaggle-notebooks__files__anscombe-s-quartet-and-the-importance-of-eda.ipynb"
PHRASE = "Graphs are essential to good statistical analysis"


def test_full_text_search_finds_a_phrase_from_a_real_markdown_cell(client):
    path = REAL_CORPUS / PHRASE_FILE
    nb = json.loads(path.read_text())
    assert any(c["cell_type"] == "markdown" and PHRASE in "".join(c["source"]) for c in nb["cells"])
    file_sha = hashlib.sha256(path.read_bytes()).hexdigest()

    hits = client.query(
        """query($q: String!) { search(query: $q, kinds: [MARKDOWN], first: 20) {
            nodes { kind rank snippet cell { source cellType notebook { sha256 } } }
        } }""",
        {"q": f'"{PHRASE.lower()}"'},
    )["search"]["nodes"]
    mine = [h for h in hits if h["cell"]["notebook"]["sha256"] == file_sha]
    assert mine, "the notebook holding the phrase is not among the hits"
    hit = mine[0]
    assert PHRASE in hit["cell"]["source"] and hit["kind"] == "MARKDOWN" and hit["rank"] > 0
    assert "<mark>Graphs</mark>" in hit["snippet"] and "<mark>statistical</mark>" in hit["snippet"]
    assert all(PHRASE.lower() in h["cell"]["source"].lower().replace("\n", " ") for h in hits)


def test_search_code_pages_by_rank_without_repeats(client, db):
    query = """query($q: String!, $first: Int, $after: String) { search(query: $q, kinds: [CODE], first: $first, after: $after) {
        nodes { rank cell { dbId cellType } } pageInfo { hasNextPage endCursor } } }"""
    hits = list(client.paginate(query, "search", {"q": "confusion_matrix"}, page_size=5))
    ids = [h["cell"]["dbId"] for h in hits]
    assert len(ids) == len(set(ids)) > 5
    ranks = [h["rank"] for h in hits]
    assert ranks == sorted(ranks, reverse=True)
    with db.connect() as conn:
        sources = conn.execute(text("SELECT source FROM cell WHERE id = ANY(:ids)"), {"ids": ids}).scalars().all()
    assert all("confusion_matrix" in s for s in sources) and {h["cell"]["cellType"] for h in hits} == {"code"}


def test_facets_count_what_they_say(client, db):
    data = client.query(
        """{ cellType: facets(field: CELL_TYPE) { value count }
             language: facets(field: LANGUAGE) { value count }
             mime: facets(field: MIME_TYPE) { value count }
             pythonImages: facets(field: IMAGE_MIME, filter: {language: ["python"]}) { value count } }"""
    )
    with db.connect() as conn:
        by_type = dict(conn.execute(text("SELECT cell_type, count(*) FROM cell GROUP BY 1")).all())
        by_lang = dict(conn.execute(text("SELECT language, count(*) FROM notebook GROUP BY 1")).all())
        by_mime = dict(conn.execute(text("SELECT m, count(*) FROM output, unnest(mime_types) m GROUP BY 1")).all())
    assert {f["value"]: f["count"] for f in data["cellType"]} == by_type
    assert {f["value"]: f["count"] for f in data["language"]} == by_lang
    assert {f["value"]: f["count"] for f in data["mime"]} == by_mime
    counts = [f["count"] for f in data["mime"]]
    assert counts == sorted(counts, reverse=True)
    assert "image/png" in {f["value"] for f in data["pythonImages"]}


# --- images --------------------------------------------------------------------------------------


def test_image_bytes_hash_to_their_id(client, api_url):
    images = client.query('{ images(first: 5, filter: {mime: ["image/png"]}) { nodes { sha256 mime url width } } }')
    for image in images["images"]["nodes"]:
        r = http_get(api_url + image["url"])
        assert r.status_code == 200
        assert hashlib.sha256(r.content).hexdigest() == image["sha256"]
        assert r.headers["content-type"] == "image/png"
        assert r.headers["etag"] == f'"{image["sha256"]}"'
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        again = http_get(api_url + image["url"], headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b""


def test_thumbnails_are_cached_pngs(client, api_url):
    from PIL import Image as PILImage

    image = client.query('{ images(first: 1, filter: {mime: ["image/png"], minWidth: 300}) { nodes { sha256 width height } } }')
    image = image["images"]["nodes"][0]
    url = f"{api_url}/images/{image['sha256']}?width=120"
    first = http_get(url)
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    with PILImage.open(io.BytesIO(first.content)) as im:
        assert im.format == "PNG" and im.width == 120
        assert abs(im.height - image["height"] * 120 / image["width"]) <= 1
    second = http_get(url)
    assert second.content == first.content and second.headers["etag"] == first.headers["etag"] != f'"{image["sha256"]}"'


def test_svg_is_sandboxed_and_unknown_images_are_json_404s(client, api_url):
    svg = client.query('{ images(first: 1, filter: {mime: ["image/svg+xml"]}) { nodes { sha256 } } }')["images"]["nodes"]
    if svg:  # the real corpus has SVG plots
        r = http_get(f"{api_url}/images/{svg[0]['sha256']}")
        assert r.headers["content-type"].startswith("image/svg+xml")
        assert "sandbox" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert hashlib.sha256(r.content).hexdigest() == svg[0]["sha256"]
    for bad in ("0" * 64, "not-a-hash"):
        r = http_get(f"{api_url}/images/{bad}")
        assert r.status_code == 404 and r.headers["content-type"] == "application/json" and "error" in r.json()


# --- export --------------------------------------------------------------------------------------


@pytest.mark.parametrize("table,sql", [
    ("notebooks", "SELECT count(*) FROM notebook"),
    ("cells", "SELECT count(*) FROM cell"),
    ("outputs", "SELECT count(*) FROM output"),
    ("images", "SELECT count(*) FROM image"),
])
def test_export_parquet_and_ndjson_read_by_pandas(client, db, tmp_path, table, sql):
    import pandas as pd

    expected = scalar(db, sql)
    parquet = client.export(table, tmp_path / f"{table}.parquet")
    ndjson = client.export(table, tmp_path / f"{table}.ndjson")
    frame = pd.read_parquet(parquet)
    lines = pd.read_json(ndjson, lines=True)
    assert len(frame) == len(lines) == expected
    assert list(frame.columns) == list(lines.columns) == pq.read_schema(parquet).names
    key = "sha256" if table == "images" else "id"
    assert frame[key].is_unique and frame[key].is_monotonic_increasing
    for reader in ("duckdb", "polars"):  # when the researcher's other tools are installed, they read it too
        try:
            module = __import__(reader)
        except ImportError:
            continue
        n = module.read_parquet(str(parquet)).shape[0] if reader == "polars" else module.sql(
            f"SELECT count(*) FROM read_parquet('{parquet}')").fetchone()[0]
        assert n == expected


def test_export_filters_and_image_bytes(api_url, db, tmp_path):
    r = http_get(f"{api_url}/export/cells.parquet", params=[("cell_type", "code"), ("notebook.language", "python")])
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(r.content))
    assert set(table["cell_type"].to_pylist()) == {"code"}
    assert table.num_rows == scalar(
        db, "SELECT count(*) FROM cell c JOIN notebook n ON n.id = c.notebook_id WHERE c.cell_type = 'code' AND n.language = 'python'"
    )
    r = http_get(f"{api_url}/export/images.ndjson", params={"with_data": "true", "mime": "image/png,image/svg+xml"})
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert rows and all(hashlib.sha256(base64.b64decode(row["data"])).hexdigest() == row["sha256"] for row in rows)
    assert {row["mime"] for row in rows} <= {"image/png", "image/svg+xml"}
    bad = http_get(f"{api_url}/export/cells.parquet", params={"colour": "red"})
    assert bad.status_code == 400 and "unknown filter 'colour'" in bad.json()["error"]
    assert http_get(f"{api_url}/export/cells.csv").status_code == 404


@pytest.mark.parametrize("table,key,typo,valid", [
    ("cells", "stage", "evalution", "setup, data_loading, exploration"),
    ("cells", "cell_type", "cod", "code, markdown, raw"),
    ("images", "plot_kind", "bogus", "confusion_matrix, roc_curve"),
    ("images", "mime", "image/jpg", "image/png, image/jpeg, image/gif, image/svg+xml"),
    ("outputs", "output_type", "display", "execute_result, display_data, stream, error"),
    ("notebooks", "reproduction.status", "OK", "ok, error, timeout"),
    ("cells", "notebook.source_kind", "kagle", "local, archive, kaggle"),
])
def test_export_refuses_a_word_outside_its_vocabulary(api_url, table, key, typo, valid):
    # a typo once answered 200 with nothing in it
    r = http_get(f"{api_url}/export/{table}.ndjson", params={key: typo})
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith(f"{key}: unknown value {typo!r}") and valid in r.json()["error"]


def test_export_typos_and_open_vocabularies(api_url, real_corpus_url, db, tmp_path):
    r = http_get(f"{api_url}/export/cells.ndjson", params=[("stage", "evaluation,evalution")])
    assert r.status_code == 400 and "(did you mean 'evaluation'?)" in r.json()["error"]
    # the right word still filters; a library is free text (an unknown one simply matches nothing)
    r = http_get(f"{api_url}/export/cells.ndjson", params={"stage": "evaluation"})
    assert r.status_code == 200 and len(r.text.splitlines()) == scalar(
        db, "SELECT count(*) FROM cell_analysis WHERE stage = 'evaluation'") > 0
    r = http_get(f"{api_url}/export/cells.ndjson", params={"library": "no_such_library"})
    assert r.status_code == 200 and r.text == ""
    # the command refuses it too, with exit code 1 and no file
    out = tmp_path / "i.ndjson"
    done = subprocess.run(
        [NBATLAS, "export", "images", "-o", str(out), "-w", "plot_kind=bogus", "--no-progress"],
        env={**cli_env(real_corpus_url, tmp_path / "home"), "COLUMNS": "400"}, capture_output=True, text=True, timeout=300,
    )
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 1 and "plot_kind: unknown value 'bogus'" in said and "valid values: confusion_matrix," in said
    assert not out.exists() and not out.with_name(out.name + ".part").exists()


def test_search_and_nested_cells_count_what_they_list(client, db):
    query = """query($q: String!, $first: Int, $after: String) { search(query: $q, kinds: [CODE, MARKDOWN], first: $first,
        after: $after) { totalCount nodes { cell { dbId } } pageInfo { hasNextPage endCursor } } }"""
    hits = list(client.paginate(query, "search", {"q": "confusion matrix"}, page_size=100))
    total = client.query(query, {"q": "confusion matrix", "first": 1})["search"]["totalCount"]
    assert total == len(hits) == scalar(
        db, "SELECT count(*) FROM cell WHERE (cell_type = 'code' AND search_vector @@ websearch_to_tsquery('simple', :q)) "
        "OR (cell_type = 'markdown' AND search_vector @@ websearch_to_tsquery('english', :q))", q="confusion matrix") > 0
    assert client.query(query, {"q": "   ", "first": 1})["search"]["totalCount"] == 0

    nb_id = scalar(db, "SELECT id FROM notebook ORDER BY n_cells DESC LIMIT 1")
    counts = client.query("""query($id: ID!) { notebook(id: $id) { all: cells(first: 1) { totalCount }
        markdown: cells(first: 1, cellType: ["markdown"]) { totalCount } } }""", {"id": str(nb_id)})["notebook"]
    assert counts["all"]["totalCount"] == scalar(db, "SELECT count(*) FROM cell WHERE notebook_id = :id", id=nb_id)
    assert counts["markdown"]["totalCount"] == scalar(
        db, "SELECT count(*) FROM cell WHERE notebook_id = :id AND cell_type = 'markdown'", id=nb_id) > 0


def test_export_command_writes_what_the_route_serves(real_corpus_url, db, tmp_path):
    out = tmp_path / "markdown.parquet"
    result = subprocess.run(
        [NBATLAS, "export", "cells", "-o", str(out), "-w", "cell_type=markdown", "--no-progress"],
        env=cli_env(real_corpus_url, tmp_path / "home"), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    table = pq.read_table(out)
    assert table.num_rows == scalar(db, "SELECT count(*) FROM cell WHERE cell_type = 'markdown'")
    assert not out.with_name(out.name + ".part").exists()


def test_ipynb_download_is_the_notebook_that_was_ingested(client, api_url):
    import nbformat

    path = REAL_CORPUS / PHRASE_FILE
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    url = client.query("query($s: String) { notebook(sha256: $s) { ipynbUrl } }", {"s": sha})["notebook"]["ipynbUrl"]
    r = http_get(api_url + url)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ipynb+json"
    assert nbformat.reads(r.text, as_version=4) == nbformat.reads(path.read_text(), as_version=4)
    assert http_get(f"{api_url}/notebooks/{'0' * 64}.ipynb").status_code == 404


# --- writes cannot come in through inputs --------------------------------------------------------

INJECTIONS = [
    "'; DROP TABLE cell; --",
    "x' OR '1'='1",
    "1); DELETE FROM notebook; --",
    "$$; TRUNCATE image CASCADE; $$",
    "python') UNION SELECT sha256 FROM notebook --",
    "\\'; UPDATE notebook SET language = 'pwned'; --",
]


def table_counts(db) -> dict[str, int]:
    with db.connect() as conn:
        tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
        return {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() for t in tables}


def attempt_injections(base_url: str) -> None:
    """Every input that reaches SQL, fed with SQL; each must match nothing (or be refused), never write."""
    with NbatlasClient(base_url) as c:
        for evil in INJECTIONS:
            filtered = c.query(
                """query($e: String!, $l: [String!]) {
                    n: notebooks(filter: {language: $l, locationContains: $e}) { totalCount nodes { id } }
                    c: cells(filter: {sourceContains: $e, call: $l}) { totalCount }
                    i: images(filter: {sha256: $l}) { totalCount }
                    o: outputs(filter: {mimeType: $l, ename: $l}) { totalCount }
                    s: search(query: $e) { nodes { rank } }
                    f: facets(field: LANGUAGE, filter: {language: $l, kernelName: $l}) { value count }
                    img: image(sha256: $e) { sha256 }
                    nb: notebook(sha256: $e) { id }
                }""",
                {"e": evil, "l": [evil]},
            )
            assert filtered["n"]["totalCount"] == filtered["c"]["totalCount"] == 0
            assert filtered["i"]["totalCount"] == filtered["o"]["totalCount"] == 0
            assert filtered["f"] == [] and filtered["img"] is None and filtered["nb"] is None
            # a closed vocabulary refuses SQL as it refuses any other word outside it
            for closed in ("cells(filter: {cellType: $l})", "images(filter: {mime: $l})", "plots(filter: {stage: $l})"):
                with pytest.raises(GraphQLErrors, match="unknown"):
                    c.query(f"query($l: [String!]) {{ x: {closed} {{ totalCount }} }}", {"l": [evil]})
            for bad_id in (evil, base64.b64encode(f"Notebook:{evil}".encode()).decode()):
                with pytest.raises(GraphQLErrors):
                    c.query("query($id: ID!) { node(id: $id) { id } }", {"id": bad_id})
            cursor = base64.urlsafe_b64encode(json.dumps(["cell", evil]).encode()).decode()
            with pytest.raises(GraphQLErrors, match="invalid cursor"):
                c.query("query($a: String) { cells(first: 1, after: $a) { nodes { id } } }", {"a": cursor})
            r = http_get(f"{base_url}/export/notebooks.ndjson", params={"language": evil})
            assert r.status_code == 200 and r.text == ""
            assert http_get(f"{base_url}/images/{evil}").status_code == 404


def test_sql_in_inputs_changes_nothing(api_url, db):
    before = table_counts(db)
    languages = scalar(db, "SELECT count(DISTINCT language) FROM notebook")
    attempt_injections(api_url)
    assert table_counts(db) == before
    assert scalar(db, "SELECT count(DISTINCT language) FROM notebook") == languages
    assert scalar(db, "SELECT count(*) FROM notebook WHERE language = 'pwned'") == 0


def test_private_schema_has_the_mutation(client):
    names = client.query("{ __schema { mutationType { fields { name } } } }")["__schema"]["mutationType"]
    assert "deleteNotebooks" in [f["name"] for f in names["fields"]]


def test_health(api_url):
    body = http_get(f"{api_url}/health").json()
    assert body["status"] == "ok" and body["public"] is False and body["schema_revision"]
