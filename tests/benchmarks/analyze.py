"""Benchmark: what code understanding adds to ingesting the real corpus. Run by hand:

    /work/venv/bin/python tests/benchmarks/analyze.py [--workers N] [--repeat R]

In one run, on one embedded PostgreSQL, into fresh databases each time:
  * ingest of ../shared/corpus/real without analysis (the baseline),
  * ingest with analysis (the default: ``CodeAnalyzer`` in the parse workers, rows in the same batches),
  * ``nbatlas analyze`` alone over the notebooks ingested without it.
Prints JSON with the times (best of ``--repeat``) and the ratios to the baseline; the issue's budget is
``analysis_overhead_ratio`` <= 0.5 (analysis adds at most half the ingest time).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from db import schema  # noqa: E402
from db.server import create_database, embedded_uri, stop_embedded  # noqa: E402
from db.settings import Settings  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus" / "real"


def fresh(server: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    url = create_database(server, name)
    eng = create_engine(url)
    schema.upgrade(eng)
    eng.dispose()
    return url


def ingest_once(server: str, home: Path, workers: int, analyzer) -> tuple[float, str]:
    from ingest.local import ingest_paths

    url = fresh(server)
    settings = Settings(home=home, database_url=url, workers=workers)
    eng = create_engine(url)
    with Session(eng) as session:
        started = time.perf_counter()
        report = ingest_paths([CORPUS], session=session, settings=settings, cell_analyzer=analyzer)
        seconds = time.perf_counter() - started
    assert report.status == "finished", report.status
    eng.dispose()
    return seconds, url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from ingest.analyze import analyze
    from ingest.understand import ANALYZER_VERSION
    from ingest.understand.store import CodeAnalyzer

    tmp = Path(tempfile.mkdtemp(prefix="nbatlas-bench-"))
    os.chmod(tmp, 0o755)  # the embedded server runs as its own user
    server = embedded_uri(tmp / "pg")
    try:
        plain, analysed, alone = [], [], []
        for _ in range(args.repeat):
            seconds, url = ingest_once(server, tmp / "home", args.workers, None)
            plain.append(seconds)
            eng = create_engine(url)
            with Session(eng) as session:
                started = time.perf_counter()
                report = analyze(session=session, settings=Settings(home=tmp / "home", database_url=url, workers=args.workers))
                alone.append(time.perf_counter() - started)
            eng.dispose()
            seconds, url = ingest_once(server, tmp / "home", args.workers, CodeAnalyzer())
            analysed.append(seconds)
            eng = create_engine(url)
            with eng.connect() as conn:
                counts = conn.execute(text(
                    "SELECT (SELECT count(*) FROM notebook), (SELECT count(*) FROM cell_analysis), (SELECT count(*) FROM output_plot)"
                )).one()
            eng.dispose()
        base, with_analysis, job = min(plain), min(analysed), min(alone)
        print(json.dumps({
            "corpus": str(CORPUS),
            "notebooks": counts[0],
            "cells_analysed": counts[1],
            "figures": counts[2],
            "workers": args.workers,
            "repeat": args.repeat,
            "analyzer_version": ANALYZER_VERSION,
            "ingest_seconds_without_analysis": round(base, 3),
            "ingest_seconds_with_analysis": round(with_analysis, 3),
            "analyze_job_seconds": round(job, 3),
            "analysis_overhead_ratio": round((with_analysis - base) / base, 3),
            "analyze_job_to_ingest_ratio": round(job / base, 3),
            "analyze_job_notebooks": report.notebooks_analyzed,
        }, indent=2))
    finally:
        stop_embedded(tmp / "pg")


if __name__ == "__main__":
    main()
