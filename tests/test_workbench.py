"""The workbench over HTTP (no browser: see test_workbench_browser.py): pages on the real corpus,
their Content-Security-Policy, sanitised notebook content, sandboxed HTML outputs, login and the
annotator token, the study's GraphQL (private only), forms, CSV export, and public mode.

The module works on its own copy of the real-corpus database (it writes annotations), plus a
generated notebook full of script payloads.
"""

from __future__ import annotations

import csv
import gc
import io
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from db import schema
from db.queries import study
from db.queries import workbench as wb
from db.settings import Settings
from tests.conftest import REAL_CORPUS

# ---------------------------------------------------------------- shared with the browser tests

XSS_FLAG = "__nbatlas_xss"  # every payload sets this global (and most also open a dialog)
XSS_NAME = 'xss <img src=x onerror="window.__nbatlas_xss=1"> payloads.ipynb'


def _payload(where: str) -> str:
    return f"window.{XSS_FLAG}='{where}';window.parent.{XSS_FLAG}='{where}';alert('{where}')"


def xss_notebook(beacon: str = "http://127.0.0.1:9/xss-beacon.png") -> nbformat.NotebookNode:
    """A notebook whose markdown, HTML output, SVG image, markdown output, stream and error all carry
    <script>, event handlers and javascript: links; its HTML output and markdown also load ``beacon``
    (an image a browser would fetch if the page let it)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    md = (
        "# Payloads\n\n"
        f"<script>{_payload('markdown script')}</script>\n\n"
        f'<img src="x" onerror="{_payload("markdown onerror")}">\n\n'
        f"[a markdown link](javascript:{_payload('markdown link')})\n\n"
        f'<a id="js-link" href="javascript:{_payload("markdown a")}">an html link</a>\n\n'
        f'<svg onload="{_payload("inline svg")}"><script>{_payload("inline svg script")}</script></svg>\n\n'
        f'<iframe src="javascript:{_payload("markdown iframe")}"></iframe>\n\n'
        f'<form action="javascript:{_payload("markdown form")}"><button id="js-button">go</button></form>\n\n'
        f'<div style="background:url(javascript:alert(1))" onmouseover="{_payload("markdown hover")}">hover me</div>\n\n'
        f'<img src="{beacon}?from=markdown">\n'
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="120" height="80" onload="{_payload("svg onload")}">'
        f'<script>{_payload("svg script")}</script><rect width="120" height="80" fill="#c33"/>'
        f'<a href="javascript:{_payload("svg link")}"><text x="10" y="40" fill="#fff">svg</text></a></svg>'
    )
    html = (
        "<table><tr><th>a</th></tr><tr><td>1</td></tr></table>"
        f"<script>{_payload('html output script')}</script>"
        f'<img src="x" onerror="{_payload("html output onerror")}">'
        f'<a href="javascript:{_payload("html output link")}">link</a>'
        f'<img src="{beacon}?from=html-output">'
    )
    nb.cells = [
        nbformat.v4.new_markdown_cell(md),
        nbformat.v4.new_code_cell(
            "import matplotlib.pyplot as plt\nplt.plot([1, 2])\n'</script><script>alert(1)</script>'",
            execution_count=1,
            outputs=[
                nbformat.v4.new_output("display_data", data={"text/html": html, "text/plain": "<table>"}),
                nbformat.v4.new_output("display_data", data={"image/svg+xml": svg, "text/plain": "<Figure>"}),
                nbformat.v4.new_output("execute_result", data={
                    "text/markdown": f"**bold** <img src=x onerror=\"{_payload('markdown output')}\">",
                    "text/plain": "md"}, execution_count=1),
                nbformat.v4.new_output("stream", name="stdout", text=f"<script>{_payload('stream')}</script>\n"),
                nbformat.v4.new_output("error", ename="ValueError", evalue="<img src=x onerror=alert(1)>",
                                       traceback=[f"\x1b[31m<script>{_payload('traceback')}</script>\x1b[0m"]),
            ],
        ),
    ]
    return nb


def copy_real_corpus(server_url: str, real_corpus_url: str, tmp_path: Path) -> str:
    """A new database holding the real corpus: a copy of the session's ingested one (PostgreSQL
    copies it file by file in a second or two); if that database is busy, the corpus ingested anew."""
    name = f"nbatlas_wb_{uuid.uuid4().hex[:8]}"
    source = make_url(real_corpus_url).database
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        for attempt in range(6):
            try:
                with admin.connect() as conn:
                    conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{source}"'))
                return url
            except OperationalError as exc:
                if "being accessed by other users" not in str(exc):
                    raise
                gc.collect()  # pools of engines nobody holds any more close their connections
                time.sleep(0.5 * (attempt + 1))
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    from ingest.local import ingest_paths

    eng = create_engine(url)
    schema.upgrade(eng)
    with Session(eng) as session:
        ingest_paths([REAL_CORPUS], session=session, settings=Settings(home=tmp_path / "home", database_url=url))
    eng.dispose()
    return url


def drop_database(server_url: str, url: str) -> None:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def add_xss_notebook(url: str, tmp_path: Path, beacon: str | None = None) -> int:
    """Ingest the payload notebook (as `nbatlas ingest` does); returns its id."""
    from ingest.local import ingest_paths

    folder = tmp_path / "xss"
    folder.mkdir(exist_ok=True)
    path = folder / XSS_NAME
    nbformat.write(xss_notebook(beacon) if beacon else xss_notebook(), path)
    eng = create_engine(url)
    with Session(eng) as session:
        report = ingest_paths([path], session=session, settings=Settings(home=tmp_path / "home", database_url=url))
        assert report.notebooks_added == 1, report
        notebook_id = session.execute(
            text("SELECT notebook_id FROM source WHERE location LIKE :p"), {"p": "%xss%payloads.ipynb"}
        ).scalar_one()
    eng.dispose()
    return notebook_id


def setup_study(url: str) -> dict:
    """An annotator (with their token) and a codebook of three codes."""
    eng = create_engine(url)
    with Session(eng) as session:
        who, token = study.create_annotator(session=session, name="alice")
        book = study.create_codebook(session=session, name="purpose", description="why the plot is there")
        codes = [study.save_code(session=session, codebook_id=book["id"], name=n, description=d)
                 for n, d in (("diagnose", "checks a model"), ("explain", "explains a result"), ("explore", "looks at data"))]
        session.commit()
    eng.dispose()
    return {"annotator": who, "token": token, "codebook": book, "codes": codes}


# ---------------------------------------------------------------- this module's fixtures


@pytest.fixture(scope="module")
def corpus(server_url, real_corpus_url, tmp_path_factory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("workbench")
    url = copy_real_corpus(server_url, real_corpus_url, tmp)
    xss_id = add_xss_notebook(url, tmp)
    info = setup_study(url)
    yield {"url": url, "xss_notebook": xss_id, "home": tmp / "home", **info}
    drop_database(server_url, url)


@pytest.fixture(scope="module")
def client(corpus) -> Iterator[TestClient]:
    from api.app import create_app

    app = create_app(Settings(home=corpus["home"], database_url=corpus["url"]))
    with TestClient(app, base_url="http://testserver") as c:
        yield c


@pytest.fixture(scope="module")
def public_client(corpus) -> Iterator[TestClient]:
    from api.app import create_app

    settings = Settings(home=corpus["home"], database_url=corpus["url"], rate_limit_per_second=10_000,
                        rate_limit_burst=10_000)
    app = create_app(settings, public=True)
    with TestClient(app, base_url="http://testserver") as c:
        yield c


@pytest.fixture(scope="module")
def db(corpus) -> Iterator[Session]:
    eng = create_engine(corpus["url"])
    with Session(eng) as session:
        yield session
    eng.dispose()


def tags_of(html: str) -> list[tuple[str, dict[str, str | None]]]:
    """Every start tag of a page with its attributes, as a browser's parser reads them."""
    from html.parser import HTMLParser

    found: list[tuple[str, dict[str, str | None]]] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, dict(attrs)))

    Parser().feed(html)
    return found


