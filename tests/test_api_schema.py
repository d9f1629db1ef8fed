"""The API in-process: committed SDL, no N+1, read-only transactions, masked errors, token, limiter.

These run the FastAPI app through httpx's ASGI transport (no port), on the real-corpus database,
where what they check is the app's own wiring rather than how a user starts it (tests/test_api*.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import strawberry
from sqlalchemy import create_engine, event, text

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


FAST_PATH_QUERY = """query($sha: String!) {
  notebook(sha256: $sha) { id dbId sha256 language kernelName metadata nCells ingestedAt
    sources { kind location member fetchedAt metadata }
    cells(first: 1000) { nodes { id dbId position cellType cellKey source executionCount metadata attachments
      outputs { dbId position outputType mimeTypes data metadata executionCount name text ename evalue traceback
        images { sha256 mime width height sizeBytes url } } } } }
  search(query: "confusion matrix", first: 5) { nodes { kind rank snippet cell { dbId position } } }
  stats { notebooks cells notebookBytes }
}"""


@strawberry.type
class _Thing:
    count: int
    names: list[str]


@strawberry.type
class _Things:
    @strawberry.field
    def things(self) -> list[_Thing]:
        return [_Thing(count=1, names=["a"]), _Thing(count=None, names=["b", None])]  # type: ignore[arg-type]


def test_the_plain_attribute_fast_path_answers_exactly_as_graphql_core(private_app, real_corpus_url):
    """api.execution reads scalar attributes without graphql-core's generic path: same answers
    (ids, enums, lists, JSON, dates, Long), and the same error where a non-null field holds null."""
    from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

    from api.context import Context
    from api.execution import FastExecutionContext
    from api.schema import build_schema

    with create_engine(real_corpus_url).connect() as conn:
        sha = conn.execute(text(
            "SELECT sha256 FROM notebook WHERE n_image_outputs > 0 ORDER BY n_outputs DESC LIMIT 1")).scalar()
    fast, plain = build_schema(public=False), build_schema(public=False)
    assert fast.execution_context_class is FastExecutionContext
    plain.execution_context_class = StrawberryGraphQLCoreExecutionContext

    def run_on(schema):
        ctx = Context(private_app.state.db, max_page_size=1000)
        return asyncio.run(schema.execute(FAST_PATH_QUERY, variable_values={"sha": sha}, context_value=ctx))

    a, b = run_on(fast), run_on(plain)
    assert not a.errors and not b.errors
    assert a.data == b.data and len(a.data["notebook"]["cells"]["nodes"]) > 10

    answers = []
    for cls in (FastExecutionContext, StrawberryGraphQLCoreExecutionContext):
        result = strawberry.Schema(query=_Things, execution_context_class=cls).execute_sync("{ things { count names } }")
        answers.append((result.data, [(e.message, e.path) for e in result.errors or []]))
    assert answers[0] == answers[1] and answers[0][1]  # null in a non-null field: graphql-core's own error


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


def test_private_token_lets_a_browser_in_through_a_cookie(real_corpus_url, tmp_path):
    """The workbench's pages cannot send a bearer header: a login (form, or a ?token= link) sets an
    HttpOnly cookie; writes with that cookie must come from this site's own pages."""
    from api.guards import COOKIE, LOGIN_PATH

    app = create_app(_settings(real_corpus_url, tmp_path, api_token="s3cret"), public=False)
    html_accept = {"Accept": "text/html"}
    q = {"query": "{ stats { notebooks } }"}
    own_page = {"X-Requested-With": "nbatlas-workbench"}

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            page = await c.get("/", headers=html_accept)  # a browser without the cookie: the login form
            assert page.status_code == 401 and f'action="{LOGIN_PATH}"' in page.text and "text/html" in page.headers["content-type"]
            assert (await c.get("/?token=wrong", headers=html_accept)).status_code == 401
            assert COOKIE not in c.cookies
            # the form, posted from this site
            bad = await c.post(LOGIN_PATH, data={"token": "nope", "next": "/"}, headers={"Origin": "http://test"})
            assert bad.status_code == 401 and "wrong token" in bad.text
            foreign = await c.post(LOGIN_PATH, data={"token": "s3cret"}, headers={"Origin": "http://evil.example"})
            assert foreign.status_code == 403 and COOKIE not in c.cookies
            ok = await c.post(LOGIN_PATH, data={"token": "s3cret", "next": "//evil.example/x"},
                              headers={"Origin": "http://test"})
            assert ok.status_code == 303 and ok.headers["location"] == "/"  # never off-site
            set_cookie = ok.headers["set-cookie"]
            assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "s3cret" not in set_cookie
            gallery = await c.get("/", headers=html_accept)
            assert gallery.status_code == 200 and "text/html" in gallery.headers["content-type"]
            assert (await c.post("/graphql", json=q, headers=own_page)).json()["data"]["stats"]["notebooks"] > 0
            # a write with the cookie alone (another site's form or fetch) is refused
            assert (await c.post("/graphql", json=q, headers={"Origin": "http://evil.example"})).status_code == 401
            assert (await c.post("/graphql", json=q)).status_code == 401
            c.cookies.clear()
            # a ?token= link: the cookie, then the same page without the token in its address
            link = await c.get("/?token=s3cret&page=2", headers=html_accept)
            assert link.status_code == 303 and link.headers["location"] == "/?page=2"
            assert (await c.get("/", headers=html_accept)).status_code == 200
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            c.cookies.set(COOKIE, "s3cret")  # the token itself is not a valid cookie
            assert (await c.get("/", headers=html_accept)).status_code == 401

    asyncio.run(go())
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


def test_images_and_static_files_have_their_own_rate_budget():
    """A workbench gallery page asks for dozens of thumbnails at once: they must not use up the
    queries' budget, and they have a (larger) budget of their own."""
    from api.guards import RateLimit

    async def ok_app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limiter = RateLimit(ok_app, rate=0.01, burst=5, trust_proxy=False, image_rate=0.01, image_burst=60)

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=limiter), base_url="http://test") as c:
            images = [(await c.get(f"/images/{i:064x}?width=256")).status_code for i in range(52)]
            assert images == [200] * 52
            assert (await c.get("/static/workbench/app.css")).status_code == 200
            queries = [(await c.post("/graphql", json={})).status_code for _ in range(6)]
            assert queries == [200] * 5 + [429]
            more = [(await c.get(f"/images/{i:064x}")).status_code for i in range(8)]
            assert more.count(429) >= 1  # the images' own budget runs out too
            limited = await c.get(f"/images/{0:064x}")
            assert limited.status_code == 429 and "image" in limited.json()["error"]

    asyncio.run(go())


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
