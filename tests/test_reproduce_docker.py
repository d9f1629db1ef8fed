"""Reproduction in real containers: hostile notebooks, real notebooks, a killed worker.

Needs a Docker engine: $DOCKER_HOST (``.ci/docker-engine.sh start`` exports it), else a private
dockerd started here for the session (root with docker.io installed). The runner image is built
from a debootstrap base, or loaded from the cache (``NBATLAS_RUNNER_CACHE``). Without an engine
every test here is skipped, and the skip says why.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import nbformat
import pytest
from sqlalchemy import create_engine, text
from sqlmodel import Session

from db import schema
from db.settings import Settings
from ingest.reproduce.outcome import Limits, RunSpec
from db.server import create_database, drop_database
from tests.conftest import REAL_CORPUS, cli_env

RUNNER = "nbatlas-runner:latest"


# --- engine, image, databases ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def docker_client():
    import docker

    reason = os.environ.get("NBATLAS_DOCKER_UNAVAILABLE")
    if reason:
        pytest.skip(f"no Docker engine: {reason}")
    started = None
    if os.environ.get("DOCKER_HOST"):
        client = docker.from_env(timeout=300)
        try:
            client.ping()
        except Exception as exc:  # noqa: BLE001
            pytest.skip(f"no Docker engine at DOCKER_HOST={os.environ['DOCKER_HOST']}: {exc}")
    else:
        from tests.docker_engine import EngineUnavailable, default_data_root, start_engine, stop_engine

        try:
            started = start_engine(data_root=default_data_root())
        except EngineUnavailable as exc:
            pytest.skip(f"no Docker engine: {exc}")
        client = started.client(timeout=300)
        os.environ["DOCKER_HOST"] = started.url  # for the nbatlas subprocesses
    yield client
    client.close()
    if started is not None:
        os.environ.pop("DOCKER_HOST", None)
        stop_engine(started.state_dir, background_remove=True)


@pytest.fixture(scope="session")
def runner_image(docker_client) -> str:
    from ingest.reproduce.runner_image import RunnerImageError, build_runner_image

    reason = os.environ.get("NBATLAS_RUNNER_UNAVAILABLE")
    if reason:
        pytest.skip(f"no runner image: {reason}")
    try:
        build_runner_image(docker_client, tag=RUNNER)
    except RunnerImageError as exc:
        pytest.skip(f"the runner image could not be built here: {exc}")
    return RUNNER


@pytest.fixture(scope="session")
def backend(docker_client, runner_image):
    from ingest.reproduce.docker_backend import DockerBackend

    return DockerBackend(docker_client, runner_image)


def _ours(client) -> list:
    from ingest.reproduce.docker_backend import our_containers

    return our_containers(client)


@pytest.fixture
def no_leak(docker_client):
    yield
    left = _ours(docker_client)
    assert left == [], f"containers left behind: {[(c['Names'], c['State']) for c in left]}"


def _tiny(*sources: str) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    return json.loads(nbformat.writes(nb))


def _outputs_text(outcome, index: int) -> str:
    cell = outcome.notebook["cells"][index]
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


# --- isolation ---------------------------------------------------------------------------------------------

def test_the_sandbox_is_what_it_claims(backend, no_leak):
    """From inside: not root, no capabilities, no-new-privileges, only loopback, read-only root,
    the memory/pids limits, the notebook in /kaggle/working."""
    probe = _tiny(
        "import os\n"
        "status = dict(line.split(':\\t', 1) for line in open('/proc/self/status').read().splitlines() if ':\\t' in line)\n"
        "print(os.getuid(), status['CapEff'].strip(), status['NoNewPrivs'].strip())\n"
        "print(sorted(os.listdir('/sys/class/net')))\n"
        "print(sorted(os.listdir('/kaggle/working')))\n"
        "def first(*paths):\n"
        "    for p in paths:\n"
        "        try:\n"
        "            return open(p).read().strip()\n"
        "        except OSError:\n"
        "            pass\n"
        "print(first('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'))\n"
        "print(first('/sys/fs/cgroup/pids.max', '/sys/fs/cgroup/pids/pids.max'))\n",
        "try:\n    open('/usr/nbatlas-probe', 'w')\nexcept OSError as exc:\n    print(type(exc).__name__, exc.errno)",
    )
    outcome = backend.run(RunSpec(probe, name="probe.ipynb", timeout_s=60, limits=Limits(memory_mb=512, pids=128)))
    assert outcome.status == "ok", (outcome.detail, outcome.evalue)
    uid_caps, nets, working, memory, pids = _outputs_text(outcome, 0).splitlines()
    assert uid_caps == "1000 0000000000000000 1"
    assert nets == "['lo']"
    assert "probe.ipynb" in working
    assert int(memory) == 512 * 1024 * 1024
    assert pids == "128"
    assert _outputs_text(outcome, 1).strip() == "OSError 30"  # EROFS: read-only file system
    assert outcome.image_digest and outcome.image_digest.startswith("sha256:")


# --- hostile notebooks ---------------------------------------------------------------------------------------

@pytest.fixture
def loopback_listener():
    """A TCP server on the host's loopback: a container sharing the host network would reach it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    accepted: list = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept())
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join(timeout=2)
    server.close()


