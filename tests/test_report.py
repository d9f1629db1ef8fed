"""`nbatlas report` on the real corpus: the numbers in its CSVs equal direct SQL counts."""

from __future__ import annotations

import base64
import os
import csv
import re
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import cli_env
from tests.test_api import NBATLAS, TIMEOUT, serve

EVALUATION = ["confusion_matrix", "roc_curve", "precision_recall_curve", "learning_curve", "calibration_curve"]
EXPLAINABILITY = ["shap", "feature_importance", "partial_dependence"]


@pytest.fixture(scope="module")
def db(real_corpus_url: str):
    eng = create_engine(real_corpus_url)
    yield eng
    eng.dispose()


def rows(db, sql: str, **params) -> list[tuple]:
    with db.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


@pytest.fixture(scope="module")
def report_dir(real_corpus_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `nbatlas report` without --server: it starts (and stops) its own private API."""
    base = tmp_path_factory.mktemp("report")
    out = base / "out"
    done = subprocess.run(
        [NBATLAS, "report", "--out", str(out)], env=cli_env(real_corpus_url, base / "home"),
        capture_output=True, text=True, timeout=TIMEOUT * 3,
    )
    assert done.returncode == 0, done.stderr
    assert "report.html" in done.stderr
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_libraries_per_stage_equal_sql(report_dir, db):
    got = {(r["stage"], r["library"]): int(r["figures"]) for r in read_csv(report_dir / "libraries_per_stage.csv")}
    want = dict(
        ((stage, lib), n)
        for stage, lib, n in rows(db, """
            SELECT coalesce(ca.stage, 'unknown'), split_part(c, '.', 1), count(DISTINCT p.output_id)
            FROM output_plot p LEFT JOIN cell_analysis ca ON ca.cell_id = p.cell_id, unnest(p.plot_calls) c
            WHERE c LIKE '%.%' AND c NOT LIKE '<%' GROUP BY 1, 2""")
    )
    assert len(want) > 5 and want.get(("exploration", "matplotlib"), 0) > 0
    assert got == want


def test_plot_kinds_per_stage_and_evaluation_share_equal_sql(report_dir, db):
    got = {(r["stage"], r["plot_kind"]): int(r["figures"]) for r in read_csv(report_dir / "plot_kinds_per_stage.csv")}
    want = dict(
        ((stage, kind), n)
        for stage, kind, n in rows(db, """
            SELECT coalesce(ca.stage, 'unknown'), k, count(DISTINCT p.output_id)
            FROM output_plot p LEFT JOIN cell_analysis ca ON ca.cell_id = p.cell_id, unnest(p.plot_kinds) k
            GROUP BY 1, 2""")
    )
    assert len(want) > 10
    assert got == want

    share = {r["plot_kind"]: r for r in read_csv(report_dir / "evaluation_plot_share.csv")}
    total = rows(db, "SELECT count(*) FROM notebook")[0][0]
    for kind in [*EVALUATION, "any evaluation plot"]:
        kinds = EVALUATION if kind == "any evaluation plot" else [kind]
        n = rows(db, "SELECT count(DISTINCT notebook_id) FROM output_plot WHERE plot_kinds && CAST(:k AS text[])", k=kinds)[0][0]
        assert int(share[kind]["notebooks"]) == n, kind
        assert int(share[kind]["all_notebooks"]) == total
        assert float(share[kind]["share"]) == pytest.approx(n / total, abs=1e-4)
    assert int(share["any evaluation plot"]["notebooks"]) > 0


def test_explainability_equals_sql(report_dir, db):
    got = {(r["plot_kind"], r["library"]): int(r["figures"]) for r in read_csv(report_dir / "explainability.csv")}
    want = dict(
        ((kind, lib or "(no library call)"), n)
        for kind, lib, n in rows(db, """
            SELECT k, pl.lib, count(DISTINCT p.output_id)
            FROM output_plot p CROSS JOIN unnest(p.plot_kinds) k
            LEFT JOIN LATERAL (SELECT DISTINCT split_part(c, '.', 1) AS lib FROM unnest(p.plot_calls) c
                               WHERE c LIKE '%.%' AND c NOT LIKE '<%') pl ON true
            WHERE k = ANY(CAST(:k AS text[])) GROUP BY 1, 2""", k=EXPLAINABILITY)
    )
    assert want, "the real corpus has feature-importance plots"
    assert got == want


def test_reproducibility_section_says_when_nothing_ran(report_dir, db):
    runs = rows(db, "SELECT count(*) FROM run")[0][0]
    md = (report_dir / "report.md").read_text()
    if runs == 0:
        assert "No notebook has been re-executed yet" in md
        assert not (report_dir / "reproducibility.csv").exists()
    else:
        got = {r["row"]: int(r["runs"]) for r in read_csv(report_dir / "reproducibility.csv") if r["table"] == "outcome"}
        assert got["runs"] == runs


def test_split_section_says_the_corpus_has_no_kaggle_metadata(report_dir, db):
    assert rows(db, "SELECT count(*) FROM kaggle_kernel")[0][0] == 0
    md = (report_dir / "report.md").read_text()
    assert "carries Kaggle metadata (competition, votes), so nothing can be split" in md
    assert not (report_dir / "evaluation_share_by_competition.csv").exists()


def test_report_markdown_and_html_embed_every_figure(report_dir):
    md = (report_dir / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)
    assert len(linked) >= 4 and all((report_dir / name).is_file() for name in linked)
    page = (report_dir / "report.html").read_text()
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(uris) == len(linked)
    for b64, name in zip(uris, linked):
        assert base64.b64decode(b64) == (report_dir / name).read_bytes()
    assert "<table>" in page and "<script" not in page


def markdown_rows(md: str, after: str) -> list[list[str]]:
    """The body rows of the first Markdown table after the line ``after``."""
    lines = md[md.index(after):].splitlines()[1:]
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in line.strip("|").split("|")])
    return table


def test_most_frequent_kind_per_stage_counts_that_kind_and_the_stage_figures(report_dir, db):
    """Each stage's top kind with its own count (it showed the stage's sum of figure-kind pairs under
    "figures"), and the stage's distinct figures beside it."""
    md = (report_dir / "report.md").read_text()
    assert "| stage | most frequent kind | figures of that kind | figures in the stage |" in md
    got = markdown_rows(md, "Most frequent kind per stage")
    per_kind: dict[str, dict[str, int]] = {}
    for stage, kind, n in rows(db, """
            SELECT coalesce(ca.stage, 'unknown'), k, count(DISTINCT p.output_id)
            FROM output_plot p LEFT JOIN cell_analysis ca ON ca.cell_id = p.cell_id, unnest(p.plot_kinds) k
            GROUP BY 1, 2"""):
        per_kind.setdefault(stage, {})[kind] = n
    figures = dict(rows(db, """SELECT coalesce(ca.stage, 'unknown'), count(DISTINCT p.output_id)
                               FROM output_plot p LEFT JOIN cell_analysis ca ON ca.cell_id = p.cell_id GROUP BY 1"""))
    assert {r[0] for r in got} == set(per_kind)
    for stage, kind, n, in_stage in got:
        top = max(per_kind[stage].values())
        assert (int(n), per_kind[stage][kind]) == (top, top), stage
        assert int(in_stage) == figures[stage], stage
    assert sum(int(r[2]) for r in got) <= sum(figures.values())


