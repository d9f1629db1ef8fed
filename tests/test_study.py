"""The study in the database: agreement statistics against hand-computed values, samples drawn from
the real corpus (reproducible, stratified, filtered), codebooks, annotations, and the CLI.

Database tests run on the real-corpus database inside a transaction that is rolled back, so nothing
they write survives them; the CLI test gets its own database.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import Session

from db.models.reproduce import RUN_STATUSES
from db.queries import study
from db.queries.codec import IMAGE_MIMES
from db.queries.study import SampleSpec, StudyError, Target, allocate, cohen_kappa, krippendorff_alpha_nominal
from db.queries.workbench import PlotFilter
from db.vocab import PLOT_KINDS, STAGES
from tests.conftest import REAL_CORPUS, cli_env

NBATLAS = str(Path(sys.executable).with_name("nbatlas"))


# ---------------------------------------------------------------- statistics, by hand


def test_cohen_kappa_matches_hand_computation():
    # 50 units: both yes 20, A yes/B no 5, A no/B yes 10, both no 15.
    # p_o = 35/50 = 0.7; A says yes 25/50, B 30/50: p_e = .5*.6 + .5*.4 = 0.5; kappa = (.7-.5)/(1-.5) = 0.4
    a = ["yes"] * 20 + ["yes"] * 5 + ["no"] * 10 + ["no"] * 15
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    # 5 units, A=[1,1,0,0,1], B=[1,0,0,0,1]: p_o = 4/5, p_e = .6*.4 + .4*.6 = .48, kappa = .32/.52 = 8/13
    assert cohen_kappa([1, 1, 0, 0, 1], [1, 0, 0, 0, 1]) == pytest.approx(8 / 13)
    assert cohen_kappa([1, 0, 1], [1, 0, 1]) == pytest.approx(1.0)
    # both always say the same single label: chance agreement is total, kappa undefined
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) is None
    with pytest.raises(ValueError):
        cohen_kappa([1, 0], [1])


def test_krippendorff_alpha_matches_hand_computation():
    # A=[1,1,0,0,1], B=[1,0,0,0,1]: coincidences o11=4, o00=4, o10=o01=1; n1=n0=5, n=10;
    # alpha = 1 - (n-1) * sum(o_ck, c!=k) / sum(n_c n_k, c!=k) = 1 - 9*2/50 = 0.64
    assert krippendorff_alpha_nominal([[1, 1], [1, 0], [0, 0], [0, 0], [1, 1]]) == pytest.approx(0.64)
    # three coders, units (1,1,1) (1,0,1) (0,0,0) (0,0,0) (1,1,0): o11=5, o00=6, o10=o01=2; n1=7, n0=8, n=15;
    # alpha = 1 - 14*4/112 = 0.5
    assert krippendorff_alpha_nominal([[1, 1, 1], [1, 0, 1], [0, 0, 0], [0, 0, 0], [1, 1, 0]]) == pytest.approx(0.5)
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", nominal example: 4 observers,
    # 12 units, missing values; the paper gives alpha = 0.743
    data = [
        [1, 1, None, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4],
        [4, 4, 4, 4], [1, 1, 2, 1], [2, 2, 2, 2], [None, 5, 5, 5], [None, None, 1, 1], [None, 3, None, None],
    ]
    assert krippendorff_alpha_nominal(data) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha_nominal([[1, 1], [1, 1]]) is None  # one value only: nothing to expect
    assert krippendorff_alpha_nominal([[1, None], [None, 0]]) is None  # nothing pairable


def test_allocation_by_hand():
    sizes = {"a": 10, "b": 3, "c": 1}
    # proportional, n=7: exact 5, 1.5, 0.5 -> floors 5, 1, 0 and one left for the largest remainder;
    # b and c tie (0.5), the larger stratum (b) wins
    assert allocate(sizes, 7, "proportional") == {"a": 5, "b": 2, "c": 0}
    # equal, n=9: 3 each, c has only 1, so the 2 left go to the strata that still have units (a)
    assert allocate(sizes, 9, "equal") == {"a": 5, "b": 3, "c": 1}
    assert allocate(sizes, 2, "equal") == {"a": 1, "b": 1, "c": 0}
    assert allocate(sizes, 50, "proportional") == sizes
    for n in range(1, 15):
        assert sum(allocate(sizes, n, "proportional").values()) == n
        assert sum(allocate(sizes, n, "equal").values()) == n


# ---------------------------------------------------------------- on the real corpus (rolled back)


@pytest.fixture
def real(real_corpus_url: str) -> Iterator[Session]:
    """A session on the real-corpus database whose writes are all rolled back."""
    eng = create_engine(real_corpus_url)
    connection = eng.connect()
    outer = connection.begin()
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        yield session
    outer.rollback()
    connection.close()
    eng.dispose()


def _items(session: Session, sample: dict) -> list[dict]:
    return study.sample_items(session=session, sample_id=sample["id"], first=100_000)


def test_samples_are_reproducible_and_recorded(real: Session):
    spec = SampleSpec(n=25, seed=11)
    first, created = study.draw_sample(session=real, name="repro-a", spec=spec, description="pilot")
    assert created and first["n_items"] == 25
    again, _ = study.draw_sample(session=real, name="repro-b", spec=spec)
    assert [i["image_sha256"] for i in _items(real, first)] == [i["image_sha256"] for i in _items(real, again)]
    other, _ = study.draw_sample(session=real, name="repro-c", spec=SampleSpec(n=25, seed=12))
    assert {i["image_sha256"] for i in _items(real, other)} != {i["image_sha256"] for i in _items(real, first)}

    # the draw is the seeded hash order over every image in the corpus (independent SQL for the population)
    population = [r[0].strip() for r in real.execute(text("SELECT DISTINCT image_sha256 FROM output_image"))]
    assert first["population"] == len(population)
    expected = sorted(population, key=lambda sha: study.draw_order(11, sha))[:25]
    assert [i["image_sha256"] for i in _items(real, first)] == expected

    # recorded: the spec, and a command that parses back to it
    assert SampleSpec.from_dict(first["spec"]) == spec
    assert first["command"] == "nbatlas sample --name repro-a --n 25 --seed 11 --unit image"
    # the same name and spec again: the existing sample; another spec under that name: an error
    same, created = study.draw_sample(session=real, name="repro-a", spec=spec)
    assert not created and same["id"] == first["id"]
    with pytest.raises(StudyError, match="exists with another specification"):
        study.draw_sample(session=real, name="repro-a", spec=SampleSpec(n=26, seed=11))
    with pytest.raises(StudyError, match="not valid"):
        study.draw_sample(session=real, name="bad name!", spec=spec)
    with pytest.raises(StudyError, match="no image matches"):
        study.draw_sample(session=real, name="empty", spec=SampleSpec(n=3, seed=1, filter=PlotFilter(library=("nope",))))


@pytest.mark.parametrize("criterion,typo,valid", [
    ("stage", "evalution", STAGES), ("plot_kind", "bogus", (*PLOT_KINDS, "(none)")),
    ("run_status", "OK", RUN_STATUSES), ("mime", "image/jpg", IMAGE_MIMES),
])
def test_a_sample_filter_refuses_a_word_outside_its_vocabulary(real: Session, criterion, typo, valid):
    # each would draw from an empty population: the error says which word is wrong and the right ones
    spec = SampleSpec(n=3, seed=1, filter=PlotFilter(**{criterion: (typo,)}))
    with pytest.raises(StudyError) as caught:
        study.draw_sample(session=real, name="typo", spec=spec)
    message = str(caught.value)
    assert message.startswith(f"{criterion}: unknown value {typo!r}") and "no image matches" not in message
    assert message.endswith("valid values: " + ", ".join(valid))
    assert study.get_sample(session=real, name="typo") is None
    # open criteria take any text: an unknown library is a filter matching nothing, not a typo
    with pytest.raises(StudyError, match="no image matches"):
        study.draw_sample(session=real, name="typo", spec=SampleSpec(n=3, seed=1, filter=PlotFilter(library=("bogus",))))


def test_stratified_filtered_sample(real: Session):
    flt = PlotFilter(stage=("evaluation", "explanation"))
    spec = SampleSpec(n=30, seed=5, stratify_by="plot_kind", filter=flt)
    sample, _ = study.draw_sample(session=real, name="strat", spec=spec)
    items = _items(real, sample)
    assert len(items) == 30 == sum(drawn for _pop, drawn in sample["strata"].values())

    # every item matches the filter, and its stratum is the first plot kind of its first matching figure
    rows = real.execute(
        text(
            "SELECT DISTINCT ON (oi.image_sha256) oi.image_sha256, coalesce(p.plot_kinds[1], '(none)') "
            "FROM output_image oi JOIN output o ON o.id = oi.output_id "
            "LEFT JOIN output_plot p ON p.output_id = oi.output_id AND p.mime = oi.mime "
            "JOIN cell_analysis ca ON ca.cell_id = o.cell_id WHERE ca.stage IN ('evaluation', 'explanation') "
            "ORDER BY oi.image_sha256, oi.output_id, oi.mime"
        )
    ).all()
    stratum_of = {sha.strip(): kind for sha, kind in rows}
    assert sample["population"] == len(stratum_of)
    for item in items:
        assert stratum_of[item["image_sha256"]] == item["stratum"]
    # proportional: each stratum within one of its exact share, and the population per stratum as recorded
    population = Counter(stratum_of.values())
    drawn = Counter(i["stratum"] for i in items)
    for stratum, (pop, count) in sample["strata"].items():
        assert pop == population[stratum] and count == drawn.get(stratum, 0)
        assert abs(count - 30 * pop / len(stratum_of)) < 1

    equal, _ = study.draw_sample(session=real, name="strat-eq", spec=SampleSpec(
        n=12, seed=5, stratify_by="stage", allocation="equal"))
    per_stage = Counter(i["stratum"] for i in _items(real, equal))
    quota = allocate({s: pop for s, (pop, _n) in equal["strata"].items()}, 12, "equal")
    assert dict(per_stage) == {s: q for s, q in quota.items() if q}


def test_notebook_sample_with_a_figure_filter(real: Session):
    spec = SampleSpec(n=5, seed=2, unit="notebook", stratify_by="competition", filter=PlotFilter(plot_kind=("histogram",)))
    sample, _ = study.draw_sample(session=real, name="nbs", spec=spec)
    ids = [i["notebook_id"] for i in _items(real, sample)]
    assert len(ids) == 5
    with_histograms = {
        r[0] for r in real.execute(text("SELECT DISTINCT notebook_id FROM output_plot WHERE 'histogram' = ANY(plot_kinds)"))
    }
    assert set(ids) <= with_histograms and sample["population"] == len(with_histograms)
    # the real corpus has no Kaggle metadata: every notebook is in the '(none)' competition stratum
    assert sample["strata"] == {"(none)": [len(with_histograms), 5]}


def test_codebooks_annotations_progress_and_agreement(real: Session):
    sample, _ = study.draw_sample(session=real, name="coded", spec=SampleSpec(n=5, seed=3))
    shas = [i["image_sha256"] for i in _items(real, sample)]
    book = study.create_codebook(session=real, name="purpose", description="why the plot is there")
    diag = study.save_code(session=real, codebook_id=book["id"], name="diagnose")
    other = study.save_code(session=real, codebook_id=book["id"], name="other", description="anything else")
    assert (diag["key"], other["key"]) == ("1", "2")  # free default keys
    study.set_sample_codebook(session=real, sample_id=sample["id"], codebook_id=book["id"])
    (a, token_a), (b, _), (c, _) = (study.create_annotator(session=real, name=n) for n in ("ann", "ben", "cat"))
    assert study.annotator_by_token(session=real, token=token_a)["id"] == a["id"]
    assert study.annotator_by_token(session=real, token="nba_wrong") is None

    def code(who, pattern):  # pattern: diagnose (1) or other (0) per item
        for sha, applied in zip(shas, pattern):
            study.annotate(session=real, annotator_id=who["id"], code_id=diag["id"] if applied else other["id"],
                           target=Target("image", image_sha256=sha), sample_id=sample["id"])

    code(a, [1, 1, 0, 0, 1])
    code(b, [1, 0, 0, 0, 1])
    two = study.agreement(session=real, sample_id=sample["id"], codebook_id=book["id"])
    assert two["annotators"] == ["ann", "ben"] and two["metric"] == "kappa"
    per_code = {r["code"]: r for r in two["codes"]}
    # the hand-computed values of the tests above: kappa 8/13, alpha 0.64, 4 of 5 pairs agree
    assert per_code["diagnose"]["kappa"] == pytest.approx(8 / 13)
    assert per_code["diagnose"]["alpha"] == pytest.approx(0.64)
    assert per_code["diagnose"]["percent_agreement"] == pytest.approx(0.8)
    assert per_code["other"]["kappa"] == pytest.approx(8 / 13)  # its mirror image
    assert per_code["diagnose"]["applied"] == {"ann": 3, "ben": 2}

    code(c, [1, 1, 0, 0, 0])
    three = study.agreement(session=real, sample_id=sample["id"], codebook_id=book["id"])
    diag3 = next(r for r in three["codes"] if r["code"] == "diagnose")
    assert three["metric"] == "alpha" and diag3["kappa"] is None
    assert diag3["alpha"] == pytest.approx(0.5)  # hand-computed above
    assert diag3["percent_agreement"] == pytest.approx(11 / 15)
    assert [(p["annotator"], p["coded"], p["total"]) for p in study.progress(
        session=real, sample_id=sample["id"], codebook_id=book["id"])] == [("ann", 5, 5), ("ben", 5, 5), ("cat", 5, 5)]

    # applying again keeps one annotation and takes the memo; others cannot remove it
    again = study.annotate(session=real, annotator_id=a["id"], code_id=diag["id"],
                           target=Target("image", image_sha256=shas[0]), memo="clear ROC")
    assert again["memo"] == "clear ROC"
    assert study.remove_annotation(session=real, annotator_id=b["id"], annotation_id=again["id"]) is False
    assert study.set_memo(session=real, annotator_id=a["id"], annotation_id=again["id"], memo="x")["memo"] == "x"
    assert study.remove_annotation(session=real, annotator_id=a["id"], annotation_id=again["id"]) is True
    rows = study.annotation_rows(session=real, sample_id=sample["id"], annotator_id=a["id"])
    assert len(rows) == 4 and all(r["coded_in_sample"] == "coded" and r["annotator"] == "ann" for r in rows)

    # cells carry their notebook (a notebook item's coding includes its cells'); bad targets are refused
    cell_id, notebook_id = real.execute(text("SELECT id, notebook_id FROM cell ORDER BY id LIMIT 1")).one()
    on_cell = study.annotate(session=real, annotator_id=a["id"], code_id=other["id"], target=Target.parse(f"cell:{cell_id}"))
    assert (on_cell["target_kind"], on_cell["notebook_id"]) == ("cell", notebook_id)
    assert study.annotations_on(session=real, annotator_id=a["id"], codebook_id=book["id"], notebook_id=notebook_id)
    for bad in ("cell:999999999", "image:" + "0" * 64, "notebook:999999999"):
        with pytest.raises(StudyError, match="no "):
            study.annotate(session=real, annotator_id=a["id"], code_id=diag["id"], target=Target.parse(bad))
    with pytest.raises(StudyError, match="a target is"):
        Target.parse("plot:1")

    # keys: the pages' own keys are refused, and a key is one code's
    with pytest.raises(StudyError, match="taken by the coding pages"):
        study.save_code(session=real, codebook_id=book["id"], name="x", key="j")
    with pytest.raises(StudyError, match="already the key"):
        study.save_code(session=real, codebook_id=book["id"], name="x", key="1")
    created, updated = study.import_codes(session=real, codebook_id=book["id"], codes=[
        {"name": "other", "description": "changed"}, {"name": "explain", "key": "e"}])
    assert (created, updated) == (1, 1)
    codes = {c["name"]: c for c in study.codes_of_codebooks(session=real, ids=[book["id"]])[book["id"]]}
    assert codes["other"]["description"] == "changed" and codes["other"]["key"] == "2" and codes["explain"]["key"] == "e"


# ---------------------------------------------------------------- the commands


def test_study_commands(fresh_database, tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    from db.settings import Settings, get_settings
    from ingest.cli import app
    from ingest.local import ingest_paths

    url = fresh_database()
    env = cli_env(url, tmp_path / "home")
    notebooks = [p for p in sorted(REAL_CORPUS.glob("*.ipynb")) if "Ch1_Introduction_Pyro" in p.name or "Prologue" in p.name]
    eng = create_engine(url)
    with Session(eng) as session:
        ingest_paths(notebooks, session=session, settings=Settings(home=tmp_path / "home", database_url=url))

    # the commands in this process (a subprocess costs seconds of imports each); one real one below
    monkeypatch.setenv("NBATLAS_DATABASE_URL", url)
    monkeypatch.setenv("NBATLAS_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str, ok: bool = True):
        done = runner.invoke(app, list(args))
        assert (done.exit_code == 0) == ok, (done.output, done.exception)
        return done

    try:
        # the console command itself, as a researcher runs it
        done = subprocess.run([NBATLAS, "sample", "--name", "pilot", "--n", "4", "--seed", "9", "--stratify-by", "stage",
                               "--json"], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        drawn = json.loads(done.stdout)
        assert drawn["created"] and drawn["n_items"] == 4
        assert drawn["command"].startswith("nbatlas sample --name pilot --n 4 --seed 9")
        again = json.loads(run(*drawn["command"].split()[1:], "--json").stdout)  # the recorded command finds it again
        assert not again["created"] and again["strata"] == drawn["strata"]
        assert "another specification" in run("sample", "--name", "pilot", "--n", "5", "--seed", "9", ok=False).output
        typo = " ".join(run("sample", "--name", "s", "--n", "3", "--seed", "1", "--stage", "evalution", ok=False).output.split())
        assert "stage: unknown value 'evalution' (did you mean 'evaluation'?)" in typo and "valid values: setup," in typo

        codes = tmp_path / "codes.csv"
        codes.write_text("name,description,key\ndiagnose,checks the model,d\nexplore,looks at data,\n")
        assert "2 codes added" in run("codebook", "import", str(codes), "--codebook", "purpose").output
        bad = tmp_path / "bad.csv"
        bad.write_text("name,colour\nx,red\n")
        out = " ".join(run("codebook", "import", str(bad), "--codebook", "purpose", ok=False).output.split())
        assert "bad.csv: row 2: unknown column(s) colour" in out
        tokens = {name: run("annotator", "add", name).stdout.strip().splitlines()[-1] for name in ("ann", "ben")}
        assert all(t.startswith("nba_") for t in tokens.values())
        assert "exists already" in run("annotator", "add", "ann", ok=False).output

        with Session(eng) as session:
            items = [i["image_sha256"] for i in study.sample_items(
                session=session, sample_id=study.get_sample(session=session, name="pilot")["id"])]
            book = study.get_codebook(session=session, name="purpose")
            code_ids = {c["name"]: c["id"] for c in study.codes_of_codebooks(session=session, ids=[book["id"]])[book["id"]]}
            for name, pattern in (("ann", "ddee"), ("ben", "dede")):
                who = study.annotator_by_token(session=session, token=tokens[name])
                for sha, letter in zip(items, pattern):
                    study.annotate(session=session, annotator_id=who["id"], target=Target("image", image_sha256=sha),
                                   code_id=code_ids["diagnose" if letter == "d" else "explore"])
            session.commit()

        report = json.loads(run("agreement", "--sample", "pilot", "--codebook", "purpose", "--json").stdout)
        diag = next(c for c in report["codes"] if c["code"] == "diagnose")
        # ann d d e e / ben d e d e: agree on 2 of 4; each says d half the time: p_e = .5, kappa = 0
        assert diag["kappa"] == pytest.approx(0.0) and diag["percent_agreement"] == pytest.approx(0.5)
        assert [(p["annotator"], p["coded"]) for p in report["progress"]] == [("ann", 4), ("ben", 4)]

        out = tmp_path / "annotations.csv"
        run("annotations", "export", "-o", str(out), "--sample", "pilot")
        rows = list(csv.DictReader(out.open()))
        assert len(rows) == 8 and set(rows[0]) == set(study.EXPORT_COLUMNS)
        assert Counter((r["annotator"], r["code"]) for r in rows) == {
            ("ann", "diagnose"): 2, ("ann", "explore"): 2, ("ben", "diagnose"): 2, ("ben", "explore"): 2}
        assert {r["image_sha256"] for r in rows} == set(items)
        assert "no sample named 'nope'" in run("annotations", "export", "-o", str(out), "--sample", "nope", ok=False).output
        listed = run("samples", "pilot", "--items").stdout.splitlines()
        assert [line.split("\t")[1] for line in listed if "\t" in line] == items
    finally:
        eng.dispose()
        monkeypatch.undo()
        get_settings.cache_clear()