def tiles_of(html: str) -> list[tuple[str, list[str]]]:
    """(image sha256, plot kinds) of each gallery tile."""
    out = []
    for block in re.findall(r'<li class="tile[^"]*">(.*?)</li>', html, re.S):
        sha = re.search(r'/plot/([0-9a-f]{64})', block).group(1)
        out.append((sha, re.findall(r'<span class="kind">([^<]+)</span>', block)))
    return out


SAME_ORIGIN = {"Origin": "http://testserver"}


def login(client: TestClient, token: str) -> None:
    r = client.post("/login", data={"token": token, "next": "/"}, headers=SAME_ORIGIN, follow_redirects=False)
    assert r.status_code == 303 and "nbatlas_annotator" in r.cookies


def gql(client: TestClient, query: str, variables: dict | None = None, **headers: str) -> dict:
    r = client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------- pages


def test_gallery_filters_and_pages(client: TestClient, db: Session):
    r = client.get("/")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and r.headers["x-content-type-options"] == "nosniff"
    first = tiles_of(r.text)
    assert len(first) == 48
    assert [sha for sha, _ in first] == [row["sha256"] for row in wb.gallery_page(session=db, first=48)[:48]]

    # next page: the following 48, none repeated
    nxt = re.search(r'<a rel="next" href="([^"]+)"', r.text).group(1).replace("&amp;", "&")
    second = tiles_of(client.get(nxt).text)
    assert [sha for sha, _ in second] == [row["sha256"] for row in wb.gallery_page(session=db, first=96)[48:96]]

    # one plot kind: every tile has it, and the count is the database's (independent SQL)
    expected = db.execute(text(
        "SELECT count(DISTINCT oi.image_sha256) FROM output_image oi JOIN output_plot p "
        "ON p.output_id = oi.output_id AND p.mime = oi.mime WHERE 'confusion_matrix' = ANY(p.plot_kinds)"
    )).scalar_one()
    r = client.get("/", params={"plot_kind": "confusion_matrix"})
    tiles = tiles_of(r.text)
    assert 0 < len(tiles) == expected and all("confusion_matrix" in kinds for _, kinds in tiles)
    assert f"{expected} plots" in r.text
    # the filter form offers the corpus's kinds with their counts
    assert re.search(r'<option value="confusion_matrix" selected>confusion_matrix \(\d+\)</option>', r.text)

    # full text: plots whose code (or the markdown before them) mentions it
    r = client.get("/", params={"q": "confusion_matrix"})
    found = {sha for sha, _ in tiles_of(r.text)}
    assert found and found == {row["sha256"] for row in wb.gallery_page(
        session=db, filter=wb.PlotFilter(text="confusion_matrix"), first=500)}
    assert client.get("/", params={"min_votes": "many"}).status_code == 400
    assert client.get("/", params={"after": "nonsense"}).status_code == 400


