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
from tests.test_api_reproduce import reproduced  # noqa: F401  (a fixture: three notebooks re-executed)

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


CHROMIUM = os.environ.get("NBATLAS_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "report"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}: run .ci/chromium.sh")
def test_html_report_renders_its_figures_in_chromium(report_dir):
    """Headless Chromium opens report.html from disk: every figure decodes at its PNG's size and
    its screenshot is not blank."""
    from PIL import Image, ImageStat
    from playwright.sync_api import sync_playwright

    from tests.test_workbench_browser import CHROMIUM_ARGS

    linked = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", (report_dir / "report.md").read_text())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
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
            page.screenshot(path=str(ARTIFACTS / "report-full.png"), full_page=True)
            for i, img in enumerate(page.query_selector_all("img")):
                shot = ARTIFACTS / f"figure-{i}.png"
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
        total, ok, same = rows(eng, "SELECT count(*), count(*) FILTER (WHERE status = 'ok'), "
                                    "count(*) FILTER (WHERE status = 'ok' AND same_results) FROM run")[0]
        causes = rows(eng, "SELECT failure_class, count(*) FROM run WHERE failure_class IS NOT NULL GROUP BY 1")
    finally:
        eng.dispose()
    assert (total, ok, same) == (3, 2, 1)
    assert got[("outcome", "runs")] == total
    assert got[("outcome", "finished without error")] == ok
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