def test_network_is_unreachable(backend, loopback_listener, no_leak):
    port, accepted = loopback_listener
    nb = _tiny("import os; print(sorted(os.listdir('/sys/class/net')))",
               f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=5)")
    outcome = backend.run(RunSpec(nb, timeout_s=60, limits=Limits(memory_mb=512)))
    assert outcome.status == "error" and outcome.ename == "ConnectionRefusedError"
    assert outcome.failing_cell == 1
    assert _outputs_text(outcome, 0).strip() == "['lo']"
    assert accepted == []


def test_allocating_4gb_under_a_512mb_limit_is_oom(backend, no_leak):
    nb = _tiny("print('start')", "x = b'x' * (4 * 2**30)", "print('never')")
    outcome = backend.run(RunSpec(nb, timeout_s=60, limits=Limits(memory_mb=512)))
    assert outcome.status == "oom"
    assert outcome.oom_killed is True
    assert [c["status"] for c in outcome.cells] == ["ok", "oom", "not_run"]


def test_a_fork_bomb_hits_the_pids_limit(backend, no_leak):
    bomb = (
        "import os, time\nroot = os.getpid()\ntry:\n    while True:\n        os.fork()\n"
        "except BlockingIOError:\n    if os.getpid() != root:\n        time.sleep(1)\n        os._exit(0)\n    raise"
    )
    outcome = backend.run(RunSpec(_tiny(bomb), timeout_s=60, limits=Limits(memory_mb=1024, pids=64)))
    assert outcome.status == "error" and outcome.ename == "BlockingIOError"


def test_writing_outside_the_scratch_fails(backend, tmp_path, no_leak):
    data = tmp_path / "data"
    (data / "competition").mkdir(parents=True)
    (data / "competition" / "train.csv").write_text("a,b\n1,2\n")
    os.chmod(data / "competition" / "train.csv", 0o666)  # writable to anyone: only the read-only mount stops it
    nb = _tiny(
        "print(open('/kaggle/input/competition/train.csv').read().splitlines()[0])",
        "open('/kaggle/working/out.csv', 'w').write('ok'); print('scratch ok')",
        "open('/kaggle/input/competition/train.csv', 'a').write('tampered')",
    )
    outcome = backend.run(RunSpec(nb, timeout_s=60, limits=Limits(memory_mb=512), data_dir=data))
    assert _outputs_text(outcome, 0).strip() == "a,b"
    assert _outputs_text(outcome, 1).strip() == "scratch ok"
    assert outcome.status == "error" and outcome.ename == "OSError" and outcome.failing_cell == 2
    assert "Read-only file system" in outcome.evalue  # EROFS, not a permission error
    assert (data / "competition" / "train.csv").read_text() == "a,b\n1,2\n"
    etc = _tiny("open('/etc/passwd', 'a').write('x')")
    assert backend.run(RunSpec(etc, timeout_s=60)).ename in ("OSError", "PermissionError")


def test_sleeping_past_the_timeout(backend, no_leak):
    nb = _tiny("print('before')", "import time; time.sleep(600)", "print('never')")
    outcome = backend.run(RunSpec(nb, timeout_s=8, limits=Limits(memory_mb=512)))
    assert outcome.status == "timeout" and outcome.failing_cell == 1
    assert [c["status"] for c in outcome.cells] == ["ok", "timeout", "not_run"]
    assert _outputs_text(outcome, 0).strip() == "before"  # partial outputs are kept
    assert outcome.wall_s < 8 + 25


