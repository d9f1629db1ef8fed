"""Kaggle metadata and mining runs through the GraphQL API.

One module database, filled the way a user fills it: ``mine_kaggle`` with the real ``kaggle`` client
against the fake Kaggle server (tests/fake_kaggle.py), three competitions, the three most voted
notebooks of each (one of them a malformed blob). Expected answers come from the fake's catalogue
(what Kaggle said) or from SQL written here.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import Session

from api.app import create_app
from db import schema
from db.settings import Settings
from db.server import create_database, drop_database
from tests.fake_kaggle import FakeKaggle, build_catalog
from tests.test_api_schema import gql
from tests.test_kaggle import make_client

COMPETITIONS = ["titanic", "house-prices-advanced-regression-techniques", "spaceship-titanic", "digit-recognizer"]
LIMIT = 3


def add_kernels_with_plots(catalog, competition: str, n: int) -> None:
    """The catalogue's notebooks are the corpus's smallest, which draw nothing: make the ``n`` smallest
    real notebooks that show images the most voted of ``competition``."""
    import json

    from tests.fake_kaggle import REAL_CORPUS, FakeKernel, smallest_notebooks

    top = max(k.votes for k in catalog.listing(competition))
    used = {k.file for k in catalog.kernels}
    for row in smallest_notebooks(len(list(REAL_CORPUS.glob("*.ipynb")))):
        source = (REAL_CORPUS / row["file"]).read_text(encoding="utf-8")
        outputs = [o for c in json.loads(source).get("cells", []) for o in c.get("outputs", [])]
        if row["file"] in used or not any(m.startswith("image/") for o in outputs for m in o.get("data", {})):
            continue
        top += 1
        catalog.kernels.append(FakeKernel(id=3000 + n, ref=f"plotter/plots-{n}", title=f"plots {n}", votes=top, version=1,
                                          source=source, competitions=[competition], file=row["file"]))
        n -= 1
        if not n:
            return


@pytest.fixture(scope="module")
def mined(server_url, tmp_path_factory):
    """(database url, catalogue, pulled kernels that became notebooks, the malformed one, run id)."""
    from ingest.kaggle.mine import MiningSpec, mine_kaggle

    name = f"nbatlas_kaggle_api_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    eng = create_engine(url)
    schema.upgrade(eng)
    home = tmp_path_factory.mktemp("kaggle_api")
    catalog = build_catalog()
    add_kernels_with_plots(catalog, "digit-recognizer", 2)
    with FakeKaggle(catalog) as fake, pytest.MonkeyPatch.context() as mp:
        for key, value in fake.client_env(home).items():
            mp.setenv(key, value)
        with Session(eng) as session:
            report = mine_kaggle(MiningSpec(competitions=COMPETITIONS, sort_by="votes", limit=LIMIT), session=session,
                                 settings=Settings(home=home / "home", database_url=url), client=make_client())
            session.commit()
    eng.dispose()
    listed = {k.ref: k for slug in COMPETITIONS for k in catalog.listing(slug)[:LIMIT]}
    malformed = [k for k in listed.values() if not k.source.rstrip().endswith("}")]
    assert len(malformed) == 1 and report.invalid == 1
    pulled = [k for ref, k in listed.items() if k is not malformed[0]]
    yield url, catalog, pulled, malformed[0], report.run_id
    drop_database(server_url, name)


@pytest.fixture(scope="module")
def apps(mined, tmp_path_factory):
    url = mined[0]
    made = {public: create_app(Settings(home=tmp_path_factory.mktemp("kapi") / "home", database_url=url), public=public)
            for public in (False, True)}
    yield made
    for app in made.values():
        app.state.db.dispose()


@pytest.fixture(scope="module")
def sql(mined):
    eng = create_engine(mined[0])
    with eng.connect() as conn:
        yield lambda q, **kw: conn.execute(text(q), kw).all()
    eng.dispose()


def data(app, query: str, variables: dict | None = None) -> dict:
    body = gql(app, query, variables)
    assert "errors" not in body, body["errors"]
    return body["data"]


NOTEBOOKS = """query($f: NotebookFilter) { notebooks(first: 100, filter: $f) { totalCount nodes {
    kaggle { ref title author votes version competitions dockerImage origin url miningRun { id } }
    sources { kind location kaggle { ref } } } } }"""


def refs(app, f: dict) -> set[str]:
    nodes = data(app, NOTEBOOKS, {"f": f})["notebooks"]["nodes"]
    return {k["ref"] for n in nodes for k in n["kaggle"]}


def test_every_pulled_notebook_carries_its_kaggle_metadata(apps, mined):
    _, _, pulled, _, run_id = mined
    nodes = data(apps[False], NOTEBOOKS, {"f": {"kaggleOrigin": ["api"]}})["notebooks"]["nodes"]
    by_ref = {n["kaggle"][0]["ref"]: n for n in nodes}
    assert set(by_ref) == {k.ref for k in pulled} and all(len(n["kaggle"]) == 1 for n in nodes)
    for k in pulled:
        meta = by_ref[k.ref]["kaggle"][0]
        assert (meta["title"], meta["author"], meta["votes"], meta["version"]) == (k.title, k.author, k.votes, k.version)
        assert meta["competitions"] == k.competitions and meta["dockerImage"] == k.docker_image
        assert meta["url"] == f"https://www.kaggle.com/code/{k.ref}" and meta["miningRun"] == {"id": run_id}
        # the download is a place too (a local file): only the Kaggle source has Kaggle metadata
        sources = {s["kind"]: s for s in by_ref[k.ref]["sources"]}
        assert sources["kaggle"] == {"kind": "kaggle", "location": k.ref, "kaggle": {"ref": k.ref}}
        assert all(s["kaggle"] is None for kind, s in sources.items() if kind != "kaggle")


def test_filters_by_competition_author_votes_and_run(apps, mined, sql):
    _, _, pulled, _, run_id = mined
    app = apps[False]
    for slug in COMPETITIONS:
        assert refs(app, {"competition": [slug]}) == {k.ref for k in pulled if slug in k.competitions}
    assert refs(app, {"competition": COMPETITIONS[:2]}) == {k.ref for k in pulled if set(k.competitions) & set(COMPETITIONS[:2])}
    votes = sorted(k.votes for k in pulled)
    low, high = votes[2], votes[-3]
    assert refs(app, {"minVotes": low, "maxVotes": high}) == {k.ref for k in pulled if low <= k.votes <= high}
    assert refs(app, {"competition": ["titanic"], "minVotes": low}) == {
        k.ref for k in pulled if "titanic" in k.competitions and k.votes >= low}
    author = pulled[0].author
    assert refs(app, {"author": [author]}) == {k.ref for k in pulled if k.author == author}
    assert refs(app, {"miningRun": [run_id]}) == {k.ref for k in pulled}
    assert refs(app, {"miningRun": [run_id + 1]}) == set()
    # Kaggle criteria combine with the rest of the notebook filter
    with_images = {r[0] for r in sql("SELECT kk.ref FROM kaggle_kernel kk JOIN notebook n ON n.id = kk.notebook_id "
                                     "WHERE n.n_image_outputs > 0")}
    assert refs(app, {"kaggleOrigin": ["api"], "hasImages": True}) == with_images
    # and hold for images and cells through their notebook
    images = data(app, '{ images(filter: {notebook: {competition: ["titanic"]}}) { totalCount } }')["images"]["totalCount"]
    assert images == sql(
        "SELECT count(DISTINCT oi.image_sha256) FROM output_image oi JOIN output o ON o.id = oi.output_id "
        "JOIN kaggle_kernel kk ON kk.notebook_id = o.notebook_id WHERE 'titanic' = ANY(kk.competition_sources)")[0][0]


def test_facets_and_votes_range(apps, mined, sql):
    _, _, pulled, _, _ = mined
    app = apps[False]
    got = data(app, """{ c: facets(field: COMPETITION) { value count } a: facets(field: AUTHOR) { value count }
        v: facets(field: VOTES) { value count } o: facets(field: KAGGLE_ORIGIN) { value count }
        t: facets(field: AUTHOR, filter: {competition: ["titanic"]}) { value count }
        votesRange { min max } titanic: votesRange(filter: {competition: ["titanic"]}) { min max } }""")
    facet = {name: {f["value"]: f["count"] for f in got[name]} for name in "cavot"}
    assert facet["c"] == dict(Counter(c for k in pulled for c in k.competitions))
    assert facet["a"] == dict(Counter(k.author for k in pulled))
    assert facet["t"] == dict(Counter(k.author for k in pulled if "titanic" in k.competitions))
    assert facet["o"] == {"api": len(pulled)}

    def bucket(v: int) -> str:
        return "0" if v == 0 else "1-9" if v < 10 else "10-99" if v < 100 else "100-999" if v < 1000 else "1000+"

    assert facet["v"] == dict(Counter(bucket(k.votes) for k in pulled))
    assert got["votesRange"] == {"min": min(k.votes for k in pulled), "max": max(k.votes for k in pulled)}
    titanic = [k.votes for k in pulled if "titanic" in k.competitions]
    assert got["titanic"] == {"min": min(titanic), "max": max(titanic)}

    # plot kinds per competition: the Kaggle and understanding dimensions together
    rows = data(app, "{ plotCounts(by: [COMPETITION, PLOT_KIND]) { values count } }")["plotCounts"]
    expected = sql("SELECT c, k, count(DISTINCT p.output_id) FROM output_plot p "
                   "LEFT JOIN LATERAL (SELECT DISTINCT unnest(competition_sources) c FROM kaggle_kernel "
                   "WHERE notebook_id = p.notebook_id) kc ON true LEFT JOIN LATERAL unnest(p.plot_kinds) k ON true GROUP BY 1, 2")
    assert {tuple(r["values"]): r["count"] for r in rows} == {(c, k): n for c, k, n in expected}
    assert any(c == "digit-recognizer" and k for c, k, _ in expected)


RUN = """query($id: Int!, $after: String, $n: Int) { miningRun(id: $id) { id kind status command spec host pid
    listed selected pulled failed
    listings(first: $n, after: $after) { pageInfo { hasNextPage endCursor } nodes { scope rank ref votes selected } }
    pulls(first: 50) { nodes { ref status reason path notebook { kaggle { ref } } } }
    invalid: pulls(status: ["invalid"]) { nodes { ref } } } }"""


def test_mining_run_record_paged_and_public_mode_hides_the_machine(apps, mined, sql):
    _, catalog, pulled, malformed, run_id = mined
    listing, after = [], None
    while True:
        run = data(apps[False], RUN, {"id": run_id, "after": after, "n": 5})["miningRun"]
        listing += run["listings"]["nodes"]
        if not run["listings"]["pageInfo"]["hasNextPage"]:
            break
        after = run["listings"]["pageInfo"]["endCursor"]
    assert run["status"] == "finished" and run["kind"] == "kaggle" and run["spec"]["limit"] == LIMIT
    assert run["host"] and run["pid"] and "--limit 3" in run["command"]
    for slug in COMPETITIONS:
        rows = [r for r in listing if r["scope"] == f"competition:{slug}"]
        # --limit lists only as many pages as it needs: a prefix of the listing, in vote order
        assert len(rows) >= LIMIT and [(r["ref"], r["votes"], r["rank"]) for r in rows] == [
            (k.ref, k.votes, i) for i, k in enumerate(catalog.listing(slug)[:len(rows)], start=1)]
        assert [r["selected"] for r in rows] == [i < LIMIT for i in range(len(rows))]
    assert len(listing) == run["listed"] == sql("SELECT count(*) FROM mining_listing WHERE run_id = :r", r=run_id)[0][0]
    assert run["selected"] == sum(r["selected"] for r in listing)

    pulls = {p["ref"]: p for p in run["pulls"]["nodes"]}
    assert set(pulls) == {k.ref for k in pulled} | {malformed.ref}
    assert pulls[malformed.ref]["status"] == "invalid" and pulls[malformed.ref]["notebook"] is None
    assert run["invalid"]["nodes"] == [{"ref": malformed.ref}]
    for k in pulled:
        assert pulls[k.ref]["status"] == "pulled" and pulls[k.ref]["path"]
        assert pulls[k.ref]["notebook"]["kaggle"] == [{"ref": k.ref}]

    runs = data(apps[False], "{ miningRuns { totalCount nodes { id } } }")["miningRuns"]
    assert runs == {"totalCount": 1, "nodes": [{"id": run_id}]}

    public = data(apps[True], RUN, {"id": run_id, "n": 5})["miningRun"]
    assert public["host"] is None and public["pid"] is None
    assert all(p["path"] is None for p in public["pulls"]["nodes"])
    assert public["listings"]["nodes"] == listing[:5] and public["pulled"] == run["pulled"]
    body = gql(apps[True], RUN, {"id": run_id, "n": 101})
    assert "first must be between 1 and 100" in body["errors"][0]["message"]
    body = gql(apps[True], "mutation { deleteNotebooks(ids: []) { deleted } }")
    assert body["errors"]  # no Mutation type on the public server
