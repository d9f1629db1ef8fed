"""Code understanding stored in the database: at ingest (through the ingest hook), by ``nbatlas analyze``
(missing or stale analysis, without re-ingesting), and read back by the query functions the API uses.
Real notebooks from ../shared/corpus/real, real embedded PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import Session

from db.queries import understand as q
from ingest.analyze import analyze
from ingest.local import ingest_paths
from ingest.understand import ANALYZER_VERSION
from ingest.understand.store import CodeAnalyzer
from tests.conftest import REAL_CORPUS, cli_env

CHURN = REAL_CORPUS / "donnemartin__data-science-ipython-notebooks__analyses__churn.ipynb"
SPACESHIP = REAL_CORPUS / "mateuszk098__kaggle-notebooks__spaceship_titanic__spaceship_titanic.ipynb"


def _inline(settings):
    return settings.model_copy(update={"workers": 1})


def _rows(session, sql, **params):
    return session.connection().execute(text(sql), params).all()


def test_ingest_stores_code_facts_plot_kinds_links_and_context(session, settings):
    report = ingest_paths([CHURN, SPACESHIP], session=session, settings=_inline(settings), cell_analyzer=CodeAnalyzer())
    assert report.status == "finished"
    (churn_id,) = _rows(session, "SELECT n.id FROM notebook n JOIN source s ON s.notebook_id = n.id WHERE s.location = :p",
                       p=str(CHURN))[0]

    # every cell of the notebook has a row, with its analyser version
    cells, analysed = _rows(session, "SELECT (SELECT count(*) FROM cell WHERE notebook_id = :n), "
                                     "(SELECT count(*) FROM cell_analysis WHERE notebook_id = :n AND analyzer_version = :v)",
                            n=churn_id, v=ANALYZER_VERSION)[0]
    assert cells == analysed > 0

    # the images of cell 16 (four confusion matrices) and 19 (four ROC plots): kinds, link to the cell, context
    plots = _rows(session,
                  "SELECT c.position, p.plot_kinds, p.image_sha256, p.context_before, p.context_after, p.evidence "
                  "FROM output_plot p JOIN cell c ON c.id = p.cell_id WHERE p.notebook_id = :n ORDER BY c.position, p.output_id",
                  n=churn_id)
    for position, kinds, sha, before, after, evidence in plots:
        print(position, kinds, sha[:12], repr((before or "")[:40]), repr((after or "")[:30]))
    by_cell = {}
    for position, kinds, sha, *_ in plots:
        by_cell.setdefault(position, []).append(kinds)
        assert sha is not None
    assert by_cell[16] == [["confusion_matrix"]] * len(by_cell[16]) and len(by_cell[16]) >= 4
    assert by_cell[19] == [["roc_curve"]] * 4
    assert by_cell[21] == [["feature_importance"]]
    roc = next(p for p in plots if p[0] == 19)
    assert roc[3].startswith("## ROC Plots & AUC") and roc[4].startswith("## Feature Importance")
    # evidence: the notebook's own plot_roc helper, whose plt.plot calls draw fpr against tpr
    assert roc[5][0]["kind"] == "roc_curve" and "plot_roc" in (roc[5][0]["call"], roc[5][0].get("via"))
    # the stored image is the one the output shows
    assert _rows(session, "SELECT count(*) FROM output_plot p JOIN output_image oi ON oi.output_id = p.output_id "
                          "AND oi.mime = p.mime AND oi.image_sha256 = p.image_sha256 WHERE p.notebook_id = :n", n=churn_id)[0][0] == len(plots)

    # cells: libraries, resolved calls, stage; Python 2 cells kept and marked
    row = _rows(session, "SELECT ca.libraries, ca.call_names, ca.stage, ca.parsed, ca.parse_error FROM cell_analysis ca "
                         "JOIN cell c ON c.id = ca.cell_id WHERE c.notebook_id = :n AND c.position = 4", n=churn_id)[0]
    assert "pandas.read_csv" in row[1] and row[2] == "data_loading" and row[3] is False and "print" in row[4]

    # the query functions the API calls
    sha = roc[2]
    assert q.plot_kinds_for_images(session=session, shas=[sha]) == {sha: ["roc_curve"]}
    assert q.context_for_images(session=session, shas=[sha])[sha]["context_before"].startswith("## ROC")
    cell_ids = [r[0] for r in _rows(session, "SELECT id FROM cell WHERE notebook_id = :n ORDER BY position", n=churn_id)]
    assert "sklearn" in q.libraries_for_cells(session=session, ids=cell_ids)[cell_ids[3]]
    rocs = q.image_plots(session=session, plot_kind="roc_curve", notebook_library="sklearn")
    assert {r["notebook_id"] for r in rocs} >= {churn_id} and all("roc_curve" in r["plot_kinds"] for r in rocs)
    page1 = q.image_plots(session=session, limit=3)
    page2 = q.image_plots(session=session, limit=3, after=(page1[-1]["output_id"], page1[-1]["mime"]))
    assert not {(r["output_id"], r["mime"]) for r in page1} & {(r["output_id"], r["mime"]) for r in page2}
    per_stage = q.plot_kind_counts_by_stage(session=session)
    assert ("evaluation", "roc_curve", 5) in per_stage  # 4 in churn + 1 in spaceship
    assert dict(q.plot_kind_counts(session=session))["confusion_matrix"] >= 5
    assert ("sklearn", 2) in q.library_counts(session=session)
    assert dict(q.stage_counts(session=session))["exploration"] > 0
    print("plot kinds per stage:", per_stage)


def test_analyze_fills_missing_and_stale_analysis_without_reingesting(session, settings):
    ingest_paths([CHURN], session=session, settings=_inline(settings), cell_analyzer=None)
    outputs_before = _rows(session, "SELECT count(*) FROM output")[0][0]
    assert _rows(session, "SELECT count(*) FROM cell_analysis")[0][0] == 0
    assert q.analysis_status(session=session, analyzer_version=ANALYZER_VERSION)["missing"] == 1

    report = analyze(session=session, settings=_inline(settings))
    assert report.notebooks_analyzed == 1 and not report.failed and report.plots_found >= 9
    assert _rows(session, "SELECT count(*) FROM output")[0][0] == outputs_before
    kinds = _rows(session, "SELECT DISTINCT unnest(plot_kinds) FROM output_plot")
    assert {k for (k,) in kinds} >= {"confusion_matrix", "roc_curve", "feature_importance"}

    # nothing left to do; then an older analyser version makes it stale again
    assert analyze(session=session, settings=_inline(settings)).notebooks_seen == 0
    session.connection().execute(text("UPDATE notebook_analysis SET analyzer_version = 0"))
    session.connection().execute(text("UPDATE cell_analysis SET analyzer_version = 0"))
    assert q.analysis_status(session=session, analyzer_version=ANALYZER_VERSION)["stale"] == 1
    again = analyze(session=session, settings=_inline(settings))
    assert again.notebooks_analyzed == 1
    assert _rows(session, "SELECT DISTINCT analyzer_version FROM cell_analysis") == [(ANALYZER_VERSION,)]
    assert analyze(session=session, settings=_inline(settings), rerun=True).notebooks_analyzed == 1


@pytest.mark.slow
def test_analyze_command(fresh_database, settings, tmp_path):
    url = fresh_database()
    eng = create_engine(url)
    with Session(eng) as s:
        ingest_paths([CHURN, SPACESHIP], session=s, settings=_inline(settings.model_copy(update={"database_url": url})),
                     cell_analyzer=None)
    env = cli_env(url, tmp_path / "home")
    done = subprocess.run([sys.executable, "-m", "ingest.cli", "analyze", "--json", "--workers", "2"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["notebooks_analyzed"] == 2 and report["analyzer_version"] == ANALYZER_VERSION
    with eng.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM notebook_analysis")).scalar() == 2
    again = subprocess.run([sys.executable, "-m", "ingest.cli", "analyze"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "nothing to do, all 2 notebooks are already analysed" in again.stderr
    eng.dispose()


# --- a notebook in another kernel language: not analysed, and stored as such ----------------------

BLOCKSVD = REAL_CORPUS / "jiahao__ijulia-notebooks-assorted__BlockSVD.ipynb"  # Julia, 12 figures


def _notebook_id(session, path) -> int:
    return _rows(session, "SELECT notebook_id FROM source WHERE location = :p", p=str(path))[0][0]


def _stored(session, notebook_id: int) -> dict:
    """What the database holds of a notebook's analysis."""
    return {
        "libraries": _rows(session, "SELECT libraries FROM notebook_analysis WHERE notebook_id = :n", n=notebook_id),
        "cell_rows": _rows(session, "SELECT count(*) FROM cell_analysis WHERE notebook_id = :n", n=notebook_id)[0][0],
        "plots": _rows(session, "SELECT plot_kinds, evidence, plot_calls, image_sha256 IS NOT NULL FROM output_plot "
                                "WHERE notebook_id = :n ORDER BY output_id, mime", n=notebook_id),
    }