def test_printing_100mb_is_capped(backend, no_leak):
    nb = _tiny("import sys\nline = 'x' * 999 + '\\n'\nfor _ in range(100_000):\n    sys.stdout.write(line)", "print('after')")
    limits = Limits(memory_mb=1024, max_cell_output_bytes=1_000_000, max_output_bytes=4_000_000)
    outcome = backend.run(RunSpec(nb, timeout_s=120, limits=limits))
    assert outcome.status == "ok" and outcome.truncated
    kept = len(_outputs_text(outcome, 0))
    assert kept == 1_000_000
    assert outcome.cells[0]["truncated_bytes"] == 100_000_000 - 1_000_000
    assert outcome.report_bytes < limits.max_report_bytes
    assert _outputs_text(outcome, 1).strip() == "after"


# --- real notebooks through the whole path ----------------------------------------------------------------

# a sample of real notebooks: deterministic ones, ones needing libraries the image lacks, one reading data
REAL_SAMPLE = [
    "guipsamora__pandas_exercises__05_Merge__Fictitous_Names__Solutions.ipynb",
    "jakevdp__PythonDataScienceHandbook__notebooks__03.01-Introducing-Pandas-Objects.ipynb",
    "jakevdp__PythonDataScienceHandbook__notebooks__01.06-Errors-and-Debugging.ipynb",
    "adgirish__kaggleScape__data__script251.ipynb",
    "rohan-paul__General-Kaggle-Notebooks__Dimensionality-Reduction-PCA-MNIST__t-SNE-MNIST-Kaggle-NB.ipynb",
    "CamDavidsonPilon__Probabilistic-Programming-and-Bayesian-Methods-for-Hackers__sandbox__SpaceShuttleBayesFactor.ipynb",
    "slundberg__shap__notebooks__tabular_examples__tree_based_models__tree_shap_paper__Figure_3_-_User_Study.ipynb",
]
# a solutions notebook whose code was stripped but whose outputs were kept: it runs, yet cannot give its results
STRIPPED = "guipsamora__pandas_exercises__05_Merge__Fictitous_Names__Solutions.ipynb"
SAME_PLOT = "slundberg__shap__notebooks__tabular_examples__tree_based_models__tree_shap_paper__Figure_3_-_User_Study.ipynb"


@pytest.fixture(scope="module")
def real_database(server_url, tmp_path_factory):
    from ingest.local import ingest_paths

    name = f"nbatlas_repro_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    eng = create_engine(url)
    schema.upgrade(eng)
    with Session(eng) as session:
        ingest_paths([REAL_CORPUS / n for n in REAL_SAMPLE], session=session, cell_analyzer=None,
                     settings=Settings(home=tmp_path_factory.mktemp("home"), database_url=url, workers=1))
    yield url, eng
    eng.dispose()
    drop_database(server_url, name)