PUBLIC_PAGE_CAP = 20  # below the real corpus's group counts, so the report must ask for them in parts


@pytest.fixture(scope="module")
def public_report(real_corpus_url, tmp_path_factory) -> dict:
    """`nbatlas report --server` against a public read-only server (page size limit 20, no rate limit
    in the way), and `python -m analysis.report` against it with a filter the server refuses and
    against a port nothing listens on."""
    import sys

    from ingest.serve_process import free_port

    base = tmp_path_factory.mktemp("public_report")
    env = cli_env(real_corpus_url, base / "home")
    serve_env = {"NBATLAS_MAX_PAGE_SIZE": str(PUBLIC_PAGE_CAP),
                 "NBATLAS_RATE_LIMIT_PER_SECOND": "10000", "NBATLAS_RATE_LIMIT_BURST": "10000"}
    module = [sys.executable, "-m", "analysis.report"]
    with serve(real_corpus_url, base / "serve-home", "--public", env=serve_env) as url:
        done = subprocess.run([NBATLAS, "report", "--server", url, "--out", str(base / "out")],
                              env=env, capture_output=True, text=True, timeout=TIMEOUT * 3)
        refused = subprocess.run([*module, "--server", url, "--out", str(base / "refused"), "--filter", "ids=bogus"],
                                 env=env, capture_output=True, text=True, timeout=TIMEOUT)
    unreachable = f"http://127.0.0.1:{free_port()}"
    nobody = subprocess.run([*module, "--server", unreachable, "--out", str(base / "nobody")],
                            env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    return {"out": base / "out", "url": url, "refused": refused, "nobody": nobody, "unreachable": unreachable}


def test_report_against_a_public_server_equals_the_private_one(public_report, report_dir):
    """A public server takes pages of at most its limit and plotCounts has no cursor: the report
    learns the limit, asks a part of the notebooks at a time when a list comes back full, and its
    tables equal those of the report built on a private server."""
    out = public_report["out"]
    private = sorted(p.name for p in report_dir.glob("*.csv"))
    assert sorted(p.name for p in out.glob("*.csv")) == private and len(private) >= 4
    for name in private:
        assert (out / name).read_text() == (report_dir / name).read_text(), name
    # the kinds-per-stage table is longer than one of this server's pages: it was asked in parts
    assert len(read_csv(out / "plot_kinds_per_stage.csv")) > PUBLIC_PAGE_CAP
    body = (out / "report.md").read_text().split("\n## ", 1)[1]
    assert body == (report_dir / "report.md").read_text().split("\n## ", 1)[1]


def test_report_module_ends_with_one_clear_line(public_report):
    refused = public_report["refused"]
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: the API at {public_report['url']}: it refused a query: "
        + refused.stderr.split("refused a query: ", 1)[1].strip()]
    assert "'bogus' is not an nbatlas id" in refused.stderr and "Traceback" not in refused.stderr
    nobody = public_report["nobody"]
    assert nobody.returncode == 1 and "Traceback" not in nobody.stderr
    assert nobody.stderr.startswith(f"error: the API at {public_report['unreachable']}: cannot reach it")
    assert len(nobody.stderr.strip().splitlines()) == 1


