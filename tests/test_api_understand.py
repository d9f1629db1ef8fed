"""Code understanding through the GraphQL API, on the real corpus: every answer is checked against
the database with SQL written here (or recomputed from the cells themselves), not against the
query functions the API calls.

In-process (httpx's ASGI transport), on the session's real-corpus database: what is tested is the
schema, the filters, the facets and the loaders, not how the server is started (tests/test_api.py).
"""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import create_engine, event, text

from api.app import create_app
from db.settings import Settings
from db.vocab import PLOT_KINDS, STAGES
from tests.test_api_schema import gql


@pytest.fixture(scope="module")
def app(real_corpus_url, tmp_path_factory):
    app = create_app(Settings(home=tmp_path_factory.mktemp("understand") / "home", database_url=real_corpus_url), public=False)
    yield app
    app.state.db.dispose()


@pytest.fixture(scope="module")
def public_app(real_corpus_url, tmp_path_factory):
    app = create_app(Settings(home=tmp_path_factory.mktemp("understand_pub") / "home", database_url=real_corpus_url), public=True)
    yield app
    app.state.db.dispose()


@pytest.fixture(scope="module")
def sql(real_corpus_url):
    eng = create_engine(real_corpus_url)
    with eng.connect() as conn:
        yield lambda q, **kw: conn.execute(text(q), kw).all()
    eng.dispose()


def data(app, query: str, variables: dict | None = None) -> dict:
    body = gql(app, query, variables)
    assert "errors" not in body, body["errors"]
    return body["data"]


def all_pages(app, query: str, field: str, variables: dict) -> list[dict]:
    """Every node of a root connection, page by page (``query`` takes $after and selects pageInfo)."""
    nodes, after = [], None
    while True:
        page = data(app, query, {**variables, "after": after})[field]
        nodes += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]


IMAGES = """query($f: ImageFilter, $after: String) { images(first: 25, after: $after, filter: $f) {
    totalCount pageInfo { hasNextPage endCursor } nodes { sha256 plotKinds } } }"""
PLOTS = """query($f: PlotFilter, $after: String) { plots(first: 40, after: $after, filter: $f) {
    totalCount pageInfo { hasNextPage endCursor } nodes { mime plotKinds image { sha256 } output { dbId } } } }"""


@pytest.mark.parametrize("kind,library", [("roc_curve", "xgboost"), ("shap", "xgboost"), ("learning_curve", "keras"),
                                          ("confusion_matrix", "sklearn")])
def test_images_of_a_kind_in_notebooks_that_import_a_library(app, sql, kind, library):
    expected = {r[0].strip() for r in sql(
        "SELECT p.image_sha256 FROM output_plot p JOIN notebook_analysis na ON na.notebook_id = p.notebook_id "
        "WHERE :kind = ANY(p.plot_kinds) AND :lib = ANY(na.libraries) AND p.image_sha256 IS NOT NULL",
        kind=kind, lib=library)}
    assert expected, f"the real corpus has {kind} images in notebooks importing {library}"
    f = {"plotKind": [kind], "notebook": {"library": [library]}}
    images = all_pages(app, IMAGES, "images", {"f": f})
    assert {i["sha256"] for i in images} == expected and len(images) == len(expected)
    assert all(kind in i["plotKinds"] for i in images)
    assert data(app, IMAGES, {"f": f})["images"]["totalCount"] == len(expected)

    figures = sql(
        "SELECT DISTINCT p.output_id FROM output_plot p JOIN notebook_analysis na ON na.notebook_id = p.notebook_id "
        "WHERE :kind = ANY(p.plot_kinds) AND :lib = ANY(na.libraries)", kind=kind, lib=library)
    plots = all_pages(app, PLOTS, "plots", {"f": f})
    assert {p["output"]["dbId"] for p in plots} == {r[0] for r in figures}
    assert {p["image"]["sha256"] for p in plots if p["image"]} == expected