def _nbatlas(args: list[str], env: dict, **kwargs):
    return subprocess.run([sys.executable, "-m", "ingest.cli", *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, **kwargs)


def test_real_notebooks_each_end_with_one_scored_run(real_database, runner_image, docker_client, tmp_path, no_leak):
    url, eng = real_database
    env = cli_env(url, tmp_path / "home")
    done = _nbatlas(["reproduce", "--image", runner_image, "--workers", "2", "--timeout", "120", "--memory-mb", "1024",
                     "--json"], env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["n_runs"] == summary["n_notebooks"] == len(REAL_SAMPLE)
    with eng.connect() as conn:
        runs = {row.place.rsplit("/", 1)[-1]: row for row in conn.execute(text(
            "SELECT r.*, s.location AS place FROM run r JOIN source s ON s.notebook_id = r.notebook_id "
            "WHERE r.request_id = :rid"), {"rid": summary["request_id"]})}
        stored_images = conn.execute(text(
            "SELECT count(*) FROM run_output_image roi JOIN image i ON i.sha256 = roi.image_sha256")).scalar()
    assert set(runs) == set(REAL_SAMPLE)
    assert all(r.status in ("ok", "error", "timeout", "oom", "killed") for r in runs.values())
    assert all(r.image_digest and r.backend == "docker" for r in runs.values())

    stripped = runs[STRIPPED]
    assert stripped.status == "ok" and stripped.same_results is False and stripped.n_cells_compared >= 1
    with eng.connect() as conn:
        differing = conn.execute(text("SELECT details FROM run_cell WHERE run_id = :r AND comparison = 'different'"),
                                 {"r": stripped.id}).scalars().all()
    assert differing and all((d or {}).get("no_code") for d in differing)  # only the stripped cells differ
    # a real plot drawn again by another matplotlib, on another machine, years later: the same plot
    plot = runs[SAME_PLOT]
    assert (plot.status, plot.same_results, plot.same_plots) == ("ok", True, True)
    assert plot.n_images_same == plot.n_images_compared == 1
    assert runs["rohan-paul__General-Kaggle-Notebooks__Dimensionality-Reduction-PCA-MNIST__t-SNE-MNIST-Kaggle-NB.ipynb"].failure_class in (
        "missing_module", "missing_data_file")
    assert runs["adgirish__kaggleScape__data__script251.ipynb"].failure_class == "missing_data_file"
    pandas = runs["jakevdp__PythonDataScienceHandbook__notebooks__03.01-Introducing-Pandas-Objects.ipynb"]
    # pandas 2 removed what the 2016 notebook used: it runs for dozens of cells, many of them the same
    assert pandas.n_cells_run > 20 and pandas.n_cells_same > 10 and pandas.same_results is False
    assert stored_images >= 1  # the reproduced plot, in the shared image table


def _sleeping_notebooks(folder: Path, count: int, *, seconds: float) -> Path:
    """``count`` notebooks that sleep, then print the square of their number: a known duration and a known output."""
    folder.mkdir()
    for i in range(count):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(f"import time\ntime.sleep({seconds})\nprint({i} * {i})")]
        nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
        nbformat.write(nb, folder / f"n{i:02d}.ipynb")
    return folder


def _kill_a_worker_mid_run_then_drain(eng, env, runner_image: str, *, workers: int, n_notebooks: int):
    """Start ``nbatlas reproduce``, SIGKILL it while a job is running, drain the queue with ``nbatlas worker``.

    Returns one row per notebook (runs, worst status, highest attempt) and the job counts by status.
    """
    env = {**env, "NBATLAS_REPRODUCE_HEARTBEAT_S": "1", "NBATLAS_REPRODUCE_STALLED_AFTER_S": "4"}
    first = subprocess.Popen([sys.executable, "-m", "ingest.cli", "reproduce", "--image", runner_image,
                              "--workers", str(workers), "--timeout", "60", "--quiet"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with eng.connect() as conn:
                n_runs = conn.execute(text("SELECT count(*) FROM run")).scalar()
                doing = len(_running_with_no_run_stored(conn))
            # a job stays 'doing' for a moment after its run is stored (then it is marked done): a kill
            # there is no kill mid-run, and on a loaded machine that moment is long enough to hit
            if n_runs >= 3 and doing >= 1:
                break
            assert first.poll() is None, "the first worker ended before it could be killed"
            time.sleep(0.3)
        else:
            pytest.fail("the first worker never got going")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    with eng.connect() as conn:
        killed_mid_run = _running_with_no_run_stored(conn)
        runs_before = conn.execute(text("SELECT count(*) FROM run")).scalar()
    assert killed_mid_run and runs_before < n_notebooks

    second = _nbatlas(["worker", "--drain", "--concurrency", "2"], env, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    with eng.connect() as conn:
        per_notebook = conn.execute(text(
            "SELECT n.id, count(r.id) AS runs, min(r.status) AS status, max(r.attempt) AS attempt "
            "FROM notebook n LEFT JOIN run r ON r.notebook_id = n.id GROUP BY n.id")).all()
        jobs = dict(conn.execute(text(
            "SELECT status::text, count(*) FROM procrastinate.procrastinate_jobs GROUP BY 1")).all())
    import tempfile

    assert not list(Path(tempfile.gettempdir()).glob("nbatlas-run-*"))  # the killed worker's job folders, swept too
    retried = {row.id for row in per_notebook if row.attempt > 1}
    assert killed_mid_run <= retried, (killed_mid_run, per_notebook)  # each run cut short ran again
    return per_notebook, jobs


def _running_with_no_run_stored(conn) -> set[int]:
    """Notebooks whose job is being worked on and whose run is not stored yet."""
    return set(conn.execute(text(
        "SELECT (j.args->>'notebook_id')::int FROM procrastinate.procrastinate_jobs j WHERE j.status = 'doing' "
        "AND NOT EXISTS (SELECT 1 FROM run r WHERE r.notebook_id = (j.args->>'notebook_id')::int)")).scalars())


def test_sigkill_a_worker_mid_run_then_another_finishes_with_one_result_each(
    fresh_database, runner_image, docker_client, tmp_path, no_leak
):
    from ingest.local import ingest_paths

    url = fresh_database()
    eng = create_engine(url)
    with Session(eng) as session:
        ingest_paths([_sleeping_notebooks(tmp_path / "twenty", 20, seconds=1)], session=session, cell_analyzer=None,
                     settings=Settings(home=tmp_path / "h", database_url=url, workers=1))
    per_notebook, jobs = _kill_a_worker_mid_run_then_drain(eng, cli_env(url, tmp_path / "home"), runner_image,
                                                           workers=2, n_notebooks=20)
    with eng.connect() as conn:
        outputs = conn.execute(text("SELECT text FROM run_output WHERE name = 'stdout'")).scalars().all()
    assert len(per_notebook) == 20
    assert all(row.runs == 1 for row in per_notebook), per_notebook
    assert all(row.status == "ok" for row in per_notebook)
    assert any(row.attempt > 1 for row in per_notebook)  # the killed worker's jobs were retried
    assert jobs.get("doing", 0) == 0 and jobs.get("todo", 0) == 0
    assert sorted(int(t) for t in outputs) == sorted(i * i for i in range(20))
    eng.dispose()
    # the killed worker's containers were swept by the second one (no_leak checks the engine is clean)


def test_sigkill_a_worker_during_twenty_real_notebooks(fresh_database, runner_image, docker_client, tmp_path, no_leak):
    """The same kill over real notebooks: the twenty smallest of the corpus (fast to run, many fail to import)."""
    from ingest.local import ingest_paths

    twenty = sorted(REAL_CORPUS.glob("*.ipynb"), key=lambda p: (p.stat().st_size, p.name))[:20]
    url = fresh_database()
    eng = create_engine(url)
    with Session(eng) as session:
        report = ingest_paths(twenty, session=session, cell_analyzer=None,
                              settings=Settings(home=tmp_path / "h", database_url=url, workers=1))
    assert report.notebooks_added == 20 and not report.problems
    # one worker at a time, so that the kill lands while a run is in progress and others are still queued
    per_notebook, jobs = _kill_a_worker_mid_run_then_drain(eng, cli_env(url, tmp_path / "home"), runner_image,
                                                           workers=1, n_notebooks=20)
    with eng.connect() as conn:
        runs = conn.execute(text(
            "SELECT s.location, r.status, r.attempt, r.failure_class FROM run r "
            "JOIN source s ON s.notebook_id = r.notebook_id")).all()
    print("statuses after the kill:", sorted((r.status, r.failure_class or "", r.attempt) for r in runs))
    assert len(per_notebook) == 20
    assert all(row.runs == 1 for row in per_notebook), per_notebook
    assert {r.location.rsplit("/", 1)[-1] for r in runs} == {p.name for p in twenty}
    assert all(r.status in ("ok", "error", "timeout", "oom") for r in runs), runs
    assert all(r.status == "ok" or r.failure_class for r in runs), runs  # every failure classified
    assert any(r.attempt > 1 for r in runs)  # the killed worker's job ran again, and counted once
    assert jobs.get("doing", 0) == 0 and jobs.get("todo", 0) == 0
    eng.dispose()


def test_sigterm_stops_a_run_cleanly_and_keeps_the_rest_queued(fresh_database, runner_image, docker_client, tmp_path, no_leak):
    from ingest.local import ingest_paths

    url = fresh_database()
    eng = create_engine(url)
    with Session(eng) as session:
        ingest_paths([_sleeping_notebooks(tmp_path / "slow", 3, seconds=300)], session=session, cell_analyzer=None,
                     settings=Settings(home=tmp_path / "h", database_url=url, workers=1))
    env = cli_env(url, tmp_path / "home")
    proc = subprocess.Popen([sys.executable, "-m", "ingest.cli", "reproduce", "--image", runner_image, "--workers", "1",
                             "--timeout", "600", "--quiet"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _ours(docker_client):
            time.sleep(0.3)
        assert _ours(docker_client), "no container started"
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 130, stderr[-2000:]
    assert _ours(docker_client) == []
    with eng.connect() as conn:
        runs = conn.execute(text("SELECT status, detail FROM run")).all()
        jobs = dict(conn.execute(text("SELECT status::text, count(*) FROM procrastinate.procrastinate_jobs GROUP BY 1")).all())
    assert runs == [], (runs, stderr[-2000:])  # an interruption is not a result of the notebook
    assert jobs == {"todo": 3}, (jobs, stderr[-2000:])
    eng.dispose()