CHROMIUM = os.environ.get("NBATLAS_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "report"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}: run .ci/chromium.sh")
@pytest.mark.parametrize("corpus", ["real", "kaggle-split"])
def test_html_report_renders_its_figures_in_chromium(corpus, request):
    """Headless Chromium opens report.html from disk: every figure decodes at its PNG's size and
    its screenshot is not blank (the real corpus's report, and one with the competition and votes splits)."""
    from PIL import Image, ImageStat
    from playwright.sync_api import sync_playwright

    from tests.test_workbench_browser import CHROMIUM_ARGS

    report_dir = request.getfixturevalue("report_dir") if corpus == "real" else request.getfixturevalue("split_reports")["all"]
    artifacts = ARTIFACTS if corpus == "real" else ARTIFACTS / corpus
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", (report_dir / "report.md").read_text())
    if corpus != "real":
        assert {"evaluation_share_splits.png", "plot_kinds_by_votes_quartile.png"} <= set(linked)
    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto((report_dir / "report.html").as_uri())
            page.wait_for_load_state("load")
            sizes = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])")
            assert len(sizes) == len(linked)
            for (complete, w, h), name in zip(sizes, linked):
                with Image.open(report_dir / name) as im:
                    assert complete and (w, h) == im.size, name
            page.screenshot(path=str(artifacts / "report-full.png"), full_page=True)
            for i, img in enumerate(page.query_selector_all("img")):
                shot = artifacts / f"figure-{i}.png"
                img.scroll_into_view_if_needed()
                img.screenshot(path=str(shot))
                with Image.open(shot) as im:
                    assert im.width > 300 and im.height > 100
                    assert ImageStat.Stat(im.convert("L")).stddev[0] > 10, f"{linked[i]} rendered blank"
        finally:
            browser.close()