def test_gallery_kaggle_and_reproduction_filters(corpus, db: Session):
    """Competition, votes and reproduction filters, on metadata added to two notebooks of the copy."""
    from api.app import create_app
    from db.models import KaggleKernel, Run, RunRequest

    first, second = db.execute(text(
        "SELECT o.notebook_id FROM output_image oi JOIN output o ON o.id = oi.output_id "
        "GROUP BY o.notebook_id HAVING count(*) >= 2 ORDER BY o.notebook_id LIMIT 2")).scalars().all()
    for notebook_id, competition, votes in ((first, "titanic", 42), (second, "house-prices", 7)):
        source_id = db.execute(text("SELECT min(id) FROM source WHERE notebook_id = :n"), {"n": notebook_id}).scalar_one()
        db.add(KaggleKernel(source_id=source_id, notebook_id=notebook_id, origin="api", ref=f"someone/{competition}",
                            title=f"A {competition} notebook", votes=votes, competition_sources=[competition]))
    request = RunRequest(backend="local", image="-", timeout_s=60, limits={}, selection={})
    db.add(request)
    db.flush()
    db.add(Run(request_id=request.id, notebook_id=first, backend="local", status="error"))
    db.add(Run(request_id=request.id, notebook_id=second, backend="local", status="ok"))
    db.commit()

    def notebooks_shown(client, **params) -> set[int]:
        shas = [sha for sha, _ in tiles_of(client.get("/", params=params).text)]
        rows = db.execute(text(
            "SELECT DISTINCT o.notebook_id FROM output_image oi JOIN output o ON o.id = oi.output_id "
            "WHERE oi.image_sha256 = ANY(:s)"), {"s": shas}).scalars().all()
        db.rollback()
        return set(rows)

    app = create_app(Settings(home=corpus["home"], database_url=corpus["url"]))  # its filter values are fresh
    with TestClient(app) as client:
        page = client.get("/").text
        assert '<option value="titanic">titanic (1)</option>' in page and 'name="min_votes"' in page
        assert '<option value="error">error (1)</option>' in page
        assert notebooks_shown(client, competition="titanic") == {first}
        assert notebooks_shown(client, min_votes="5") == {first, second}
        assert notebooks_shown(client, min_votes="10") == {first}
        assert notebooks_shown(client, min_votes="50") == set()
        assert notebooks_shown(client, run_status="ok") == {second}
        # the Kaggle title names the notebook on its page
        assert "A titanic notebook" in client.get(f"/notebook/{first}").text


