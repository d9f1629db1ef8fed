"""Public read-only mode over HTTP: `nbatlas serve --public`, logged in as a read-only role.

Each abusive request is refused with a clear error (and quickly: the bound below is generous, speed
is measured in benchmarks); the server keeps answering normal queries during and after; SQL typed
into any input writes nothing.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from analysis.client import GraphQLErrors, NbatlasClient
from api.schema import PUBLIC_SCHEMA_FILE
from tests.test_api import TIMEOUT, attempt_injections, http_get, serve, table_counts

GENEROUS = 5.0  # seconds: "quickly" on a loaded 2-core CI machine; the benchmark measures real speed
NORMAL = "{ notebooks(first: 3) { nodes { sha256 cells(first: 2) { nodes { cellType } } } } }"


@pytest.fixture(scope="module")
def readonly_url(real_corpus_url: str) -> Iterator[str]:
    """A login role that may only SELECT, as a deployment would give the public server."""
    role, password = f"nbatlas_reader_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    url = make_url(real_corpus_url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
        conn.execute(text(f'GRANT CONNECT ON DATABASE "{url.database}" TO {role}'))
        conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))
        conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
    yield url.set(username=role, password=password).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f"DROP OWNED BY {role}"))
        conn.execute(text(f"DROP ROLE {role}"))
    admin.dispose()


@pytest.fixture(scope="module")
def public_url(real_corpus_url, readonly_url, tmp_path_factory) -> Iterator[str]:
    env = {
        "NBATLAS_READONLY_DATABASE_URL": readonly_url,
        # this module's many requests all come from 127.0.0.1; the limiter has its own test below
        "NBATLAS_RATE_LIMIT_PER_SECOND": "10000",
        "NBATLAS_RATE_LIMIT_BURST": "10000",
    }
    with serve(real_corpus_url, tmp_path_factory.mktemp("public") / "home", "--public", env=env) as base:
        yield base


def http_options(url: str, **kwargs) -> httpx.Response:
    return httpx.options(url, timeout=TIMEOUT, **kwargs)


def post(base: str, query: str, variables: dict | None = None, **kwargs) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    r = httpx.post(f"{base}/graphql", json={"query": query, "variables": variables or {}}, timeout=TIMEOUT, **kwargs)
    return r, time.perf_counter() - start


def error_of(r: httpx.Response) -> str:
    body = r.json()
    return body["errors"][0]["message"] if "errors" in body else body["error"]


def nested(levels: int) -> str:
    inner = "id"
    for _ in range(levels // 4):
        inner = f"notebook {{ cells(first: 1) {{ nodes {{ {inner} }} }} }}"
    return f"{{ cells(first: 1) {{ nodes {{ {inner} }} }} }}"


ABUSE = {
    "mutation": ('mutation { deleteNotebooks(ids: ["1"]) { deleted } }', "mutation operation is not supported"),
    "nested 50 levels": (nested(50), "exceeds maximum operation depth of 10"),
    "1000 aliases": ("{ " + " ".join(f"a{i}: stats {{ cells }}" for i in range(1000)) + " }", "more than 2000 tokens"),
    "40 aliases": ("{ " + " ".join(f"a{i}: __typename" for i in range(40)) + " }", "40 aliases found. Allowed: 30"),
    "100 kB query": ("{ stats { cells } }" + " " * 100_000, "this server accepts at most 32,768"),
    "1 MB query": ("{ stats { cells } }" + " " * 1_000_000, "request body is larger than this server accepts"),
    "first: 100000": ("{ cells(first: 100000) { nodes { id } } }", "first must be between 1 and 100"),
    "nested first: 100000": (
        "{ notebooks(first: 1) { nodes { cells(first: 100000) { nodes { id } } } } }", "first must be between 1 and 100"
    ),
    "first: 100 nested four times": (
        "{ notebooks(first: 100) { nodes { cells(first: 100) { nodes { outputs { images { outputs(first: 100) { id } } } } } } } }",
        "this server answers at most 20,000 per query",
    ),
    "big pages through variables and a fragment": (
        "query($n: Int) { notebooks(first: $n) { nodes { ...C } } } "
        "fragment C on Notebook { cells(first: 100) { nodes { outputs { dbId } } } }",
        "this server answers at most 20,000 per query",
    ),
    "repeated fields": ("{ stats { " + "cells " * 1900 + "} }", "too complex to validate"),
}


@pytest.mark.parametrize("name", list(ABUSE))
def test_public_mode_refuses_abuse_quickly_and_clearly(public_url, name):
    query, message = ABUSE[name]
    r, seconds = post(public_url, query, {"n": 50} if "$n" in query else None)
    assert message in error_of(r)
    assert seconds < GENEROUS
    if name == "1 MB query":
        assert r.status_code == 413
    else:
        assert r.json().get("data") is None


def test_a_full_page_of_full_pages_is_within_the_result_cap(public_url):
    # 100 notebooks with 100 cells each: about 10,000 objects, what a researcher's script pages through
    r, _ = post(public_url, "{ notebooks(first: 100) { nodes { sha256 cells(first: 100) { nodes { cellType } } } } }")
    body = r.json()
    assert "errors" not in body and len(body["data"]["notebooks"]["nodes"]) > 0


def test_public_schema_has_no_mutation_type(public_url):
    r, _ = post(public_url, "{ __schema { mutationType { name } queryType { name } } }")
    assert r.json()["data"]["__schema"] == {"mutationType": None, "queryType": {"name": "Query"}}
    assert "type Mutation" not in PUBLIC_SCHEMA_FILE.read_text()
    assert "deleteNotebooks" not in PUBLIC_SCHEMA_FILE.read_text()


def test_server_keeps_answering_during_and_after_abuse(public_url):
    stop = threading.Event()
    refused: list[int] = []

    def abuse() -> None:
        while not stop.is_set():
            for query, _ in ABUSE.values():
                r, _ = post(public_url, query)
                refused.append(r.status_code)

    threads = [threading.Thread(target=abuse) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        answers = [post(public_url, NORMAL)[0] for _ in range(8)]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert refused, "the abuse never ran"
    for r in answers + [post(public_url, NORMAL)[0]]:
        assert r.status_code == 200 and "errors" not in r.json()
        assert len(r.json()["data"]["notebooks"]["nodes"]) == 3


def test_sql_in_inputs_changes_nothing_in_public_mode(public_url, real_corpus_url):
    db = create_engine(real_corpus_url)
    before = table_counts(db)
    attempt_injections(public_url)
    assert table_counts(db) == before
    db.dispose()


def test_cors_is_open_for_get_and_post(public_url):
    pre = http_options(
        f"{public_url}/graphql",
        headers={"Origin": "https://example.org", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"},
    )
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "*"
    assert {"GET", "POST"} <= {m.strip() for m in pre.headers["access-control-allow-methods"].split(",")}
    r = http_get(f"{public_url}/graphql", params={"query": "{ stats { notebooks } }"}, headers={"Origin": "https://x.org"})
    assert r.headers["access-control-allow-origin"] == "*" and r.json()["data"]["stats"]["notebooks"] > 0


def test_the_read_only_role_cannot_write_even_when_asked_to(readonly_url):
    import psycopg
    from psycopg import errors

    conninfo = make_url(readonly_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("BEGIN READ WRITE")
            conn.execute("DELETE FROM image")


# --- a strict public server: 1 ms statement timeout, a small rate limit ------------------------


@pytest.fixture(scope="module")
def strict_url(real_corpus_url, tmp_path_factory) -> Iterator[str]:
    env = {"NBATLAS_STATEMENT_TIMEOUT_MS": "1", "NBATLAS_RATE_LIMIT_PER_SECOND": "0.5", "NBATLAS_RATE_LIMIT_BURST": "8"}
    with serve(real_corpus_url, tmp_path_factory.mktemp("strict") / "home", "--public", env=env) as base:
        yield base


def test_a_query_over_the_statement_timeout_is_cancelled_with_a_clear_masked_error(strict_url):
    # counting the mime types of every output takes far more than 1 ms
    r, seconds = post(strict_url, "{ facets(field: MIME_TYPE) { value count } }")
    message = error_of(r)
    assert "statement timeout (1 ms)" in message and "cancelled" in message
    for leak in ("SELECT", "psycopg", "Traceback", "unnest", "/work"):
        assert leak not in r.text
    assert seconds < GENEROUS
    again, _ = post(strict_url, "{ __typename }")
    assert again.json() == {"data": {"__typename": "Query"}}


def test_rate_limit_per_client_ignores_x_forwarded_for_unless_trusted(strict_url):
    statuses = []
    for i in range(14):
        # a different X-Forwarded-For each time: without --trust-proxy it must not buy new tokens
        r = http_get(f"{strict_url}/graphql", params={"query": "{ __typename }"},
                      headers={"X-Forwarded-For": f"10.0.0.{i}"})
        statuses.append(r.status_code)
    assert 429 in statuses and statuses[0] == 200
    limited = http_get(f"{strict_url}/graphql", params={"query": "{ __typename }"})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1 and "too many requests" in limited.json()["error"]
    # the message gives the same whole seconds as the header (it said "retry in 0.0 s" beside Retry-After: 1)
    assert limited.json()["error"].endswith(f"retry in {limited.headers['retry-after']} s")
    assert http_get(f"{strict_url}/health").status_code == 200  # health checks are never limited


def test_client_waits_out_the_rate_limit(strict_url):
    with NbatlasClient(strict_url, max_retries=10) as c:
        for _ in range(2):  # the bucket is empty after the test above: each waits for a token
            assert c.query("{ __typename }") == {"__typename": "Query"}
        with pytest.raises(GraphQLErrors, match="first must be between 1 and 100"):
            c.query("{ cells(first: 101) { nodes { id } } }")


# --- what the public server leaves out of a mining run ------------------------------------------


def test_public_mining_runs_leave_out_local_folders(fresh_database, tmp_path):
    """An archive import records the folders it read (spec.root, spec.meta): the public server
    nulls them, as it nulls host and pid, and hides paths in a failed run's error."""
    import shutil

    from sqlmodel import Session

    from db.settings import Settings
    from ingest.kaggle.archives import ArchiveSelection, import_archive
    from tests.fake_kaggle import REAL_CORPUS, smallest_notebooks

    url = fresh_database()
    root = tmp_path / "private-folder" / "kgtorrent"
    (root / "notebooks").mkdir(parents=True)
    for i, row in enumerate(smallest_notebooks(4)[2:]):
        shutil.copyfile(REAL_CORPUS / row["file"], root / "notebooks" / f"user{i}_slug-{i}.ipynb")
    settings = Settings(home=tmp_path / "home", database_url=url)
    eng = create_engine(url)
    with Session(eng) as session:
        report = import_archive("kgtorrent", root, meta_dir=root, selection=ArchiveSelection(), session=session,
                                settings=settings)
        session.commit()
        # a failed run's message names the file it choked on, as archives.py records it
        session.execute(text("UPDATE mining_run SET error = :e WHERE id = :i"),
                        {"e": f"FileNotFoundError: [Errno 2] No such file or directory: '{root}/Users.csv' "
                              "(see https://www.kaggle.com/code/user0/slug-0)", "i": report.run_id})
        session.commit()
    eng.dispose()
    query = "{ miningRuns { nodes { id kind host pid spec resolved error } } }"
    answers = _on_private_and_public_apps(url, tmp_path, query)
    (private,), (public,) = (answers[p]["miningRuns"]["nodes"] for p in (False, True))
    assert private["spec"]["root"] == str(root) and private["host"] and str(root) in private["error"]
    assert public["kind"] == "kgtorrent" and public["host"] is None and public["pid"] is None
    assert public["spec"]["root"] is None and public["spec"]["meta"] is None
    # every other option of the sample is still there, unchanged
    assert {k: v for k, v in public["spec"].items() if k not in ("root", "meta")} == {
        k: v for k, v in private["spec"].items() if k not in ("root", "meta")}
    assert public["resolved"] == private["resolved"]
    assert public["error"] == ("FileNotFoundError: [Errno 2] No such file or directory: '<path>' "
                               "(see https://www.kaggle.com/code/user0/slug-0)")
    assert "private-folder" not in json.dumps(public)