def test_reproducibility_tables_equal_sql_with_given_server(reproduced, tmp_path):
    """Against a running server (--server) on a database where three notebooks were re-executed:
    the Pimentel-style outcome rows and the failure causes equal SQL counts over the run table."""
    url, _, _, home = reproduced
    out = tmp_path / "out"
    with serve(url, tmp_path / "serve-home") as base:
        done = subprocess.run(
            [NBATLAS, "report", "--server", base, "--out", str(out)], env=cli_env(url, tmp_path / "home"),
            capture_output=True, text=True, timeout=TIMEOUT * 2,
        )
    assert done.returncode == 0, done.stderr
    got = {(r["table"], r["row"]): int(r["runs"]) for r in read_csv(out / "reproducibility.csv")}
    eng = create_engine(url)
    try:
        total, ok, same, no_code = rows(eng, "SELECT count(*), count(*) FILTER (WHERE status = 'ok'), "
                                             "count(*) FILTER (WHERE status = 'ok' AND same_results), "
                                             "count(*) FILTER (WHERE status = 'ok' AND n_code_cells = 0) FROM run")[0]
        causes = rows(eng, "SELECT failure_class, count(*) FROM run WHERE failure_class IS NOT NULL GROUP BY 1")
    finally:
        eng.dispose()
    assert (total, ok, same) == (3, 2, 1)
    assert got[("outcome", "runs")] == total
    assert got[("outcome", "finished without error")] == ok
    assert got[("outcome", "of which no code to run")] == no_code
    assert got[("outcome", "finished with an exception or limit")] == total - ok
    assert got[("outcome", "same results")] == same
    assert got[("outcome", "different results")] == ok - same
    assert {row: n for (table, row), n in got.items() if table == "failure_class"} == dict(causes)
    assert causes and "missing_module" in dict(causes)
    md = (out / "report.md").read_text()
    assert "Pimentel" in md and "No notebook has been re-executed" not in md
    assert (out / "reproducibility.png").stat().st_size > 5000
    # ingested without code analysis: the plot studies say so rather than drawing empty charts
    assert "No figure in the corpus has a plot kind yet" in md and not (out / "plot_kinds_per_stage.png").exists()


# --- splits by competition and votes quartile, and --filter --------------------------------------

SPLIT_COMPETITIONS = [(10, "titanic"), (11, "house-prices"), (12, "digit-recognizer")]


def split_corpus_files() -> list[Path]:
    """Real notebooks that drew something: the 18 smallest, and the 4 smallest of those that also
    draw evaluation plots (so the shares are not all zero)."""
    import json

    from tests.fake_kaggle import REAL_CORPUS, smallest_notebooks

    small, evaluating = [], []
    for row in smallest_notebooks(10_000):
        text = (REAL_CORPUS / row["file"]).read_text(encoding="utf-8")
        try:
            cells = json.loads(text).get("cells", [])
        except ValueError:
            continue
        if not any(m.startswith("image/") for c in cells for o in c.get("outputs", []) for m in o.get("data", {})):
            continue
        if len(small) < 18:
            small.append(REAL_CORPUS / row["file"])
        elif len(evaluating) < 4 and any(w in text for w in ("confusion_matrix", "roc_curve", "learning_curve")):
            evaluating.append(REAL_CORPUS / row["file"])
    return small + evaluating


