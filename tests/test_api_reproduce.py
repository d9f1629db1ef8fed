"""Reproduction runs through the API: runs recorded by the real reproduce job (local backend, on this
machine's kernel) are read back over GraphQL with their status, scores, failure class, cells linked
to the originals, facets, and as a notebook filter; in public mode too.

Three tiny deterministic notebooks (one drawing a plot), executed once by nbclient so their stored
outputs are real, then reproduced by ``ingest.reproduce.jobs.reproduce_one``.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from sqlalchemy import create_engine, text
from sqlmodel import Session

from api.app import create_app
from db import schema
from db.settings import Settings
from db.server import create_database, drop_database
from tests.test_api_schema import gql

PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2]);\nplt.show()"


def _notebook(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# a tiny notebook")] + [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


def make_reproduced(server_url, tmp_path_factory):
    """(database url, {name: notebook id}, request id, home): three notebooks ingested and reproduced once.
    The session fixture ``reproduced`` (tests/conftest.py) runs it once for this module and test_report."""
    from db.queries import reproduce as q
    from ingest.local import ingest_paths
    from ingest.reproduce.jobs import WorkerDeps, reproduce_one
    from ingest.reproduce.local_backend import LocalBackend

    folder = tmp_path_factory.mktemp("tiny")
    same = _notebook("print(6 * 7)", "total = sum(range(10))\ntotal", PLOT)
    NotebookClient(same, timeout=120, kernel_name="python3").execute()
    missing = _notebook("import numpy as np", "import nbatlas_no_such_module_xyz", "print('never')")
    changed = _notebook("print('now')")
    changed.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="then\n")]
    changed.cells[1].execution_count = 1
    names = {"same": same, "missing": missing, "changed": changed}
    for name, nb in names.items():
        nbformat.write(nb, folder / f"{name}.ipynb")

    db_name = f"nbatlas_runs_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, db_name)
    engine = create_engine(url)
    schema.upgrade(engine)
    home = tmp_path_factory.mktemp("runs-home")
    with Session(engine) as session:
        ingest_paths([folder], session=session, settings=Settings(home=home, database_url=url, workers=1),
                     cell_analyzer=None)
        ids = {Path(loc).stem: nid for nid, loc in session.execute(
            text("SELECT notebook_id, location FROM source"))}
        backend = LocalBackend(trust_notebooks=True)
        request_id = q.create_request(session=session, backend="local", image=backend.image, timeout_s=120,
                                      limits={}, data_dir=None, selection={}, n_notebooks=3)
        session.commit()
    deps = WorkerDeps(engine=engine, trust_notebooks=True)
    statuses = {name: reproduce_one(deps, request_id=request_id, notebook_id=ids[name]) for name in names}
    assert statuses == {"same": "ok", "missing": "error", "changed": "ok"}, statuses
    engine.dispose()
    yield url, ids, request_id, home
    drop_database(server_url, db_name)


@pytest.fixture(scope="module")
def app(reproduced):
    url, _, _, home = reproduced
    app = create_app(Settings(home=home, database_url=url), public=False)
    yield app
    app.state.db.dispose()


def data(app, query: str, variables: dict | None = None) -> dict:
    body = gql(app, query, variables)
    assert "errors" not in body, body["errors"]
    return body["data"]


RUN = """dbId status backend image ranWithoutError sameResults sameResultsIgnoringImages samePlots
    failureClass failureDetail ename failingCellPosition wallS runS nCodeCells nCellsRun nCellsOk
    notebook { dbId } request { dbId backend }"""


def test_runs_carry_status_scores_and_failure_class(app, reproduced):
    _, ids, request_id, _ = reproduced
    runs = data(app, f"{{ runs(first: 10) {{ totalCount nodes {{ {RUN} }} }} }}")["runs"]
    assert runs["totalCount"] == 3
    by_notebook = {r["notebook"]["dbId"]: r for r in runs["nodes"]}
    same, missing, changed = by_notebook[ids["same"]], by_notebook[ids["missing"]], by_notebook[ids["changed"]]

    assert same["status"] == "OK" and same["ranWithoutError"] is True
    assert (same["sameResults"], same["sameResultsIgnoringImages"], same["samePlots"]) == (True, True, True)
    assert same["nCodeCells"] == same["nCellsRun"] == same["nCellsOk"] == 3
    assert same["runS"] > 0 and same["wallS"] >= same["runS"]
    assert same["failureClass"] is None and same["request"] == {"dbId": request_id, "backend": "local"}

    assert missing["status"] == "ERROR" and missing["ranWithoutError"] is False
    assert (missing["ename"], missing["failureClass"]) == ("ModuleNotFoundError", "missing_module")
    assert missing["failureDetail"] == "nbatlas_no_such_module_xyz"
    assert missing["failingCellPosition"] == 2  # the markdown cell is position 0

    assert changed["status"] == "OK" and changed["ranWithoutError"] is True
    assert changed["sameResults"] is False and changed["samePlots"] is None  # no plots to compare


def test_a_run_links_each_reproduced_cell_to_its_original(app, reproduced):
    _, ids, _, _ = reproduced
    query = """query($f: NotebookFilter) { notebooks(filter: $f) { nodes {
        runs { id status failingCell { position source }
               cells { position status durationS comparison textSame imagesSame nImagesOriginal nImagesReproduced
                       maxPhashDistance difference
                       original { position source outputs { text images { sha256 } } }
                       outputs { outputType text images { sha256 width } } } }
        cells { nodes { position reproductions { status comparison run { dbId } } } }
    } } }"""
    same = data(app, query, {"f": {"ids": [str(ids["same"])]}})["notebooks"]["nodes"][0]
    (run,) = same["runs"]
    cells = run["cells"]
    assert [c["position"] for c in cells] == [0, 1, 2, 3]
    assert cells[0]["status"] == "SKIPPED" and cells[0]["original"]["source"] == "# a tiny notebook"
    printed = cells[1]
    assert printed["status"] == "OK" and printed["comparison"] == "same" and printed["durationS"] is not None
    assert printed["outputs"][0]["text"] == printed["original"]["outputs"][0]["text"] == "42\n"
    plot = cells[3]
    assert plot["nImagesOriginal"] == plot["nImagesReproduced"] == 1 and plot["imagesSame"] is True
    assert plot["maxPhashDistance"] <= 8
    reproduced_image = next(i for o in plot["outputs"] for i in o["images"])
    assert reproduced_image["width"] > 0
    assert run["failingCell"] is None
    # and from the original's side: every code cell has its one reproduction
    for cell in same["cells"]["nodes"]:
        assert [r["run"]["dbId"] for r in cell["reproductions"]] == [int(_db_id(run["id"]))]

    missing = data(app, query, {"f": {"ids": [str(ids["missing"])]}})["notebooks"]["nodes"][0]
    (run,) = missing["runs"]
    assert run["failingCell"] == {"position": 2, "source": "import nbatlas_no_such_module_xyz"}
    assert [c["status"] for c in run["cells"]] == ["SKIPPED", "OK", "ERROR", "NOT_RUN"]

    changed = data(app, query, {"f": {"ids": [str(ids["changed"])]}})["notebooks"]["nodes"][0]
    cell = changed["runs"][0]["cells"][1]
    assert cell["comparison"] == "different" and cell["textSame"] is False
    assert "then" in cell["difference"] and "now" in cell["difference"]


def _db_id(global_id: str) -> str:
    import base64

    return base64.b64decode(global_id).decode().split(":", 1)[1]


def test_facets_and_filters_by_reproducibility(app, reproduced):
    _, ids, request_id, _ = reproduced
    facets = data(app, """{ status: facets(field: RUN_STATUS) { value count }
                            failure: facets(field: FAILURE_CLASS) { value count } }""")
    assert sorted((f["value"], f["count"]) for f in facets["status"]) == [("error", 1), ("ok", 2)]
    assert sorted((f["value"] or "", f["count"]) for f in facets["failure"]) == [("", 2), ("missing_module", 1)]

    run_facets = data(app, """query($r: [ID!]) { runFacets(fields: [STATUS, FAILURE_CLASS, SAME_RESULTS, SAME_PLOTS],
                                                            filter: {requestId: $r}) { field values { value count } } }""",
                      {"r": [str(request_id)]})["runFacets"]
    got = {f["field"]: sorted((v["value"] or "", v["count"]) for v in f["values"]) for f in run_facets}
    assert got == {
        "STATUS": [("error", 1), ("ok", 2)],
        "FAILURE_CLASS": [("", 2), ("missing_module", 1)],
        "SAME_RESULTS": [("", 1), ("false", 1), ("true", 1)],  # the failed run had no outputs to compare
        "SAME_PLOTS": [("", 2), ("true", 1)],
    }

    def notebooks(flt: dict) -> set[int]:
        found = data(app, "query($f: NotebookFilter) { notebooks(filter: $f) { totalCount nodes { dbId } } }", {"f": flt})
        assert found["notebooks"]["totalCount"] == len(found["notebooks"]["nodes"])
        return {n["dbId"] for n in found["notebooks"]["nodes"]}

    assert notebooks({"reproduction": {"status": ["OK"]}}) == {ids["same"], ids["changed"]}
    assert notebooks({"reproduction": {"failureClass": ["missing_module"]}}) == {ids["missing"]}
    assert notebooks({"reproduction": {"sameResults": True}}) == {ids["same"]}
    assert notebooks({"reproduction": {"ranWithoutError": True, "samePlots": True}}) == {ids["same"]}
    assert notebooks({"reproduction": {"requestId": [str(request_id + 1)], "status": ["OK"]}}) == set()

    filtered = data(app, '{ runs(filter: {status: [ERROR]}) { totalCount nodes { notebook { dbId } } } }')["runs"]
    assert filtered["totalCount"] == 1 and filtered["nodes"][0]["notebook"]["dbId"] == ids["missing"]
    by_notebook = data(app, '{ runs(filter: {notebook: {reproduction: {sameResults: false}}}) { totalCount } }')
    assert by_notebook["runs"]["totalCount"] == 1


def test_a_typo_in_a_failure_class_filter_is_refused(app, reproduced):
    """failureClass is a closed vocabulary (db.vocab.FAILURE_CLASSES): a typo would match nothing, silently."""
    body = gql(app, 'query { notebooks(filter: {reproduction: {failureClass: ["missing_modul"]}}) { totalCount } }')
    message = body["errors"][0]["message"]
    assert "reproduction.failure_class: unknown value 'missing_modul'" in message
    assert "did you mean 'missing_module'" in message and "library_api_change" in message
    ok = data(app, '{ notebooks(filter: {reproduction: {failureClass: ["missing_module", "network"]}}) { totalCount } }')
    assert ok["notebooks"]["totalCount"] == 1
    runs = gql(app, '{ runs(filter: {failureClass: ["missing_modul"]}) { totalCount } }')
    assert runs["errors"][0]["message"].startswith("failure_class: unknown value 'missing_modul' (did you mean 'missing_module'?)")
    assert data(app, '{ runs(filter: {failureClass: ["missing_module"]}) { totalCount } }')["runs"]["totalCount"] == 1


def test_requests_pages_summary_and_node_lookup(app, reproduced):
    _, _, request_id, _ = reproduced
    requests = data(app, """{ runRequests { totalCount nodes { id dbId backend nNotebooks
        summary { nNotebooks nRuns ok error sameResults samePlots withPlots okRate sameResultsRate samePlotsRate }
        runs(first: 2) { nodes { dbId } pageInfo { hasNextPage endCursor } } } } }""")["runRequests"]
    assert requests["totalCount"] == 1
    (req,) = requests["nodes"]
    assert req["dbId"] == request_id and req["nNotebooks"] == 3
    s = req["summary"]
    assert (s["nRuns"], s["ok"], s["error"], s["sameResults"], s["samePlots"], s["withPlots"]) == (3, 2, 1, 1, 1, 1)
    assert s["okRate"] == pytest.approx(2 / 3, abs=1e-3) and s["samePlotsRate"] == 1.0
    page = req["runs"]
    assert len(page["nodes"]) == 2 and page["pageInfo"]["hasNextPage"]
    rest = data(app, "query($id: ID!, $after: String) { node(id: $id) { ... on RunRequest { runs(after: $after) { nodes { dbId } } } } }",
                {"id": req["id"], "after": page["pageInfo"]["endCursor"]})["node"]["runs"]["nodes"]
    all_ids = [n["dbId"] for n in page["nodes"] + rest]
    assert len(all_ids) == 3 == len(set(all_ids)) and all_ids == sorted(all_ids)

    first = data(app, "{ runs(first: 1) { nodes { id dbId traceback logTail environment } } }")["runs"]["nodes"][0]
    again = data(app, "query($id: ID!) { node(id: $id) { ... on Run { dbId } } run(id: $id) { dbId } }", {"id": first["id"]})
    assert again["node"]["dbId"] == again["run"]["dbId"] == first["dbId"]
    assert first["environment"] and "python" in json.dumps(first["environment"]).lower()


def test_public_server_reads_runs_and_cannot_write(reproduced):
    url, ids, _, home = reproduced
    public = create_app(Settings(home=home, database_url=url), public=True)
    try:
        body = gql(public, '{ runs(filter: {failureClass: ["missing_module"]}) { nodes { notebook { dbId } status } } }')
        assert body["data"]["runs"]["nodes"] == [{"notebook": {"dbId": ids["missing"]}, "status": "ERROR"}]
        too_many = gql(public, "{ runs(first: 100000) { nodes { dbId } } }")
        assert "page size limit" in too_many["errors"][0]["message"]
    finally:
        public.state.db.dispose()