def _assert_not_analysed(session, julia_id: int, churn_id: int) -> None:
    from db.queries.plots import plot_counts

    images = _rows(session, "SELECT count(*) FROM output_image oi JOIN output o ON o.id = oi.output_id "
                            "WHERE o.notebook_id = :n", n=julia_id)[0][0]
    stored = _stored(session, julia_id)
    # libraries NULL (the API's notebook.libraries: null), no cell row (cell.analysis, cell.stage: null),
    # every figure kept, with no plot kind, evidence or plotting call
    assert stored["libraries"] == [(None,)] and stored["cell_rows"] == 0
    assert images == 12 and stored["plots"] == [([], None, [], True)] * images
    # what the API reads
    cell_ids = [r[0] for r in _rows(session, "SELECT id FROM cell WHERE notebook_id = :n", n=julia_id)]
    assert q.libraries_for_notebooks(session=session, ids=[julia_id, churn_id]).keys() == {churn_id}
    assert q.analysis_for_cells(session=session, ids=cell_ids) == {} and q.stages_for_cells(session=session, ids=cell_ids) == {}
    # plotCounts: the Julia figures under a null stage and kind, none of them "other"; the Python ones all have both
    counts = dict(plot_counts(session=session, by=["stage", "plot_kind"]))
    assert counts[(None, None)] == images and not [k for k in counts if None in k and k != (None, None)]
    other = _rows(session, "SELECT count(DISTINCT p.output_id) FROM output_plot p WHERE 'other' = ANY(p.plot_kinds)")[0][0]
    assert sum(n for (_, kind), n in counts.items() if kind == "other") == other
    assert _rows(session, "SELECT count(*) FROM output_plot WHERE notebook_id = :n AND 'other' = ANY(plot_kinds)",
                 n=julia_id)[0][0] == 0
    # the Python notebook beside it is analysed as ever
    assert _stored(session, churn_id)["cell_rows"] > 0 and _stored(session, churn_id)["libraries"][0][0]


