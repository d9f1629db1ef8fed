"""The API in-process: committed SDL, no N+1, read-only transactions, masked errors, token, limiter.

These run the FastAPI app through httpx's ASGI transport (no port), on the real-corpus database,
where what they check is the app's own wiring rather than how a user starts it (tests/test_api*.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event, text

from api.app import create_app
from api.database import UserError
from api.schema import PUBLIC_SCHEMA_FILE, SCHEMA_FILE, sdl
from db.settings import Settings


def test_committed_schema_is_current():
    """Regenerate with `python -m api.schema --write` (or `nbatlas serve --print-schema > api/schema.graphql`)."""
    assert SCHEMA_FILE.read_text() == sdl(public=False), "api/schema.graphql is stale: run `python -m api.schema --write`"
    assert PUBLIC_SCHEMA_FILE.read_text() == sdl(public=True), (
        "api/schema.public.graphql is stale: run `python -m api.schema --write`"
    )
    assert "type Mutation" in SCHEMA_FILE.read_text()
    assert "type Mutation" not in PUBLIC_SCHEMA_FILE.read_text() and "mutation:" not in PUBLIC_SCHEMA_FILE.read_text()
    for name in ("interface Node", "type NotebookConnection", "input NotebookFilter", "enum FacetField"):
        assert name in SCHEMA_FILE.read_text()


def _settings(url: str, tmp_path: Path, **kw) -> Settings:
    return Settings(home=tmp_path / "home", database_url=url, **kw)


def run(app, method: str, url: str, **kw) -> httpx.Response:
    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            return await c.request(method, url, **kw)

    return asyncio.run(go())


def gql(app, query: str, variables: dict | None = None, **kw) -> dict:
    return run(app, "POST", "/graphql", json={"query": query, "variables": variables or {}}, **kw).json()


@pytest.fixture(scope="module")
def private_app(real_corpus_url, tmp_path_factory):
    app = create_app(_settings(real_corpus_url, tmp_path_factory.mktemp("inproc")), public=False)
    yield app
    app.state.db.dispose()


PAGE = """query($n: Int) { notebooks(first: $n) { nodes {
    sha256 sources { kind }
    cells(first: 100) { nodes { cellType outputs { outputType images { sha256 width } } } }
    images(first: 5) { mime }
} } }"""


def test_a_page_of_notebooks_with_everything_costs_a_constant_number_of_statements(private_app):
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    engine = private_app.state.db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        costs = {}
        for n in (10, 100):
            statements.clear()
            data = gql(private_app, PAGE, {"n": n})
            assert "errors" not in data, data
            nodes = data["data"]["notebooks"]["nodes"]
            assert len(nodes) == n
            costs[n] = len(statements)
        outputs = sum(len(c["outputs"]) for nb in nodes for c in nb["cells"]["nodes"])
        images = sum(len(o["images"]) for nb in nodes for c in nb["cells"]["nodes"] for o in c["outputs"])
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert outputs > 100 and images > 50  # the page really has cells, outputs and images to load
    # notebooks page, sources, cells, outputs, output images, notebook images
    assert costs[10] == costs[100] <= 6, costs


def test_public_transactions_are_read_only_with_a_statement_timeout(real_corpus_url, tmp_path):
    from api.database import Database, make_api_engine

    settings = _settings(real_corpus_url, tmp_path, statement_timeout_ms=1234)
    db = Database(make_api_engine(settings, public=True), settings=settings, public=True)
    try:
        def show(*, session):
            return [session.execute(text(f"SHOW {name}")).scalar() for name in ("transaction_read_only", "statement_timeout")]

        assert db.read_sync(show) == ["on", "1234ms"]

        def write(*, session):
            session.execute(text("UPDATE notebook SET language = 'x'"))

        with pytest.raises(UserError, match="read-only"):
            db.read_sync(write)
        with pytest.raises(UserError, match="read-only"):
            db.write_sync(write)
    finally:
        db.dispose()


def test_public_errors_are_masked_but_validation_errors_stay_clear(real_corpus_url, tmp_path, monkeypatch):
    from db.queries import browse

    def broken(**_kw):
        raise RuntimeError("SELECT secret FROM /etc/passwd")  # what must never reach a client

    app = create_app(_settings(real_corpus_url, tmp_path), public=True)
    monkeypatch.setattr(browse, "notebook_page", broken)
    body = gql(app, "{ notebooks(first: 1) { nodes { id } } }")
    assert body["errors"][0]["message"] == "internal error (details are in the server's log)"
    assert "passwd" not in str(body) and "SELECT" not in str(body)
    body = gql(app, "{ notebooks(first: 1) { nodes { nope } } }")
    assert "Cannot query field 'nope' on type 'Notebook'" in body["errors"][0]["message"]
    app.state.db.dispose()


def test_private_token(real_corpus_url, tmp_path):
    app = create_app(_settings(real_corpus_url, tmp_path, api_token="s3cret"), public=False)
    q = {"query": "{ stats { notebooks } }"}
    refused = run(app, "POST", "/graphql", json=q)
    assert refused.status_code == 401 and "Bearer" in refused.json()["error"]
    assert run(app, "POST", "/graphql", json=q, headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = run(app, "POST", "/graphql", json=q, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()["data"]["stats"]["notebooks"] > 0
    assert run(app, "GET", "/images/" + "0" * 64).status_code == 401
    assert run(app, "GET", "/health").status_code == 200
    assert run(app, "GET", "/graphql", headers={"Accept": "text/html"}).status_code == 200  # GraphiQL page
    app.state.db.dispose()


def test_delete_notebooks_mutation_on_its_own_database(fresh_database, tmp_path):
    from sqlalchemy import create_engine
    from sqlmodel import Session

    from ingest.local import ingest_paths
    from tests.conftest import real_notebooks

    url = fresh_database()
    settings = _settings(url, tmp_path, workers=1)
    eng = create_engine(url)
    with Session(eng) as session:
        ingest_paths(real_notebooks()[:2], session=session, settings=settings, progress=False)
        session.commit()
    app = create_app(settings, public=False)
    ids = [n["id"] for n in gql(app, "{ notebooks { nodes { id } } }")["data"]["notebooks"]["nodes"]]
    body = gql(app, "mutation($ids: [ID!]!) { deleteNotebooks(ids: $ids) { deleted } }", {"ids": ids[:1]})
    assert body["data"]["deleteNotebooks"]["deleted"] == ids[:1]
    with eng.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM notebook")).scalar() == 1
        orphans = conn.execute(text(
            "SELECT count(*) FROM image i WHERE NOT EXISTS (SELECT 1 FROM output_image oi WHERE oi.image_sha256 = i.sha256)"
        )).scalar()
        assert orphans == 0
    app.state.db.dispose()
    eng.dispose()


# --- units ---------------------------------------------------------------------------------------


def test_rate_limit_token_bucket_and_proxy_trust():
    from api.guards import RateLimit, client_address

    limiter = RateLimit(None, rate=2.0, burst=3, trust_proxy=False)
    assert [limiter.take("a", now=0.0) for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a", now=0.0) == pytest.approx(0.5)  # empty: one token in half a second
    assert limiter.take("b", now=0.0) == 0  # per client
    assert limiter.take("a", now=1.0) == 0  # refilled
    scope = {"client": ("10.1.1.1", 5), "headers": [(b"x-forwarded-for", b"1.2.3.4, 9.9.9.9")]}
    assert client_address(scope, trust_proxy=False) == "10.1.1.1"
    assert client_address(scope, trust_proxy=True) == "9.9.9.9"  # the address our proxy saw
    small = RateLimit(None, rate=1.0, burst=1, trust_proxy=False, max_clients=2)
    for name in "abc":
        small.take(name, now=0.0)
    assert list(small.buckets) == ["b", "c"]


def test_filters_from_query_parameters():
    from db.queries.filters import CellFilter, FilterParamError, NotebookFilter, filter_from_params

    f = filter_from_params(CellFilter, [("cell_type", "code,markdown"), ("notebook.language", "python"),
                                        ("notebook.has_images", "true")])
    assert f == CellFilter(cell_type=("code", "markdown"), notebook=NotebookFilter(language=("python",), has_images=True))
    assert filter_from_params(CellFilter, []) is None
    with pytest.raises(FilterParamError, match="unknown filter 'colour'"):
        filter_from_params(CellFilter, [("colour", "red")])
    with pytest.raises(FilterParamError, match="expected a whole number"):
        filter_from_params(NotebookFilter, [("min_cells", "many")])


def test_cursors_and_ids_round_trip_and_refuse_forgeries():
    from api.ids import db_id, decode_cursor, encode_cursor, global_id, parse_global_id

    assert decode_cursor(encode_cursor("hit", 0.4623647928237915, 7), "hit", (float, int)) == (0.4623647928237915, 7)
    for bad in ("", "!!!", encode_cursor("cell", 1), encode_cursor("hit", "0.5", 7)):
        with pytest.raises(UserError, match="invalid cursor"):
            decode_cursor(bad, "hit", (float, int))
    assert parse_global_id(global_id("Cell", 42)) == ("Cell", "42") and db_id(global_id("Cell", 42), "Cell") == 42
    with pytest.raises(UserError, match="is the id of a Cell, not of a Notebook"):
        db_id(global_id("Cell", 42), "Notebook")
