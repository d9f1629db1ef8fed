"""Benchmark: reproduction throughput (1 and N workers) and the container's per-run overhead.

    /work/venv/bin/python tests/benchmarks/reproduce.py [--notebooks K] [--workers N] [--overhead-runs R]

Needs a Docker engine ($DOCKER_HOST, else a private dockerd is started like the tests do) and
builds or loads the runner image. On one embedded PostgreSQL in a temporary directory:

* ``throughput``: the same K real notebooks from ../shared/corpus/real, reproduced end to end (job
  queue, container, scoring, storing) by one worker process running 1 notebook at a time, then N at
  a time; notebooks per minute for each, and the parallel efficiency ``(rate_N / rate_1) / N``
  (the issue's target: >= 0.8 per core; N defaults to the number of cores).
* ``overhead``: one small real notebook that needs no library, run R times with the docker backend
  and R times with the local backend (nbclient in a child process), interleaved. For each backend,
  ``outside`` is the wall time minus the time measured inside the sandbox (process or container
  start, stop, removal, report read-back); ``container_overhead_s`` is docker's outside minus
  local's: what the container costs per run over a bare child process.

Prints one JSON object. Figures are ratios to baselines measured in the same run; the machine is
shared, so run it when it is quiet.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from db.server import create_database  # noqa: E402

REAL = REPO.parent / "shared" / "corpus" / "real"
# small real notebooks that run without errors or fail early for real reasons: a typical mix
DEFAULT_SAMPLE = [
    "guipsamora__pandas_exercises__05_Merge__Fictitous_Names__Solutions.ipynb",
    "guipsamora__pandas_exercises__07_Visualization__Scores__Solutions.ipynb",
    "slundberg__shap__notebooks__tabular_examples__tree_based_models__tree_shap_paper__Figure_3_-_User_Study.ipynb",
    "adgirish__kaggleScape__data__script762.ipynb",
    "adgirish__kaggleScape__data__script251.ipynb",
    "jakevdp__PythonDataScienceHandbook__notebooks__01.06-Errors-and-Debugging.ipynb",
    "rasbt__pattern_classification__README.ipynb",
    "donnemartin__data-science-ipython-notebooks__misc__regex.ipynb",
    "rohan-paul__General-Kaggle-Notebooks__Kaggle-Notebooks-For-Medium-Blogs__Axes-and-Dimensions-in-Numpy-and-Pandas-Array.ipynb",
    "guipsamora__pandas_exercises__07_Visualization__Chipotle__Solutions.ipynb",
    "jakevdp__PythonDataScienceHandbook__notebooks__05.00-Machine-Learning.ipynb",
    "rohan-paul__General-Kaggle-Notebooks__Dimensionality-Reduction-PCA-MNIST__t-SNE-MNIST-Kaggle-NB.ipynb",
]
OVERHEAD_NOTEBOOK = "adgirish__kaggleScape__data__script762.ipynb"


def _sample(k: int) -> list[Path]:
    chosen = [REAL / n for n in DEFAULT_SAMPLE if (REAL / n).exists()]
    if len(chosen) < k:
        chosen += [p for p in sorted(REAL.glob("*.ipynb")) if p not in chosen][: k - len(chosen)]
    return chosen[:k]


def _database(server_url: str) -> str:
    return create_database(server_url, f"bench_repro_{uuid.uuid4().hex[:8]}")


def _throughput(url: str, docker_factory, image: str, concurrency: int, where) -> dict:
    from sqlalchemy import create_engine as ce

    from ingest.reproduce import jobs
    from ingest.reproduce.outcome import Limits

    engine = ce(url)
    app = jobs.make_app(url, pool_size=concurrency + 4)
    submitted = jobs.submit(engine=engine, app=app, filter=where, limit=None, sample_seed=None, backend="docker",
                            image=image, timeout_s=180, limits=Limits(memory_mb=1536), data_dir=None)
    deps = jobs.WorkerDeps(engine=engine, docker_client_factory=docker_factory)
    t0 = time.perf_counter()
    jobs.run_workers(app, deps, jobs.WorkerOptions(concurrency=concurrency, drain=True, request_id=submitted.request_id,
                                                   poll_s=0.25))
    seconds = time.perf_counter() - t0
    s = jobs.summary(engine, [submitted.request_id])[submitted.request_id]
    engine.dispose()
    return {
        "concurrency": concurrency, "notebooks": submitted.n_notebooks, "results": s["n_runs"], "seconds": round(seconds, 2),
        "notebooks_per_minute": round(60 * s["n_runs"] / seconds, 2),
        "statuses": {k: s[k] for k in ("ok", "error", "timeout", "oom", "killed", "infrastructure_error") if s[k]},
        "mean_run_s": round(float(s["mean_run_s"] or 0), 3), "mean_overhead_s": round(float(s["mean_overhead_s"] or 0), 3),
    }


def _overhead(docker_backend, runs: int) -> dict:
    import nbformat

    from ingest.reproduce.local_backend import LocalBackend
    from ingest.reproduce.outcome import RunSpec

    nb = json.loads(nbformat.writes(nbformat.read(REAL / OVERHEAD_NOTEBOOK, as_version=4)))
    local = LocalBackend(trust_notebooks=True)
    walls: dict[str, list[float]] = {"docker": [], "local": []}
    inside: dict[str, list[float]] = {"docker": [], "local": []}
    statuses = set()
    for _ in range(runs):  # interleaved, so a busy moment hurts both alike
        for name, backend in (("docker", docker_backend), ("local", local)):
            outcome = backend.run(RunSpec(nb, name=OVERHEAD_NOTEBOOK, timeout_s=120))
            statuses.add((name, outcome.status))
            walls[name].append(outcome.wall_s)
            inside[name].append(outcome.run_s or 0.0)
    d, l = statistics.median(walls["docker"]), statistics.median(walls["local"])
    # what each backend adds around the notebook's own execution (measured inside the sandbox)
    outside = {k: statistics.median(w - i for w, i in zip(walls[k], inside[k])) for k in walls}
    return {
        "notebook": OVERHEAD_NOTEBOOK, "runs": runs, "statuses": sorted(f"{a}:{b}" for a, b in statuses),
        "docker_median_wall_s": round(d, 3), "local_median_wall_s": round(l, 3),
        "docker_median_inside_s": round(statistics.median(inside["docker"]), 3),
        "local_median_inside_s": round(statistics.median(inside["local"]), 3),
        "docker_median_outside_s": round(outside["docker"], 3), "local_median_outside_s": round(outside["local"], 3),
        "container_overhead_s": round(outside["docker"] - outside["local"], 3),
        "wall_difference_s": round(d - l, 3), "docker_over_local_wall": round(d / l, 2) if l else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=int, default=12)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--overhead-runs", type=int, default=5)
    args = parser.parse_args()

    import docker

    from db import schema
    from db.queries.filters import NotebookFilter
    from db.server import embedded_uri, stop_embedded
    from db.settings import Settings
    from ingest.local import ingest_paths
    from ingest.reproduce.docker_backend import DockerBackend
    from ingest.reproduce.runner_image import RUNNER_TAG, build_runner_image
    from tests.docker_engine import start_engine, stop_engine

    started_engine = None
    if os.environ.get("DOCKER_HOST"):
        def factory():
            return docker.from_env(timeout=300)
    else:
        started_engine = start_engine()

        def factory():
            return started_engine.client(timeout=300)
    client = factory()
    t0 = time.perf_counter()
    image = build_runner_image(client, tag=RUNNER_TAG)
    image_s = time.perf_counter() - t0

    tmp = Path(tempfile.mkdtemp(prefix="nbatlas-bench-"))
    pgdata = tmp / "pg"
    try:
        server = embedded_uri(pgdata)
        url = _database(server)
        engine = create_engine(url)
        schema.upgrade(engine)
        sample = _sample(args.notebooks)
        with Session(engine) as session:
            ingest_paths(sample, session=session, cell_analyzer=None,
                         settings=Settings(home=tmp / "home", database_url=url, workers=1))
        where = NotebookFilter(ids=tuple(engine.connect().execute(text("SELECT id FROM notebook")).scalars()))

        one = _throughput(url, factory, RUNNER_TAG, 1, where)
        many = _throughput(url, factory, RUNNER_TAG, args.workers, where)
        speedup = many["notebooks_per_minute"] / one["notebooks_per_minute"]
        overhead = _overhead(DockerBackend(client, RUNNER_TAG), args.overhead_runs)
        print(json.dumps({
            "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
            "runner_image": {"tag": RUNNER_TAG, "from": image.from_cache, "seconds": round(image_s, 2)},
            "throughput_1_worker": one,
            f"throughput_{args.workers}_workers": many,
            "speedup": round(speedup, 3),
            "parallel_efficiency": round(speedup / args.workers, 3),
            "target_parallel_efficiency": 0.8,
            "overhead": overhead,
        }, indent=2))
        engine.dispose()
    finally:
        stop_embedded(pgdata)
        if started_engine is not None:
            stop_engine(started_engine.state_dir, background_remove=True)


if __name__ == "__main__":
    main()