def test_count_of_plot_kinds_per_stage_and_the_facets(app, sql):
    rows = data(app, "{ plotCounts(by: [STAGE, PLOT_KIND], first: 1000) { values count } }")["plotCounts"]
    expected = sql(
        "SELECT ca.stage, k, count(DISTINCT p.output_id) FROM output_plot p "
        "LEFT JOIN cell_analysis ca ON ca.cell_id = p.cell_id LEFT JOIN LATERAL unnest(p.plot_kinds) k ON true "
        "GROUP BY 1, 2")
    assert {tuple(r["values"]): r["count"] for r in rows} == {(s, k): n for s, k, n in expected}
    assert len(rows) == len(expected) > 20
    assert [r["count"] for r in rows] == sorted((r["count"] for r in rows), reverse=True)
    # a null stage (and no kind): the figures of notebooks whose code is not analysed (the corpus's Julia ones)
    assert {s for s, _ in map(tuple, (r["values"] for r in rows))} <= set(STAGES) | {None}
    assert all(k is None for s, k in map(tuple, (r["values"] for r in rows)) if s is None)

    # the same, for notebooks importing sklearn, grouped the other way round
    rows = data(app, '{ plotCounts(by: [PLOT_KIND, STAGE], filter: {notebook: {library: ["sklearn"]}}) { values count } }')
    expected = sql(
        "SELECT k, ca.stage, count(DISTINCT p.output_id) FROM output_plot p "
        "JOIN notebook_analysis na ON na.notebook_id = p.notebook_id AND 'sklearn' = ANY(na.libraries) "
        "LEFT JOIN cell_analysis ca ON ca.cell_id = p.cell_id LEFT JOIN LATERAL unnest(p.plot_kinds) k ON true "
        "GROUP BY 1, 2")
    assert {tuple(r["values"]): r["count"] for r in rows["plotCounts"]} == {(k, s): n for k, s, n in expected}

    facets = data(app, """{ kinds: facets(field: PLOT_KIND, first: 100) { value count }
        stages: facets(field: STAGE) { value count } libraries: facets(field: LIBRARY, first: 1000) { value count }
        xgb: facets(field: PLOT_KIND, filter: {library: ["xgboost"]}) { value count } }""")
    assert {f["value"]: f["count"] for f in facets["kinds"]} == dict(sql(
        "SELECT k, count(DISTINCT output_id) FROM output_plot, unnest(plot_kinds) k GROUP BY k"))
    assert {f["value"]: f["count"] for f in facets["stages"]} == dict(sql(
        "SELECT ca.stage, count(*) FROM cell_analysis ca JOIN cell c ON c.id = ca.cell_id WHERE c.cell_type = 'code' "
        "GROUP BY 1"))
    assert {f["value"]: f["count"] for f in facets["libraries"]} == dict(sql(
        "SELECT l, count(*) FROM notebook_analysis, unnest(libraries) l GROUP BY l"))
    assert {f["value"]: f["count"] for f in facets["xgb"]} == dict(sql(
        "SELECT k, count(DISTINCT p.output_id) FROM output_plot p JOIN notebook_analysis na "
        "ON na.notebook_id = p.notebook_id, unnest(p.plot_kinds) k WHERE 'xgboost' = ANY(na.libraries) GROUP BY k"))
    assert set(f["value"] for f in facets["kinds"]) <= set(PLOT_KINDS)


def test_plot_library_counts_come_from_the_plotting_calls(app, sql):
    rows = data(app, '{ plotCounts(by: [PLOT_LIBRARY], filter: {plotKind: ["confusion_matrix", "heatmap"]}) { values count } }')
    got = {r["values"][0]: r["count"] for r in rows["plotCounts"]}
    expected = Counter()
    for output_id, calls in sql("SELECT DISTINCT output_id, plot_calls FROM output_plot "
                                "WHERE plot_kinds && ARRAY['confusion_matrix', 'heatmap']"):
        libs = {c.split(".")[0] for c in calls if "." in c and not c.startswith("<")}
        for lib in libs or {None}:
            expected[lib] += 1
    assert got == dict(expected) and "seaborn" in got