@pytest.fixture(scope="module")
def kaggle_split_url(server_url, tmp_path_factory) -> str:
    """22 real notebooks imported the way Kaggle's bulk archive is (``nbatlas import meta-kaggle-code``),
    with Meta Kaggle metadata written here: three competitions (one notebook uses two), votes
    with ties; two of the files have no metadata row."""
    import shutil
    import uuid

    from sqlmodel import Session

    from db import schema
    from db.settings import Settings
    from ingest.kaggle.archives import ArchiveSelection, import_archive
    from db.server import create_database, drop_database
    from tests.test_archives import code_path, write_csv

    base = tmp_path_factory.mktemp("kaggle_split")
    root, meta = base / "code", base / "meta"
    meta.mkdir()
    kernels, versions, comp_sources = [], [], []
    for i, source in enumerate(split_corpus_files()):
        vid = 1_000_000 + i
        target = code_path(root, vid)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        if i % 10 == 9:
            continue  # a file Meta Kaggle has no row for: no Kaggle metadata
        votes = [0, 3, 3, 7, 12, 12, 40, 95, 250][i % 9] + i // 9
        kernels.append([500 + i, 1, vid, "", f"nb-{i}", "", 100, 0, votes])
        versions.append([vid, 500 + i, "", 9, 1, "03/04/2021 10:11:12", 1, f"notebook {i}", "03/05/2021", 1, "True", 1000, ""])
        comps = [SPLIT_COMPETITIONS[i % 3][0]] + ([11] if i == 3 else [])
        comp_sources += [[len(comp_sources) + 1 + j, vid, c] for j, c in enumerate(comps)]
    write_csv(meta / "Users.csv", ["Id", "UserName", "DisplayName", "RegisterDate", "PerformanceTier"], [[1, "ann", "Ann", "01/01/2015", 1]])
    write_csv(meta / "Competitions.csv", ["Id", "Slug", "Title", "TotalTeams"], [[i, s, s, 100] for i, s in SPLIT_COMPETITIONS])
    write_csv(meta / "Kernels.csv", ["Id", "AuthorUserId", "CurrentKernelVersionId", "ForkParentKernelVersionId", "CurrentUrlSlug",
                                     "Medal", "TotalViews", "TotalComments", "TotalVotes"], kernels)
    write_csv(meta / "KernelVersions.csv", ["Id", "ScriptId", "ParentScriptVersionId", "ScriptLanguageId", "AuthorUserId",
                                            "CreationDate", "VersionNumber", "Title", "EvaluationDate", "TotalVotes",
                                            "IsInternetEnabled", "RunningTimeInMilliseconds", "DockerImage"], versions)
    write_csv(meta / "KernelVersionCompetitionSources.csv", ["Id", "KernelVersionId", "SourceCompetitionId"], comp_sources)
    write_csv(meta / "KernelVersionDatasetSources.csv", ["Id", "KernelVersionId", "SourceDatasetVersionId"], [])
    write_csv(meta / "KernelLanguages.csv", ["Id", "Name", "DisplayName", "IsNotebook"], [[9, "Python", "Python", "True"]])
    write_csv(meta / "DatasetVersions.csv", ["Id", "DatasetId", "Slug", "Title"], [])
    write_csv(meta / "Datasets.csv", ["Id", "OwnerUserId", "CurrentDatasetVersionId"], [])

    name = f"nbatlas_split_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    eng = create_engine(url)
    schema.upgrade(eng)
    with Session(eng) as session:
        report = import_archive("meta-kaggle-code", root, meta_dir=meta, selection=ArchiveSelection(), session=session,
                                settings=Settings(home=base / "home", database_url=url))
        session.commit()
    eng.dispose()
    assert (report.files, report.with_metadata, report.imported, report.problems) == (22, 20, 22, 0), report
    yield url
    drop_database(server_url, name)


@pytest.fixture(scope="module")
def split_reports(kaggle_split_url, tmp_path_factory) -> dict[str, Path | subprocess.CompletedProcess]:
    """Against one running server: the whole report, a filtered one, and one with an unknown filter key."""
    base = tmp_path_factory.mktemp("split_reports")
    env = cli_env(kaggle_split_url, base / "home")
    min_votes = 12
    done = {}
    with serve(kaggle_split_url, base / "serve-home") as url:
        for label, extra in [("all", []), ("titanic", ["--filter", "competition=titanic", "-f", f"min_votes={min_votes}"]),
                             ("unknown", ["--filter", "colour=red"])]:
            done[label] = subprocess.run([NBATLAS, "report", "--server", url, "--out", str(base / label), *extra],
                                         env=env, capture_output=True, text=True, timeout=TIMEOUT * 2)
    assert done["all"].returncode == 0, done["all"].stderr
    assert done["titanic"].returncode == 0, done["titanic"].stderr
    return {"all": base / "all", "titanic": base / "titanic", "unknown": done["unknown"], "min_votes": min_votes}


EVAL_BY_NOTEBOOK = "SELECT DISTINCT notebook_id FROM output_plot WHERE plot_kinds && CAST(:k AS text[])"