def test_a_julia_notebook_is_stored_with_no_stage_plot_kind_or_library(session, settings):
    ingest_paths([BLOCKSVD, CHURN], session=session, settings=_inline(settings), cell_analyzer=CodeAnalyzer())
    julia_id, churn_id = _notebook_id(session, BLOCKSVD), _notebook_id(session, CHURN)
    _assert_not_analysed(session, julia_id, churn_id)

    # `nbatlas analyze` (here over both again) writes the same, and says which it did not analyse
    report = analyze(session=session, settings=_inline(settings), notebook_ids=[julia_id, churn_id])
    assert report.not_analysed == [(julia_id, "not analysed: the kernel language is julia")]
    assert report.notebooks_analyzed == 1 and not report.failed and report.plots_found >= 12 + 9
    _assert_not_analysed(session, julia_id, churn_id)


def test_migration_0010_rewrites_not_analysed_notebooks_stored_before(fresh_database, settings):
    """A database analysed before 0010 holds the Julia notebook as stage "other", kind "other", no
    libraries: upgrading rewrites it as the analyser now stores it, without re-analysing."""
    import dataclasses

    import nbformat

    from db import schema
    from ingest.understand import analyze_notebook
    from ingest.understand.store import store_facts

    url = fresh_database()
    eng = create_engine(url)
    with Session(eng) as s:
        ingest_paths([BLOCKSVD, CHURN], session=s, settings=_inline(settings.model_copy(update={"database_url": url})),
                     cell_analyzer=CodeAnalyzer())
        julia_id, churn_id = _notebook_id(s, BLOCKSVD), _notebook_id(s, CHURN)
        churn_before = _stored(s, churn_id)
        # the rows the analyser wrote before: its facts stored as if the notebook had been analysed
        old = dataclasses.replace(analyze_notebook(nbformat.read(BLOCKSVD, as_version=4)), not_analysed=None)
        cell_ids = [r[0] for r in _rows(s, "SELECT id FROM cell WHERE notebook_id = :n ORDER BY position", n=julia_id)]
        store_facts(connection=s.connection().connection.driver_connection, items=[(julia_id, cell_ids, old)])
        s.commit()
        before = _stored(s, julia_id)
        assert before["libraries"] == [([],)] and before["cell_rows"] == len(cell_ids)
        assert {tuple(k) for k, *_ in before["plots"]} == {("other",)} and len(before["plots"]) == 12

    schema.downgrade(eng, "0009_public_role")
    schema.upgrade(eng)
    with Session(eng) as s:
        _assert_not_analysed(s, julia_id, churn_id)
        assert _stored(s, churn_id) == churn_before
    eng.dispose()