CELLS = """query($f: CellFilter, $after: String) { cells(first: 100, after: $after, filter: $f) {
    pageInfo { hasNextPage endCursor } nodes { dbId libraries stage plotKinds
    analysis { callNames isVisualisation parsed imports { module alias } calls { name text line args keywordArgs { name value } } } } } }"""


def test_cells_filtered_by_stage_library_kind_and_call(app, sql):
    f = {"stage": ["evaluation", "explanation"], "library": ["sklearn"], "isVisualisation": True}
    cells = all_pages(app, CELLS, "cells", {"f": f})
    expected = sql("SELECT ca.cell_id, ca.libraries, ca.stage, ca.plot_kinds, ca.call_names, ca.calls FROM cell_analysis ca "
                   "WHERE ca.stage IN ('evaluation', 'explanation') AND 'sklearn' = ANY(ca.libraries) AND ca.is_visualisation")
    assert len(expected) > 10
    by_id = {r[0]: r for r in expected}
    assert {c["dbId"] for c in cells} == set(by_id) and len(cells) == len(by_id)
    for c in cells:
        _, libraries, stage, kinds, call_names, calls = by_id[c["dbId"]]
        assert (c["libraries"], c["stage"], c["plotKinds"]) == (libraries, stage, kinds)
        assert c["analysis"]["callNames"] == call_names and c["analysis"]["isVisualisation"]
        assert [(x["name"], x["text"], x["line"], x["args"], {k["name"]: k["value"] for k in x["keywordArgs"]})
                for x in c["analysis"]["calls"]] == [
            (x["name"], x["text"], x["line"], x.get("args", []), x.get("kwargs", {})) for x in calls or ()]

    # resolved calls: every cell calling seaborn.heatmap, which the source shows through its alias
    cells = all_pages(app, CELLS, "cells", {"f": {"call": ["seaborn.heatmap"]}})
    expected = {r[0] for r in sql("SELECT cell_id FROM cell_analysis WHERE 'seaborn.heatmap' = ANY(call_names)")}
    assert {c["dbId"] for c in cells} == expected and len(expected) > 3
    for c in cells:
        heatmap = [x for x in c["analysis"]["calls"] if x["name"] == "seaborn.heatmap"]
        aliases = {i["alias"] for i in c["analysis"]["imports"] if i["module"] == "seaborn"}
        assert heatmap and all(x["text"].endswith("heatmap") for x in heatmap)
        assert not aliases or any(x["text"].split(".")[0] in aliases for x in heatmap)


def _clip(source: str) -> str:
    source = source.strip()
    return source if len(source) <= 4000 else source[:3999] + "…"


def test_an_images_context_is_the_markdown_around_the_cell_that_drew_it(app, sql):
    """Recomputed from the notebook's own cells: the nearest non-empty markdown before the drawing
    cell, and the next cell when it is markdown."""
    q = """query($after: String) { images(first: 100, after: $after, filter: {plotKind: ["confusion_matrix", "roc_curve",
        "learning_curve", "feature_importance"]}) { pageInfo { hasNextPage endCursor }
        nodes { sha256 context { before after } plots { cell { dbId position notebook { dbId } } } } } }"""
    images = all_pages(app, q, "images", {})
    assert len(images) > 30
    checked_before = checked_after = 0
    for image in images:
        first = image["plots"][0]["cell"]
        cells = sql("SELECT position, cell_type, source FROM cell WHERE notebook_id = :n ORDER BY position",
                    n=first["notebook"]["dbId"])
        before = [s for p, t, s in cells if p < first["position"] and t == "markdown" and s.strip()]
        after = [s for p, t, s in cells if p == first["position"] + 1 and t == "markdown" and s.strip()]
        assert image["context"]["before"] == (_clip(before[-1]) if before else None)
        assert image["context"]["after"] == (_clip(after[0]) if after else None)
        checked_before += bool(before)
        checked_after += bool(after)
    assert checked_before > 20 and checked_after > 5