def test_evaluation_share_by_competition_equals_sql(split_reports, kaggle_split_url):
    db = create_engine(kaggle_split_url)
    try:
        got = {r["competition"]: (int(r["notebooks"]), int(r["with_evaluation_plot"]))
               for r in read_csv(split_reports["all"] / "evaluation_share_by_competition.csv")}
        want = dict((c, (n, e)) for c, n, e in rows(db, f"""
            WITH ev AS ({EVAL_BY_NOTEBOOK}),
            nc AS (SELECT n.id, c FROM notebook n
                   LEFT JOIN LATERAL (SELECT DISTINCT unnest(competition_sources) c FROM kaggle_kernel kk
                                      WHERE kk.notebook_id = n.id) kc ON true)
            SELECT coalesce(c, '(no competition)'), count(DISTINCT nc.id), count(DISTINCT ev.notebook_id)
            FROM nc LEFT JOIN ev ON ev.notebook_id = nc.id GROUP BY 1""", k=EVALUATION))
        kinds = {(r["competition"], r["plot_kind"]): int(r["figures"])
                 for r in read_csv(split_reports["all"] / "plot_kinds_by_competition.csv")}
        want_kinds = {(c or "(no competition)", k): n for c, k, n in rows(db, """
            SELECT c, k, count(DISTINCT p.output_id) FROM output_plot p
            LEFT JOIN LATERAL (SELECT DISTINCT unnest(competition_sources) c FROM kaggle_kernel
                               WHERE notebook_id = p.notebook_id) kc ON true, unnest(p.plot_kinds) k GROUP BY 1, 2""")}
    finally:
        db.dispose()
    assert set(want) == {"titanic", "house-prices", "digit-recognizer", "(no competition)"}
    assert got == want
    assert sum(e for _, e in want.values()) > 0, "some of the chosen notebooks draw evaluation plots"
    assert kinds == want_kinds and len(kinds) > 5


def test_votes_quartiles_equal_sql(split_reports, kaggle_split_url):
    db = create_engine(kaggle_split_url)
    try:
        # PostgreSQL's percentile_disc is the value at rank ceil(p * n): the report's cut points
        cuts = rows(db, """SELECT percentile_disc(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY v), min(v), max(v)
                           FROM (SELECT max(votes) v FROM kaggle_kernel WHERE votes IS NOT NULL GROUP BY notebook_id) t""")[0]
        quartiles = read_csv(split_reports["all"] / "evaluation_share_by_votes_quartile.csv")
        (q1, q2, q3), lo, hi = cuts
        assert [(int(r["min_votes"]), int(r["max_votes"])) for r in quartiles] == [
            (a, b) for a, b in [(lo, q1), (q1 + 1, q2), (q2 + 1, q3), (q3 + 1, hi)] if b >= a]
        assert len(quartiles) >= 3
        kinds = read_csv(split_reports["all"] / "plot_kinds_by_votes_quartile.csv")
        for r in quartiles:
            vmin, vmax = int(r["min_votes"]), int(r["max_votes"])
            inside = "EXISTS (SELECT 1 FROM kaggle_kernel kk WHERE kk.notebook_id = {} AND kk.votes BETWEEN :lo AND :hi)"
            n, e = rows(db, f"""SELECT count(*), count(*) FILTER (WHERE n.id IN ({EVAL_BY_NOTEBOOK}))
                                FROM notebook n WHERE {inside.format('n.id')}""", k=EVALUATION, lo=vmin, hi=vmax)[0]
            assert (int(r["notebooks"]), int(r["with_evaluation_plot"])) == (n, e), r
            assert float(r["share"]) == pytest.approx(e / n if n else 0, abs=1e-4)
            want = dict(rows(db, f"""SELECT k, count(DISTINCT p.output_id) FROM output_plot p, unnest(p.plot_kinds) k
                                     WHERE {inside.format('p.notebook_id')} GROUP BY 1""", lo=vmin, hi=vmax))
            assert {x["plot_kind"]: int(x["figures"]) for x in kinds if x["quartile"] == r["quartile"]} == want
    finally:
        db.dispose()
    md = (split_reports["all"] / "report.md").read_text()
    assert "Per votes quartile" in md and "20 of 22 notebooks carry Kaggle metadata" in md
    assert (split_reports["all"] / "evaluation_share_splits.png").stat().st_size > 5000