# --- what the public server leaves out of a source's location ------------------------------------

SOURCES = """query($where: NotebookFilter) { notebooks(first: 100, filter: $where) {
    totalCount nodes { dbId sources { kind location member } } } }"""


@pytest.fixture(scope="module")
def private_app(real_corpus_url, tmp_path_factory):
    """The owner's own (private) server over the same corpus, in process."""
    from api.app import create_app
    from db.settings import Settings

    app = create_app(Settings(home=tmp_path_factory.mktemp("private") / "home", database_url=real_corpus_url),
                     public=False)
    yield app
    app.state.db.dispose()


def _sources(body: dict) -> list[dict]:
    assert "errors" not in body, body
    return [s for n in body["data"]["notebooks"]["nodes"] for s in n["sources"]]


def test_public_sources_show_file_names_not_the_ingesting_machines_folders(public_url, private_app):
    """The owner sees where each file lay; the public server shows its name only, in GraphQL, in the
    export and on the workbench's notebook page, and its locationContains cannot probe the folders."""
    from tests.test_api_schema import gql, run

    private = _sources(gql(private_app, SOURCES))
    r, _ = post(public_url, SOURCES)
    public = _sources(r.json())
    assert private and len(public) == len(private)
    files = [s for s in private if s["kind"] in ("local", "archive")]
    assert files and all(s["location"].startswith("/") for s in files)  # the real corpus: local files
    by_name = {s["location"]: s["location"].rsplit("/", 1)[-1] for s in private}
    assert [s["location"] for s in public] == [
        by_name[s["location"]] if s["kind"] != "kaggle" else s["location"] for s in private]
    assert all("/" not in s["location"] for s in public if s["kind"] in ("local", "archive"))
    assert [s["member"] for s in public] == [s["member"] for s in private]

    # the export's locations column: the same file names, no folder
    def export_locations(text: str) -> dict[int, list[str]]:
        return {row["id"]: row["locations"] for row in map(json.loads, text.splitlines())}

    private_export = export_locations(run(private_app, "GET", "/export/notebooks.ndjson").text)
    r = http_get(f"{public_url}/export/notebooks.ndjson")
    assert r.status_code == 200, r.text
    public_export = export_locations(r.text)
    assert public_export.keys() == private_export.keys()
    assert any("/" in loc for locs in private_export.values() for loc in locs)
    assert not any("/" in loc for locs in public_export.values() for loc in locs)
    assert all(public_export[i] == [loc.rsplit("/", 1)[-1] for loc in locs] for i, locs in private_export.items())

    # the workbench's notebook page: "found at" the file name
    first = next(s for s in files if re.fullmatch(r"[\w.-]+", s["location"].rsplit("/", 1)[-1]))
    notebook_id = next(n["dbId"] for n in gql(private_app, SOURCES)["data"]["notebooks"]["nodes"]
                       if first in n["sources"])
    folder = first["location"].rsplit("/", 1)[0]
    assert folder in run(private_app, "GET", f"/notebook/{notebook_id}").text
    page = http_get(f"{public_url}/notebook/{notebook_id}")
    assert page.status_code == 200 and by_name[first["location"]] in page.text
    assert folder not in page.text

    # locationContains: a folder every file lies in matches them all privately, none publicly; a piece
    # of a file name still matches there
    names = [s["location"].rsplit("/", 1)[-1].lower() for s in files]
    shared = set.intersection(*(set(s["location"].split("/")[1:-1]) for s in files))
    probes = sorted((d for d in shared if d and not any(d.lower() in n for n in names)), key=len)
    assert probes, shared  # a folder name no file name contains
    probe = {"where": {"locationContains": probes[-1]}}
    everything = gql(private_app, SOURCES)["data"]["notebooks"]["totalCount"]
    assert gql(private_app, SOURCES, probe)["data"]["notebooks"]["totalCount"] == everything > 0
    r, _ = post(public_url, SOURCES, probe)
    assert r.json()["data"]["notebooks"] == {"totalCount": 0, "nodes": []}
    r = http_get(f"{public_url}/export/notebooks.ndjson", params={"location_contains": probes[-1]})
    assert r.status_code == 200 and r.text == ""
    piece = by_name[first["location"]].removesuffix(".ipynb")[-15:]  # a piece of one file name
    r, _ = post(public_url, SOURCES, {"where": {"locationContains": piece}})
    found = r.json()["data"]["notebooks"]
    assert found["totalCount"] >= 1 and any(s["location"] == by_name[first["location"]]
                                            for n in found["nodes"] for s in n["sources"])