def test_plot_page(client: TestClient, db: Session):
    sha, cell_id, source = db.execute(text(
        "SELECT p.image_sha256, p.cell_id, c.source FROM output_plot p JOIN cell c ON c.id = p.cell_id "
        "WHERE 'confusion_matrix' = ANY(p.plot_kinds) ORDER BY p.output_id LIMIT 1"
    )).one()
    sha = sha.strip()
    r = client.get(f"/plot/{sha}")
    assert r.status_code == 200 and "content-security-policy" in r.headers
    assert f'src="/images/{sha}"' in r.text and "confusion_matrix" in r.text
    # the drawing cell, highlighted: its identifiers are in the page, inside pygments' markup
    words = re.findall(r"[A-Za-z_]{6,}", source)
    assert words and all(w in r.text for w in words[:5]) and 'class="hl"' in r.text
    assert "More like this" in r.text and "nbatlas embed" in r.text  # no vectors in this database yet
    # private mode: the coding panel, asking to log in
    assert 'id="coding"' in r.text and "Log in" in r.text
    assert client.get("/plot/" + "0" * 64).status_code == 404
    assert client.get("/plot/not-a-sha").status_code == 404


def test_notebook_page_renders_and_sanitises(client: TestClient, corpus, db: Session):
    r = client.get(f"/notebook/{corpus['xss_notebook']}")
    assert r.status_code == 200
    page = r.text
    # the only script is the workbench's own file; no handler, no javascript: URL survives
    tags = tags_of(page)
    assert [a for t, a in tags if t == "script"] == [{"src": "/static/workbench/workbench.js", "defer": None}]
    assert not [(t, a) for t, a in tags if any(name.startswith("on") for name in a)]
    assert not [(t, a) for t, a in tags if any((v or "").strip().lower().startswith("javascript:") for v in a.values())]
    assert not [t for t, _ in tags if t in ("svg", "object", "embed", "base", "math", "style")]
    assert not [(t, a) for t, a in tags if "style" in a]
    frames = [a for t, a in tags if t == "iframe"]
    assert frames and all("sandbox" in a and a["src"].startswith("/frames/output/") for a in frames)
    assert [a.get("action") for t, a in tags if t == "form"] == ["/", None]  # the search box, the help dialog
    # what the payloads said is shown as text, escaped
    assert "&lt;script&gt;" in page and "Payloads</h1>" in page
    # the HTML output only in a sandboxed frame; the SVG only as <img>
    frame = re.search(r'<iframe class="html-output" sandbox src="(/frames/output/(\d+))"', page)
    assert frame
    svg_sha = db.execute(text(
        "SELECT i.sha256 FROM image i JOIN output_image oi ON oi.image_sha256 = i.sha256 JOIN output o ON o.id = oi.output_id "
        "WHERE o.notebook_id = :n AND i.mime = 'image/svg+xml'"), {"n": corpus["xss_notebook"]}).scalar_one().strip()
    assert f'<img src="/images/{svg_sha}"' in page

    framed = client.get(frame.group(1))
    assert framed.status_code == 200
    csp = framed.headers["content-security-policy"]
    assert csp.startswith("sandbox;") and "default-src 'none'" in csp and "script-src" not in csp
    assert "<table>" in framed.text  # the output itself, as the notebook has it, inert by the CSP
    assert client.get("/frames/output/999999999").status_code == 404

    # a real notebook: cells in order with stage and plot-kind badges, images linked to their plot pages
    nb_id, n_cells = db.execute(text(
        "SELECT n.id, n.n_cells FROM notebook n WHERE n.n_image_outputs > 2 AND n.n_cells < 400 ORDER BY n.id LIMIT 1")).one()
    page = client.get(f"/notebook/{nb_id}").text
    positions = [int(p) for p in re.findall(r'<article class="cell [a-z]+" id="cell-(\d+)"', page)]
    assert positions == list(range(n_cells))
    assert 'class="stage"' in page and re.search(r'<a href="/plot/[0-9a-f]{64}"><img', page)
    assert client.get("/notebook/999999999").status_code == 404