def test_a_page_with_every_understanding_field_costs_a_constant_number_of_statements(app):
    query = """query($n: Int) { notebooks(first: $n) { nodes { libraries kaggle { ref } sources { kaggle { votes } }
        cells(first: 100) { nodes { stage libraries plotKinds analysis { callNames calls { name } }
          outputs { plots { plotKinds stage cell { dbId } } images { plotKinds context { before } plots { mime } } } } } } } }"""
    statements: list[str] = []
    engine = app.state.db.engine

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        costs = {}
        for n in (5, 40):
            statements.clear()
            nodes = data(app, query, {"n": n})["notebooks"]["nodes"]
            costs[n] = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    plots = [p for nb in nodes for c in nb["cells"]["nodes"] for o in c["outputs"] for p in o["plots"]]
    assert len(plots) > 30 and sum(bool(c["stage"]) for nb in nodes for c in nb["cells"]["nodes"]) > 700, costs
    # notebooks, libraries, kaggle, sources, source kaggle, cells, analyses, outputs, output plots, images,
    # image plots, producing cells' analyses are already loaded: one statement each, whatever the page size
    assert costs[5] == costs[40] <= 12, costs


def test_vocabulary_errors_and_public_page_caps(app, public_app):
    vocabulary = data(app, "{ vocabulary { plotKinds stages } }")["vocabulary"]
    assert vocabulary == {"plotKinds": list(PLOT_KINDS), "stages": list(STAGES)}
    body = gql(public_app, '{ images(filter: {plotKind: ["roc"]}) { nodes { sha256 } } }')
    assert body["errors"][0]["message"].startswith("unknown plot kind 'roc'; known: confusion_matrix, roc_curve")
    # the other closed vocabularies refuse a typo too, nested filters included, rather than match nothing
    for query, said in (
        ('{ cells(filter: {cellType: ["cod"]}) { nodes { id } } }', "cell_type: unknown value 'cod' (did you mean 'code'?)"),
        ('{ images(filter: {mime: ["image/jpg"]}) { nodes { sha256 } } }', "mime: unknown value 'image/jpg'"),
        ('{ plots(filter: {notebook: {sourceKind: ["kagle"]}}) { nodes { mime } } }', "source_kind: unknown value 'kagle' (did you mean 'kaggle'?)"),
    ):
        message = gql(public_app, query)["errors"][0]["message"]
        assert message.startswith(said) and "valid values:" in message, message
    assert data(app, '{ cells(first: 1, filter: {cellType: ["code"]}) { nodes { id } } }')["cells"]["nodes"]
    body = gql(public_app, "{ plots(first: 101) { nodes { mime } } }")
    assert "first must be between 1 and 100" in body["errors"][0]["message"]
    body = gql(public_app, "{ plotCounts(by: [STAGE], first: 500) { count } }")
    assert "first must be between 1 and 100" in body["errors"][0]["message"]
    body = gql(public_app, "{ plotCounts(by: [STAGE, STAGE]) { count } }")
    assert "distinct dimensions" in body["errors"][0]["message"]
    # read-only but readable: the public server answers the same as the private one
    q = '{ plotCounts(by: [PLOT_KIND], filter: {stage: ["evaluation"]}) { values count } }'
    assert data(public_app, q) == data(app, q)


def test_plots_total_count_is_how_many_nodes_the_pages_hold(app, sql):
    # an output showing a plot in two formats (PNG and SVG, or an image and a plotly figure) is two
    # nodes; the count once counted outputs and came out short of the list
    pairs = sql("SELECT count(*), count(DISTINCT output_id) FROM output_plot")[0]
    assert pairs[0] > pairs[1], "the real corpus has outputs showing a figure in more than one format"
    for f in (None, {"stage": ["exploration"]}, {"plotKind": ["line"], "interactive": False}):
        plots = all_pages(app, PLOTS.replace("first: 40", "first: 100"), "plots", {"f": f})
        assert data(app, PLOTS, {"f": f})["plots"]["totalCount"] == len(plots) > 0
        assert len({(p["output"]["dbId"], p["mime"]) for p in plots}) == len(plots)
    assert len(all_pages(app, PLOTS.replace("first: 40", "first: 100"), "plots", {"f": None})) == pairs[0]