def test_filtered_report_counts_only_the_selected_notebooks(split_reports, kaggle_split_url):
    out, min_votes = split_reports["titanic"], split_reports["min_votes"]
    selected = "SELECT DISTINCT notebook_id FROM kaggle_kernel WHERE 'titanic' = ANY(competition_sources) AND votes >= :v"
    db = create_engine(kaggle_split_url)
    try:
        n_selected = rows(db, f"SELECT count(*) FROM ({selected}) s", v=min_votes)[0][0]
        want_kinds = {(stage, kind): n for stage, kind, n in rows(db, f"""
            SELECT coalesce(ca.stage, 'unknown'), k, count(DISTINCT p.output_id)
            FROM output_plot p LEFT JOIN cell_analysis ca ON ca.cell_id = p.cell_id, unnest(p.plot_kinds) k
            WHERE p.notebook_id IN ({selected}) GROUP BY 1, 2""", v=min_votes)}
        all_kinds = rows(db, "SELECT count(DISTINCT output_id) FROM output_plot")[0][0]
        n_eval = rows(db, f"SELECT count(*) FROM ({EVAL_BY_NOTEBOOK}) e WHERE notebook_id IN ({selected})",
                      k=EVALUATION, v=min_votes)[0][0]
    finally:
        db.dispose()
    assert 0 < n_selected < 10 and want_kinds
    got = {(r["stage"], r["plot_kind"]): int(r["figures"]) for r in read_csv(out / "plot_kinds_per_stage.csv")}
    assert got == want_kinds and sum(got.values()) < all_kinds
    share = {r["plot_kind"]: r for r in read_csv(out / "evaluation_plot_share.csv")}["any evaluation plot"]
    assert (int(share["notebooks"]), int(share["all_notebooks"])) == (n_eval, n_selected)
    by_comp = {r["competition"]: int(r["notebooks"]) for r in read_csv(out / "evaluation_share_by_competition.csv")}
    assert by_comp["titanic"] == n_selected and "digit-recognizer" not in by_comp
    md = (out / "report.md").read_text()
    assert f"`min_votes={min_votes}`" in md and f"selects {n_selected} of the" in md
    assert "No notebook the filter selects has been re-executed" in md


def test_unknown_filter_key_is_a_clear_error(split_reports):
    done = split_reports["unknown"]
    assert done.returncode != 0
    assert "unknown key 'colour'" in done.stderr and "competition" in done.stderr and "minVotes" in done.stderr


class _AppClient:
    """The report's filter parser needs only ``query``: here it asks the public API in process."""

    def __init__(self, app) -> None:
        self.app = app

    def query(self, query: str, variables: dict | None = None) -> dict:
        from tests.test_api_schema import gql

        body = gql(self.app, query, variables)
        assert "errors" not in body, body["errors"]
        return body["data"]


def test_filter_keys_and_values_are_typed_from_the_api_schema(real_corpus_url, tmp_path):
    from analysis.report import FilterError, notebook_filter
    from api.app import create_app
    from db.settings import Settings

    app = create_app(Settings(home=tmp_path / "home", database_url=real_corpus_url), public=True)
    try:
        api = _AppClient(app)
        flt = notebook_filter(api, ["competition=titanic,house-prices", "competition=digit-recognizer", "min_votes=10",
                                    "hasImages=yes", "reproduction.status=error", "reproduction.failure_class=missing_module",
                                    "language=python"])
        assert flt == {"competition": ["titanic", "house-prices", "digit-recognizer"], "minVotes": 10, "hasImages": True,
                       "reproduction": {"status": ["ERROR"], "failureClass": ["missing_module"]}, "language": ["python"]}
        # the API takes what the parser built
        api.query("query($f: NotebookFilter) { notebooks(first: 1, filter: $f) { totalCount } }", {"f": flt})
        n = api.query("query($f: NotebookFilter) { notebooks(first: 1, filter: $f) { totalCount } }",
                      {"f": notebook_filter(api, ["hasImages=true"])})["notebooks"]["totalCount"]
        assert 0 < n < 231
        assert notebook_filter(api, []) is None
        for bad, says in [
            ("colour=red", "unknown key 'colour'"),
            ("minVotes=ten", "'ten' is not a whole number"),
            ("hasImages=maybe", "'maybe' is not true or false"),
            ("reproduction.status=weird", "'weird' is not one of ok, error"),
            ("reproduction=error", "'reproduction' is a nested filter: use one of reproduction.failureClass"),
            ("language.x=1", "'language' is a String, not a nested filter"),
            ("reproduction.colour=1", "unknown key 'reproduction.colour'; ReproductionFilter accepts"),
            ("no-equals-sign", "write it as key=value"),
        ]:
            with pytest.raises(FilterError, match=re.escape(says)):
                notebook_filter(api, [bad])
        with pytest.raises(FilterError, match="'minVotes' takes one value and was given twice"):
            notebook_filter(api, ["minVotes=1", "min_votes=2"])
    finally:
        app.state.db.dispose()