def test_notebook_page_takes_a_sha256_too(client: TestClient, db: Session):
    # /plot/ takes a SHA-256 and the API, `nbatlas get` and /notebooks/SHA.ipynb name notebooks by theirs
    nb_id, sha = db.execute(text("SELECT id, sha256 FROM notebook WHERE n_image_outputs > 0 ORDER BY id LIMIT 1")).one()
    sha = sha.strip()
    for key in (sha, sha.upper(), sha[:12]):
        r = client.get(f"/notebook/{key}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"/notebook/{nb_id}", key
    assert client.get(f"/notebook/{sha}?after=3", follow_redirects=False).headers["location"] == f"/notebook/{nb_id}?after=3"
    page = client.get(f"/notebook/{sha}")
    assert page.status_code == 200 and 'id="cell-0"' in page.text

    # never the framework's JSON: an HTML page that says what the URL takes
    for path, status, words in (
        ("/notebook/not-a-notebook", 404, "row id (/notebook/12) or a SHA-256"),
        (f"/notebook/{'f' * 64}", 404, "no notebook has a SHA-256 starting with"),
        (f"/notebook/{nb_id}?after=x", 400, "not a cell position"),
        ("/notebook/99999999999999999999999", 404, "no notebook"),
    ):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == status and r.headers["content-type"].startswith("text/html"), path
        assert words in r.text, path
    ambiguous = db.execute(text("SELECT left(sha256, 4) FROM notebook GROUP BY 1 HAVING count(*) > 1 LIMIT 1")).scalar()
    if ambiguous:  # two notebooks sharing 4 hex digits: likely among 237, not certain
        r = client.get(f"/notebook/{ambiguous}")
        assert r.status_code == 400 and "give more digits" in r.text


# ---------------------------------------------------------------- login, token, GraphQL, forms


def test_login_and_annotator_token(client: TestClient, corpus):
    r = client.post("/login", data={"token": "nba_wrong", "next": "/"}, headers=SAME_ORIGIN, follow_redirects=False)
    assert r.status_code == 303 and "error=" in r.headers["location"] and "nbatlas_annotator" not in r.cookies
    # a login posted by another site is refused (login CSRF)
    r = client.post("/login", data={"token": corpus["token"]}, headers={"Origin": "http://evil.example"},
                    follow_redirects=False)
    assert r.status_code == 403
    r = client.post("/login", data={"token": corpus["token"], "next": "//evil.example/"}, headers=SAME_ORIGIN,
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"  # never sent elsewhere
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    client.cookies.clear()


def test_coding_through_graphql(client: TestClient, corpus, db: Session):
    sha = db.execute(text("SELECT image_sha256 FROM output_image ORDER BY output_id LIMIT 1")).scalar_one().strip()
    code = corpus["codes"][0]["id"]
    mutation = "mutation($c: Int!, $t: String!) { annotate(codeId: $c, target: $t) { id code annotator target } }"
    variables = {"c": code, "t": f"image:{sha}"}

    assert "needs an annotator" in gql(client, mutation, variables)["errors"][0]["message"]
    # a token that matches no annotator is named as such (a typo or a rotated token), not as a missing one
    unknown = gql(client, mutation, variables, **{"X-Annotator-Token": "nba_nope"})["errors"][0]["message"]
    assert "token not recognised" in unknown and "needs an annotator" not in unknown
    done = gql(client, mutation, variables, **{"X-Annotator-Token": corpus["token"]})["data"]["annotate"]
    assert (done["code"], done["annotator"], done["target"]) == ("diagnose", "alice", f"image:{sha}")

    # the login cookie alone does not write (a cross-site page could send it); with the pages' header it does
    login(client, corpus["token"])
    try:
        plain = client.post("/graphql", json={"query": mutation, "variables": {"c": corpus["codes"][1]["id"], "t": f"image:{sha}"}})
        assert "needs an annotator" in plain.json()["errors"][0]["message"]
        ok = gql(client, mutation, {"c": corpus["codes"][1]["id"], "t": f"image:{sha}"}, **{"X-Requested-With": "nbatlas-workbench"})
        assert ok["data"]["annotate"]["code"] == "explain"
        # the plot page now shows alice's two codes as applied (the state the script starts from)
        page = client.get(f"/plot/{sha}").text
        assert "coding as <b" in page and "alice" in page
        state = re.search(r'<script type="application/json" id="coding-state">(.*?)</script>', page, re.S).group(1)
        assert f'"image:{sha}"' in state and str(done["id"]) in state and str(ok["data"]["annotate"]["id"]) in state
    finally:
        client.cookies.clear()

    rows = db.execute(text(
        "SELECT c.name FROM annotation a JOIN code c ON c.id = a.code_id JOIN annotator w ON w.id = a.annotator_id "
        "WHERE a.image_sha256 = :s AND w.name = 'alice' ORDER BY c.name"), {"s": sha}).scalars().all()
    db.rollback()
    assert rows == ["diagnose", "explain"]

    # export through the API: the annotations connection, and the CSV route
    listed = gql(client, "{ annotations(codebook: \"purpose\", first: 1) { nodes { code annotator imageSha256 } "
                         "pageInfo { hasNextPage endCursor } } }")["data"]["annotations"]
    assert listed["nodes"] == [{"code": "diagnose", "annotator": "alice", "imageSha256": sha}] and listed["pageInfo"]["hasNextPage"]
    rest = gql(client, "query($a: String) { annotations(codebook: \"purpose\", after: $a) { nodes { code } } }",
               {"a": listed["pageInfo"]["endCursor"]})["data"]["annotations"]["nodes"]
    assert [n["code"] for n in rest] == ["explain"]
    exported = list(csv.DictReader(io.StringIO(client.get("/annotations.csv", params={"codebook": "purpose"}).text)))
    assert [(r["code"], r["image_sha256"]) for r in exported] == [("diagnose", sha), ("explain", sha)]

    removed = gql(client, "mutation($i: Int!) { removeAnnotation(id: $i) }", {"i": done["id"]},
                  **{"X-Annotator-Token": corpus["token"]})
    assert removed["data"]["removeAnnotation"] is True


def test_samples_and_codebooks_in_the_browser_forms(client: TestClient, corpus, db: Session):
    # without logging in, forms explain themselves and change nothing
    r = client.post("/samples", data={"name": "nope", "n": "3", "seed": "1"}, headers=SAME_ORIGIN, follow_redirects=False)
    assert r.status_code == 303 and "log+in" in r.headers["location"]
    login(client, corpus["token"])
    try:
        r = client.post("/samples", data={"name": "ui-pilot", "n": "6", "seed": "4", "unit": "image",
                                          "stratify_by": "stage", "plot_kind": "line",
                                          "codebook": str(corpus["codebook"]["id"])},
                        headers=SAME_ORIGIN, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/samples/ui-pilot"
        # a post from another site is not the annotator's
        evil = client.post("/codebooks", data={"name": "evil"}, headers={"Origin": "http://evil.example"},
                           follow_redirects=False)
        assert "log+in" in evil.headers["location"]
        bad = client.get("/samples/ui-pilot", params={"after": "abc"})
        assert bad.status_code == 400 and "text/html" in bad.headers["content-type"] and "not a sample position" in bad.text
        page = client.get("/samples/ui-pilot").text
        assert "nbatlas sample --name ui-pilot --n 6 --seed 4 --unit image --stratify-by stage --plot-kind line" in page
        start = re.search(r'id="start-coding" href="([^"]+)"', page).group(1).replace("&amp;", "&")
        item = client.get(start).text
        assert "Sample <b>ui-pilot</b>" in item and "item 1 of 6" in item and 'rel="next"' in item

        r = client.post(f"/codebooks/{corpus['codebook']['name']}/codes", data={"name": "decorate", "key": "j"},
                        headers=SAME_ORIGIN, follow_redirects=False)
        assert "taken+by+the+coding+pages" in r.headers["location"]
        r = client.post(f"/codebooks/{corpus['codebook']['name']}/codes", data={"name": "decorate", "description": "none"},
                        headers=SAME_ORIGIN, follow_redirects=False)
        assert "saved+code" in r.headers["location"]
        assert "decorate" in client.get(f"/codebooks/{corpus['codebook']['name']}").text
    finally:
        client.cookies.clear()
    # the same draw as the command line would make
    sample = study.get_sample(session=db, name="ui-pilot")
    spec = study.SampleSpec.from_dict(sample["spec"])
    assert spec.filter.plot_kind == ("line",) and spec.stratify_by == "stage" and sample["created_by_name"] == "alice"
    db.rollback()

    # and through GraphQL
    drawn = gql(client, 'mutation { drawSample(input: {name: "gql", n: 3, seed: 1, filter: {plot_kind: ["line"]}}) '
                        "{ name nItems command items { nodes { imageSha256 } } } }",
                **{"X-Annotator-Token": corpus["token"]})["data"]["drawSample"]
    assert drawn["nItems"] == 3 and len(drawn["items"]["nodes"]) == 3 and "--plot-kind line" in drawn["command"]


# ---------------------------------------------------------------- public mode


def test_public_mode_is_read_only(public_client: TestClient, corpus, db: Session):
    r = public_client.get("/")
    assert r.status_code == 200 and len(tiles_of(r.text)) == 48
    assert 'href="/samples"' not in r.text and "Log in" not in r.text and "read-only" in r.text
    sha = tiles_of(r.text)[0][0]
    page = public_client.get(f"/plot/{sha}").text
    assert 'id="coding"' not in page and "coding-state" not in page
    assert public_client.get(f"/notebook/{corpus['xss_notebook']}").status_code == 200
    for path in ("/samples", "/codebooks", "/login", "/annotations.csv", "/samples/ui-pilot"):
        assert public_client.get(path).status_code == 404, path
    for path in ("/login", "/samples", "/codebooks", "/logout"):
        assert public_client.post(path, data={"token": corpus["token"]}, headers=SAME_ORIGIN).status_code in (404, 405)
    # no study in the public GraphQL schema, and no way to write
    body = public_client.post("/graphql", json={"query": 'mutation { annotate(codeId: 1, target: "image:x") { id } }'},
                              headers={"X-Annotator-Token": corpus["token"]}).json()
    assert body.get("errors") and not body.get("data")
    body = public_client.post("/graphql", json={"query": "{ samples { name } }"}).json()
    assert "Cannot query field 'samples'" in body["errors"][0]["message"]
    before = db.execute(text("SELECT count(*) FROM annotation")).scalar_one()
    db.rollback()
    assert before == db.execute(text("SELECT count(*) FROM annotation")).scalar_one()