def test_shown_location_in_sql_agrees_with_the_python_one(engine):
    """Archives (and the archive importers' folders) are cut to their file name as local files are;
    a Kaggle ref stays whole. The export and the filter use the SQL form, GraphQL and the workbench
    the Python one."""
    from sqlalchemy import String, column, select, values

    from db.queries.filters import location_shown, shown_location

    rows = [("local", "/home/me/corpus/a.ipynb"), ("archive", "/data/dumps/notebooks.zip"),
            ("kgtorrent", "/data/kgtorrent"), ("kaggle", "someone/some-slug"), ("local", "plain.ipynb")]
    s = values(column("kind", String), column("location", String), name="s").data(rows)
    with engine.connect() as conn:
        shown = conn.execute(select(shown_location(s))).scalars().all()
    assert shown == ["a.ipynb", "notebooks.zip", "kgtorrent", "someone/some-slug", "plain.ipynb"]
    assert shown == [location_shown(k, loc, hide_folders=True) for k, loc in rows]
    assert [location_shown(k, loc, hide_folders=False) for k, loc in rows] == [loc for _, loc in rows]


def test_public_archive_sources_and_kaggle_spools_leave_out_local_folders(fresh_database, tmp_path):
    """An archive import's sources lie in the folder it read, and a Kaggle download's source records
    its spool file: the public server shows the archive folder's name, the member as it is, and no
    spool path."""
    import shutil

    from sqlmodel import Session

    from db.settings import Settings
    from ingest.kaggle.archives import ArchiveSelection, import_archive
    from tests.fake_kaggle import REAL_CORPUS, smallest_notebooks

    url = fresh_database()
    root = tmp_path / "private-folder" / "kgtorrent"
    (root / "notebooks").mkdir(parents=True)
    for i, row in enumerate(smallest_notebooks(2)):
        shutil.copyfile(REAL_CORPUS / row["file"], root / "notebooks" / f"user{i}_slug-{i}.ipynb")
    eng = create_engine(url)
    with Session(eng) as session:
        import_archive("kgtorrent", root, meta_dir=root, selection=ArchiveSelection(), session=session,
                       settings=Settings(home=tmp_path / "home", database_url=url))
        # what `nbatlas mine kaggle` records beside a pulled kernel (ingest/kaggle/mine.py)
        session.execute(text("UPDATE source SET metadata = :m WHERE kind = 'kgtorrent'"),
                        {"m": json.dumps({"version": 3, "spool": f"{root}/notebooks/user0_slug-0.ipynb"})})
        session.commit()
    eng.dispose()
    query = ("{ notebooks(first: 10) { nodes { sources { kind location member metadata } } } "
             'located: notebooks(filter: {locationContains: "private-folder"}) { totalCount } }')
    seen = _on_private_and_public_apps(url, tmp_path, query)

    private = [s for n in seen[False]["notebooks"]["nodes"] for s in n["sources"] if s["kind"] == "kgtorrent"]
    public = [s for n in seen[True]["notebooks"]["nodes"] for s in n["sources"] if s["kind"] == "kgtorrent"]
    assert len(private) == len(public) == 2 and seen[False]["located"]["totalCount"] == 2
    assert {s["location"] for s in private} == {str(root)} and private[0]["metadata"]["spool"].startswith(str(root))
    assert [s["location"] for s in public] == ["kgtorrent", "kgtorrent"]
    assert sorted(s["member"] for s in public) == sorted(s["member"] for s in private) == [
        "notebooks/user0_slug-0.ipynb", "notebooks/user1_slug-1.ipynb"]
    assert [s["metadata"] for s in public] == [{"version": 3, "spool": None}] * 2
    assert seen[True]["located"]["totalCount"] == 0
    assert "private-folder" not in json.dumps(seen[True])


def _on_private_and_public_apps(url: str, tmp_path, query: str) -> dict[bool, dict]:
    """The data of one query asked of a private app and of a public one over the same database."""
    from api.app import create_app
    from db.settings import Settings
    from tests.test_api_schema import gql

    answers = {}
    for public in (False, True):
        app = create_app(Settings(home=tmp_path / f"home-{public}", database_url=url), public=public)
        try:
            body = gql(app, query)
        finally:
            app.state.db.dispose()
        assert "errors" not in body, body
        answers[public] = body["data"]
    return answers
