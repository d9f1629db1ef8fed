"""Reproduction without Docker: scoring and failure classes on the real corpus, the local backend,
the one-result-per-(request, notebook) writer, and the whole `nbatlas reproduce` path on real notebooks.

The container tests are in tests/test_reproduce_docker.py.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from sqlalchemy import create_engine, text
from sqlmodel import Session

from db.settings import Settings
from ingest.reproduce.outcome import Limits, RunOutcome, RunSpec
from ingest.reproduce.scoring import classify_failure, compare_images, images_of, score_notebook, texts_equivalent
from tests.conftest import REAL_CORPUS, cli_env, real_notebooks


def _read(name: str) -> dict:
    return json.loads(nbformat.writes(nbformat.read(REAL_CORPUS / name, as_version=4)))


def _with_images(limit: int = 6) -> list[str]:
    found = []
    for path in real_notebooks():
        raw = path.read_text(errors="replace")
        if '"image/png"' in raw and path.stat().st_size < 600_000:
            found.append(path.name)
        if len(found) == limit:
            break
    return found


def _tiny(*sources: str) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    return json.loads(nbformat.writes(nb))


# --- scoring on real notebooks --------------------------------------------------------------------------

def test_a_real_notebook_scored_against_itself_reproduces_everything():
    names = _with_images()
    assert len(names) >= 3
    for name in names:
        nb = _read(name)
        statuses = {i: "ok" for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"}
        score = score_notebook(nb, copy.deepcopy(nb), statuses, "ok")
        assert score.ran_without_error
        assert score.n_cells_compared > 0, name
        assert score.same_results is True, (name, [c.difference for c in score.cells if c.comparison == "different"])
        assert score.same_plots is True, name
        assert score.n_images_same == score.n_images_compared > 0


def test_scoring_sees_real_differences_and_forgives_noise():
    name = next(n for n in _with_images(20) if sum(len(images_of(c.get("outputs", []))) for c in _read(n)["cells"]) >= 2)
    nb = _read(name)
    statuses = {i: "ok" for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"}
    image_cells = [i for i, c in enumerate(nb["cells"]) if images_of(c.get("outputs", []))]
    first, second = image_cells[0], image_cells[-1]

    # another real plot in place of the first one: a different plot, by perceptual hash
    swapped = copy.deepcopy(nb)
    out_a = next(o for o in swapped["cells"][first]["outputs"] if "image/png" in (o.get("data") or {}))
    out_b = next(o for o in nb["cells"][second]["outputs"] if "image/png" in (o.get("data") or {}))
    if out_a["data"]["image/png"] != out_b["data"]["image/png"]:
        out_a["data"]["image/png"] = out_b["data"]["image/png"]
        score = score_notebook(nb, swapped, statuses, "ok")
        cell = score.cells[first]
        assert cell.images_same is False and cell.max_phash_distance > 8
        assert score.same_plots is False and score.same_results is False
        assert score.same_results_ignoring_images is True

    # the same plot re-encoded (what another matplotlib build does to the bytes): still the same plot
    from PIL import Image
    import io

    reencoded = copy.deepcopy(nb)
    out = next(o for o in reencoded["cells"][first]["outputs"] if "image/png" in (o.get("data") or {}))
    before = out["data"]["image/png"]
    img = Image.open(io.BytesIO(base64.b64decode(before)))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    out["data"]["image/png"] = base64.b64encode(buf.getvalue()).decode()
    assert out["data"]["image/png"] != before
    score = score_notebook(nb, reencoded, statuses, "ok")
    assert score.cells[first].images_same is True and score.cells[first].max_phash_distance == 0
    assert score.same_plots is True

    # the run stopped before the last plot: not the same results, and the cell says why
    statuses_cut = {i: (s if i < second else "not_run") for i, s in statuses.items()}
    score = score_notebook(nb, nb, statuses_cut, "error")
    assert score.cells[second].comparison == "missing"
    assert score.same_results is False and score.same_plots is False


def test_a_cell_whose_code_was_stripped_but_outputs_kept_is_not_reproduced():
    # an exercise "solution": three code cells have no source but keep the author's outputs (a table, 2 plots);
    # a run cannot redraw them, so the notebook did not give the same results or plots
    nb = _read("guipsamora__pandas_exercises__07_Visualization__Scores__Solutions.ipynb")
    stripped = [i for i, c in enumerate(nb["cells"])
                if c["cell_type"] == "code" and not "".join(c["source"]).strip() and c.get("outputs")]
    assert len(stripped) == 3
    assert sum(len(images_of(nb["cells"][i]["outputs"])) for i in stripped) == 2
    executed = copy.deepcopy(nb)  # what a run gives: the cells with code as the original, the empty ones without output
    statuses = {}
    for i, c in enumerate(executed["cells"]):
        if c["cell_type"] == "code":
            runnable = bool("".join(c["source"]).strip())
            statuses[i] = "ok" if runnable else "skipped"
            if not runnable:
                c["outputs"], c["execution_count"] = [], None
    score = score_notebook(nb, executed, statuses, "ok")
    assert score.ran_without_error
    assert score.same_results is False and score.same_plots is False
    assert score.n_images_compared == 2 and score.n_images_same == 0
    assert score.n_cells_compared == 1 + len(stripped)
    for i in stripped:
        cell = score.cells[i]
        assert cell.comparison == "different" and cell.details == {"no_code": True}
        assert "no code" in cell.difference
    # a run that draws nothing still has nothing to say about empty cells the author never ran
    empty = _tiny("", "print(1)")
    empty["cells"][1]["outputs"] = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    empty["cells"][1]["execution_count"] = 1
    again = score_notebook(empty, copy.deepcopy(empty), {0: "skipped", 1: "ok"}, "ok")
    assert again.cells[0].comparison == "not_compared" and again.same_results is True


def test_text_normalisation():
    assert texts_equivalent("<matplotlib.lines.Line2D at 0x7f3a2c1e5f10>", "<matplotlib.lines.Line2D at 0x7fee01234567>")
    assert texts_equivalent("loss 0.30000000000000004", "loss 0.3")
    assert texts_equivalent("\x1b[31mValueError\x1b[0m at 2019-04-01 10:11:12", "ValueError at 2026-11-25 14:00:01")
    assert texts_equivalent("CPU times: user 5 ms\nWall time: 3.1 ms\n42", "CPU times: user 9 ms\nWall time: 8 ms\n42")
    assert not texts_equivalent("accuracy 0.81", "accuracy 0.79")
    assert not texts_equivalent("rows: 891", "rows: 890")  # integers are exact
    assert texts_equivalent("Random seed: 8731\nscore 0.5", "Random seed: 12\nscore 0.5")


def test_a_difference_in_an_unseeded_random_cell_is_flagged():
    """jakevdp's pandas notebook builds a DataFrame from np.random.rand without a seed: a rerun
    prints other numbers, and the score says that cell's difference may be chance."""
    nb = _read("jakevdp__PythonDataScienceHandbook__notebooks__03.01-Introducing-Pandas-Objects.ipynb")
    position = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and "np.random.rand" in "".join(c["source"])
                    and any(o.get("output_type") == "execute_result" for o in c.get("outputs", [])))
    rerun = copy.deepcopy(nb)
    out = next(o for o in rerun["cells"][position]["outputs"] if o.get("output_type") == "execute_result")
    out["data"]["text/plain"] = "".join(out["data"]["text/plain"]).replace("0.", "0.9")
    statuses = {i: "ok" for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"}
    score = score_notebook(nb, rerun, statuses, "ok")
    cell = score.cells[position]
    assert cell.comparison == "different" and cell.details.get("unseeded_random") is True
    assert not any(c.details.get("unseeded_random") for c in score.cells if c.position != position)


def test_failure_classes_of_the_errors_in_the_real_corpus():
    """Every error output stored in a real notebook, classified as if our run had stopped there."""
    seen: dict[str, set[str]] = {}
    for path in real_notebooks():
        try:
            nb = _read(path.name)
        except Exception:
            continue
        sources = ["".join(c.get("source", "")) if c["cell_type"] == "code" else "" for c in nb["cells"]]
        for position, cell in enumerate(nb["cells"]):
            for out in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
                if out.get("output_type") == "error":
                    cls, detail = classify_failure("error", out.get("ename"), out.get("evalue"), sources=sources, failing_cell=position)
                    seen.setdefault(out.get("ename"), set()).add(cls)
                    if out.get("ename") == "ModuleNotFoundError":
                        assert cls == "missing_module" and detail == "seaborn"
    assert seen["ImportError"] == {"missing_module"}  # "No module named fig_code" (Python 2 wording)
    assert seen["HTTPError"] == {"network"}
    assert "library_api_change" in seen["TypeError"]  # LGBMRegressor.fit(early_stopping_rounds=...)
    assert seen["ZeroDivisionError"] == {"exception"}
    assert len(seen) >= 10


def test_failure_classes_of_run_outcomes():
    sources = ["", "df.head()", "import pandas as pd\ndf = pd.read_csv('train.csv')"]
    assert classify_failure("error", "NameError", "name 'df' is not defined", sources=sources, failing_cell=1) == ("out_of_order", "df")
    assert classify_failure("error", "NameError", "name 'xrange' is not defined", sources=["for i in xrange(3): pass"], failing_cell=0) == ("python2", "xrange")
    assert classify_failure("error", "SyntaxError", "invalid syntax", sources=['print "hello"'], failing_cell=0)[0] == "python2"
    assert classify_failure("error", "FileNotFoundError", "[Errno 2] No such file or directory: '../input/titanic/train.csv'") == (
        "missing_data_file", "../input/titanic/train.csv")
    assert classify_failure("timeout", None, None) == ("timeout", None)
    assert classify_failure("oom", "DeadKernelError", "the kernel died")[0] == "memory"
    assert classify_failure("ok", None, None) == (None, None)


# --- the local backend ------------------------------------------------------------------------------------

def test_local_backend_refuses_untrusted_notebooks():
    from ingest.reproduce.local_backend import LocalBackend, UntrustedNotebooks

    with pytest.raises(UntrustedNotebooks, match="--trust-notebooks"):
        LocalBackend(trust_notebooks=False)


def test_local_backend_statuses():
    from ingest.reproduce.local_backend import LocalBackend

    backend = LocalBackend(trust_notebooks=True)
    ok = backend.run(RunSpec(_tiny("print('hi')", "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3]);"), timeout_s=60))
    assert ok.status == "ok", ok.detail
    assert [c["status"] for c in ok.cells] == ["ok", "ok"]
    assert ok.notebook["cells"][0]["outputs"][0]["text"] == "hi\n"
    assert any("image/png" in o.get("data", {}) for o in ok.notebook["cells"][1]["outputs"])

    error = backend.run(RunSpec(_tiny("x = 1", "1/0", "print('never')"), timeout_s=60))
    assert (error.status, error.ename, error.failing_cell) == ("error", "ZeroDivisionError", 1)
    assert [c["status"] for c in error.cells] == ["ok", "error", "not_run"]

    slow = backend.run(RunSpec(_tiny("import time; time.sleep(60)"), timeout_s=4))
    assert slow.status == "timeout" and slow.wall_s < 30

    big = backend.run(RunSpec(_tiny("x = bytearray(4 * 2**30)"), timeout_s=60, limits=Limits(memory_mb=1024)))
    assert big.status == "oom" and big.ename == "MemoryError"


# --- records -----------------------------------------------------------------------------------------------

@pytest.fixture
def ingested(session, tmp_path):
    from ingest.local import ingest_paths

    names = _with_images(2)
    settings = Settings(home=tmp_path / "home", workers=1)
    ingest_paths([REAL_CORPUS / n for n in names], session=session, settings=settings, cell_analyzer=None)
    return session.execute(text("SELECT id, sha256 FROM notebook ORDER BY id")).all()


def test_a_run_is_stored_once_linked_cell_by_cell(session, ingested):
    from db.queries import reproduce as q
    from db.queries.notebooks import rebuild_notebooks
    from ingest.reproduce.record import build_record

    notebook_id, sha = ingested[0]
    original = json.loads(json.dumps(rebuild_notebooks(session=session, sha256s=[sha])[sha]))
    # an outcome whose "executed notebook" is the original itself: every plot reproduced exactly
    cells = [{"index": i, "status": "ok" if c["cell_type"] == "code" and "".join(c["source"]).strip() else "skipped",
              "duration_s": 0.01, "execution_count": c.get("execution_count"), "truncated_bytes": 0}
             for i, c in enumerate(original["cells"])]
    outcome = RunOutcome(backend="local", status="ok", image="local:test", cells=cells, notebook=copy.deepcopy(original),
                         wall_s=1.0, run_s=0.5, started_at=1.7e9, finished_at=1.7e9 + 1)
    request_id = q.create_request(session=session, backend="local", image="local:test", timeout_s=60, limits={},
                                  data_dir=None, selection={}, n_notebooks=1)
    record = build_record(outcome=outcome, original=original,
                          cell_ids=q.cell_ids_by_position(session=session, notebook_id=notebook_id), worker="test")
    first = q.store_run(session=session, request_id=request_id, notebook_id=notebook_id, record=record)
    again = q.store_run(session=session, request_id=request_id, notebook_id=notebook_id, record=record)
    assert first is not None and again is None
    run = q.runs_by_id(session=session, ids=[first])[first]
    assert run.status == "ok" and run.same_results is True and run.same_plots is True and run.overhead_s == 0.5

    linked = session.execute(text(
        "SELECT count(*) FROM run_cell rc JOIN cell c ON c.id = rc.cell_id "
        "WHERE rc.run_id = :r AND c.position = rc.position AND c.notebook_id = :n"), {"r": first, "n": notebook_id}).scalar()
    assert linked == len(original["cells"])
    # a plot reproduced pixel for pixel is the very same image row as the original
    same_images = session.execute(text(
        "SELECT count(*) FROM run_output_image roi JOIN output_image oi ON oi.image_sha256 = roi.image_sha256 "
        "JOIN output o ON o.id = oi.output_id WHERE o.notebook_id = :n"), {"n": notebook_id}).scalar()
    assert same_images > 0
    # batch readers for the API
    cells_of = q.cells_of_runs(session=session, ids=[first])[first]
    outputs = q.outputs_of_run_cells(session=session, ids=[c.id for c in cells_of])
    assert sum(len(v) for v in outputs.values()) == session.execute(
        text("SELECT count(*) FROM output WHERE notebook_id = :n"), {"n": notebook_id}).scalar()
    facets = q.run_facets(session=session, filter=q.RunFilter(request_id=(request_id,)))
    assert facets["status"] == [("ok", 1)]


def test_procrastinate_lives_in_its_own_schema(engine):
    with engine.connect() as conn:
        tables = set(conn.execute(text(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables WHERE table_name LIKE 'procrastinate%'")).scalars())
    assert {"procrastinate.procrastinate_jobs", "procrastinate.procrastinate_workers"} <= tables
    assert not any(t.startswith("public.") for t in tables)


# --- the whole path, on real notebooks, with the local backend -------------------------------------------

SMALL_REAL = [
    "jakevdp__PythonDataScienceHandbook__notebooks__01.06-Errors-and-Debugging.ipynb",
    "adgirish__kaggleScape__data__script251.ipynb",
    "adgirish__kaggleScape__data__script762.ipynb",
]


def _nbatlas(args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ingest.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_cli_reproduce_local_backend_on_real_notebooks(fresh_database, tmp_path):
    from ingest.local import ingest_paths

    url = fresh_database()
    eng = create_engine(url)
    names = SMALL_REAL  # quick to run: the point here is the path, not the libraries
    with Session(eng) as session:
        ingest_paths([REAL_CORPUS / n for n in names], session=session, cell_analyzer=None,
                     settings=Settings(home=tmp_path / "h", database_url=url, workers=1))
    env = cli_env(url, tmp_path / "home")

    refused = _nbatlas(["reproduce", "--backend", "local", "--workers", "1"], env)
    assert refused.returncode != 0 and "--trust-notebooks" in refused.stderr
    with eng.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run_request")).scalar() == 0

    done = _nbatlas(["reproduce", "--backend", "local", "--trust-notebooks", "--workers", "2", "--timeout", "90", "--json"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["n_notebooks"] == summary["n_runs"] == len(names)
    with eng.connect() as conn:
        runs = conn.execute(text("SELECT notebook_id, status, n_code_cells, failure_class FROM run")).all()
        jobs = conn.execute(text("SELECT status::text, count(*) FROM procrastinate.procrastinate_jobs GROUP BY 1")).all()
        cells = conn.execute(text("SELECT count(*) FROM run_cell WHERE cell_id IS NULL")).scalar()
    assert len(runs) == len(names) and len({r.notebook_id for r in runs}) == len(names)
    by_name = {r.notebook_id: r for r in runs}
    assert all(r.status in ("ok", "error", "timeout", "oom", "killed") for r in runs)
    statuses = sorted(r.status for r in by_name.values())
    assert statuses == ["error", "error", "ok"]  # ZeroDivisionError (on purpose), a missing data file, ran
    assert sorted(r.failure_class or "" for r in runs) == ["", "exception", "missing_data_file"]
    assert all((r.status == "ok") == (r.failure_class is None) for r in runs)
    assert dict(jobs) == {"succeeded": len(names)}
    assert cells == 0

    # script762 is markdown only: its run is "ok" with no code to run, and the summaries say so
    assert [r.n_code_cells for r in runs if r.status == "ok"] == [0]
    assert (summary["ok"], summary["no_code"], summary["runs_with_code"], summary["ok_with_code"]) == (1, 1, 2, 0)
    assert summary["ok_rate"] == pytest.approx(1 / 3, abs=1e-3) and summary["ok_rate_with_code"] == 0.0

    shown = _nbatlas(["jobs", "--json"], env)
    assert shown.returncode == 0
    overview = json.loads(shown.stdout)
    assert overview["requests"][str(summary["request_id"])]["n_runs"] == len(names)
    assert overview["requests"][str(summary["request_id"])]["no_code"] == 1

    from api.app import create_app
    from tests.test_api_schema import gql

    app = create_app(Settings(home=tmp_path / "home", database_url=url), public=False)
    try:
        body = gql(app, "{ runRequests { nodes { summary { nRuns ok okRate noCode runsWithCode okWithCode okRateWithCode } } } }")
    finally:
        app.state.db.dispose()
    assert "errors" not in body, body["errors"]
    assert body["data"]["runRequests"]["nodes"][0]["summary"] == {
        "nRuns": 3, "ok": 1, "okRate": pytest.approx(1 / 3, abs=1e-3),
        "noCode": 1, "runsWithCode": 2, "okWithCode": 0, "okRateWithCode": 0.0}
    eng.dispose()


def test_job_folders_of_gone_processes_are_swept_by_name(tmp_path, monkeypatch):
    """A worker killed between making a run's folder and creating its container leaves a folder no
    container names: the sweep finds it by its name (the process that made it), and leaves the
    folders of live processes alone."""
    import tempfile

    from ingest.reproduce.docker_backend import _jobdir_prefix, sweep_job_folders
    from ingest.reproduce.outcome import owner_id

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "from ingest.reproduce.outcome import owner_id; print(owner_id())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert gone.rsplit(":", 2)[1] != str(owner_id().rsplit(":", 2)[1])
    orphan = Path(tempfile.mkdtemp(prefix=_jobdir_prefix(gone)))
    (orphan / "n16.ipynb").write_text("{}")
    ours = Path(tempfile.mkdtemp(prefix=_jobdir_prefix(owner_id())))
    unrelated = tmp_path / "nbatlas-run-made-by-someone-else"
    unrelated.mkdir()

    assert sweep_job_folders() == 1
    assert not orphan.exists() and ours.exists() and unrelated.exists()


def test_failure_classes_of_causes_the_real_corpus_hits(tmp_path):
    """The causes the full-corpus run left as a bare `exception`, with the messages the real libraries
    raise: matplotlib's renamed seaborn styles (jakevdp's and donnemartin's notebooks), a `pip install`
    through subprocess in the offline sandbox (dalloliogm's ensembles) and `ls ../input/...` through
    check_output (adgirish's TMDB notebook)."""
    import matplotlib.pyplot as plt

    with pytest.raises(OSError) as style:
        plt.style.use("seaborn-whitegrid")  # renamed seaborn-v0_8-whitegrid in matplotlib 3.6, gone in 3.8
    cls, detail = classify_failure("error", "OSError", str(style.value))
    assert cls == "library_api_change" and "'seaborn-whitegrid'" in detail
    # a style file of the author's own that is not there is not an API change
    with pytest.raises(OSError) as own:
        plt.style.use(str(tmp_path / "mystyle"))
    assert classify_failure("error", "OSError", str(own.value))[0] != "library_api_change"

    with pytest.raises(subprocess.CalledProcessError) as ls:
        subprocess.check_output(["ls", "../input/tmdb-movie-metadata/"], cwd=tmp_path, stderr=subprocess.DEVNULL)
    assert classify_failure("error", "CalledProcessError", str(ls.value)) == ("missing_data_file", "../input/tmdb-movie-metadata/")
    shell = subprocess.run("cat ../input/train.csv", shell=True, cwd=tmp_path, capture_output=True)
    shell_error = subprocess.CalledProcessError(shell.returncode, "cat ../input/train.csv")
    assert classify_failure("error", "CalledProcessError", str(shell_error)) == ("missing_data_file", "../input/train.csv")

    # pip's own exit status with no network is 1; what the exception says is the command
    for command, shown in ((["pip", "install", "-q", "optuna"], "pip install -q optuna"),
                           ([sys.executable, "-m", "pip", "install", "plotly"], f"{sys.executable} -m pip install plotly"),
                           (b"pip install -q plotly\n", "pip install -q plotly")):  # a %%sh cell
        error = subprocess.CalledProcessError(1, command)
        assert classify_failure("error", "CalledProcessError", str(error)) == ("network", shown), str(error)
    other = subprocess.CalledProcessError(128, ["git", "clone", "https://github.com/x/y"])
    assert classify_failure("error", "CalledProcessError", str(other)) == ("exception", "CalledProcessError")


def test_failure_classes_are_the_vocabulary_the_api_checks():
    from db.vocab import FAILURE_CLASSES
    from ingest.reproduce import failures, scoring

    assert failures.FAILURE_CLASSES is FAILURE_CLASSES and scoring.classify_failure is failures.classify_failure
    assert {"missing_module", "missing_data_file", "library_api_change", "network", "exception"} <= set(FAILURE_CLASSES)


def test_no_docker_engine_is_one_clear_line(fresh_database, tmp_path):
    """`worker`, `reproduce` and `runner-image build` with no engine at DOCKER_HOST: one line naming
    where nbatlas looked and what to do, exit 1 (the worker printed a 400-line traceback). The worker
    refuses to start even with --trust-notebooks: it would record every docker job as an infrastructure error."""
    url = fresh_database()
    env = cli_env(url, tmp_path / "home") | {"DOCKER_HOST": f"unix://{tmp_path}/no-such.sock", "COLUMNS": "80"}
    for args in (["worker", "--drain"], ["worker", "--drain", "--trust-notebooks"], ["reproduce", "--workers", "1"],
                 ["runner-image", "build"]):
        done = _nbatlas(args, env, timeout=120)
        assert done.returncode == 1, (args, done.stderr[-2000:])
        assert done.stderr.strip().splitlines() == [
            f"error: cannot reach the Docker engine at unix://{tmp_path}/no-such.sock (FileNotFoundError: No such file "
            "or directory); start dockerd or set DOCKER_HOST"], args
