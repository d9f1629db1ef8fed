"""Benchmark: the GraphQL API against hand-written endpoints serving the same data, in the same run.

    /work/venv/bin/python tests/benchmarks/api.py [--requests N] [--database-url URL]

On one embedded PostgreSQL in a temporary directory (or ``--database-url``, a database holding an
ingested corpus), with all of ../shared/corpus/real ingested, one ``uvicorn`` process serves both:

* ``/graphql``: the API as ``nbatlas serve`` builds it (private mode);
* ``/baseline/q1..q5``: plain FastAPI routes that call the same ``db.queries`` functions (so the
  same SQL, through the same thread pool and connection pool) and return the rows as JSON with
  orjson, with no GraphQL in between.

For the five typical queries of the issue (a page of 20 notebooks with their first 10 cells; 50
images filtered by mime; full-text search, top 20; facets; one notebook with everything) it measures
p50/p95 latency over HTTP, one request at a time, the two kinds interleaved, and prints each as a
ratio to the baseline (target: within 3x). It also prints the in-process cost per resolved field
(strawberry executing a page of 1,000 cells, database time excluded, against psycopg fetching the
same rows) and the export throughput as a ratio to ``COPY (same SELECT) TO STDOUT`` (target >= 0.5).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import orjson  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from ingest.serve_process import ServerNotServing, free_port, stop_server, wait_until_serving  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus" / "real"

QUERIES = {
    "q1_notebooks_with_first_cells": (
        """{ notebooks(first: 20) { nodes { dbId sha256 language nCells
             cells(first: 10) { nodes { dbId position cellType source executionCount } } } } }""",
        None,
    ),
    "q2_images_by_mime": (
        """{ images(first: 50, filter: {mime: ["image/png"]}) { nodes { sha256 mime width height sizeBytes } } }""",
        None,
    ),
    "q3_search_top20": (
        """query($q: String!) { search(query: $q, first: 20) {
             nodes { kind rank snippet cell { dbId notebookSha: notebook { sha256 } position source } } } }""",
        {"q": "confusion matrix"},
    ),
    "q4_facets": (
        """{ mime: facets(field: MIME_TYPE) { value count } cellType: facets(field: CELL_TYPE) { value count }
             language: facets(field: LANGUAGE) { value count } }""",
        None,
    ),
    "q5_one_notebook_with_everything": (
        """query($id: ID!) { notebook(id: $id) { dbId sha256 language kernelName metadata nCells
             sources { kind location member fetchedAt }
             cells(first: 1000) { nodes { dbId position cellType source executionCount metadata
               outputs { dbId position outputType mimeTypes data text name ename evalue traceback
                 images { sha256 mime width height sizeBytes } } } } } }""",
        None,  # filled in with the notebook that has the most image outputs
    ),
}


# --- the app served: the real API plus the hand-written baseline routes ----------------------------


def create_bench_app():
    """uvicorn factory: ``api.app.create_app()`` with ``/baseline/*`` routes beside ``/graphql``."""
    from fastapi import Response

    from api.app import create_app
    from db.queries import browse, facets, search
    from db.queries.filters import ImageFilter
    from db.settings import Settings

    settings = Settings()
    app = create_app(settings, public=False)
    db = app.state.db

    def rows(rs):
        return [r._asdict() for r in rs]

    def out(obj) -> Response:
        return Response(orjson.dumps(obj), media_type="application/json")

    @app.get("/baseline/q1")
    async def q1():
        nbs = (await db.read(browse.notebook_page, first=20))[:20]
        cells = await db.read(browse.cells_of_notebooks, ids=[n.id for n in nbs], first=10)
        return out([
            {"id": n.id, "sha256": n.sha256, "language": n.language, "n_cells": n.n_cells,
             "cells": [{"id": c.id, "position": c.position, "cell_type": c.cell_type, "source": c.source,
                        "execution_count": c.execution_count} for c in cells.get(n.id, [])[:10]]}
            for n in nbs
        ])

    @app.get("/baseline/q2")
    async def q2():
        imgs = await db.read(browse.image_page, filter=ImageFilter(mime=("image/png",)), first=50)
        return out(rows(imgs[:50]))

    @app.get("/baseline/q3")
    async def q3(q: str):
        hits = (await db.read(search.search_cells, query=q, first=20))[:20]
        nbs = await db.read(browse.notebooks_by_id, ids=list({h.notebook_id for h in hits}))
        return out([
            {"kind": h.kind, "rank": h.rank, "snippet": h.snippet, "cell": {
                "id": h.id, "notebook": {"sha256": nbs[h.notebook_id].sha256}, "position": h.position,
                "source": h.source}}
            for h in hits
        ])

    @app.get("/baseline/q4")
    async def q4():
        result = {}
        for name in ("mime_type", "cell_type", "language"):
            pairs = await db.read(facets.facet_counts, field=name, first=1000)
            result[name] = [{"value": v, "count": n} for v, n in pairs]
        return out(result)

    @app.get("/baseline/q5")
    async def q5(id: int):
        nb = (await db.read(browse.notebooks_by_id, ids=[id]))[id]
        sources = await db.read(browse.sources_of_notebooks, ids=[id])
        cells = (await db.read(browse.cells_of_notebooks, ids=[id], first=1000)).get(id, [])[:1000]
        outputs = await db.read(browse.outputs_of_cells, ids=[c.id for c in cells if c.cell_type == "code"])
        images = await db.read(browse.images_of_outputs, ids=[o.id for os_ in outputs.values() for o in os_])
        def pick(row, names):
            return {name: getattr(row, name) for name in names}

        return out({
            **pick(nb, ("id", "sha256", "language", "kernel_name", "metadata", "n_cells")),
            "sources": [pick(r, ("kind", "location", "member", "fetched_at")) for r in sources.get(id, [])],
            "cells": [{
                **pick(c, ("id", "position", "cell_type", "source", "execution_count", "metadata")),
                "outputs": [{
                    **pick(o, ("id", "position", "output_type", "mime_types", "data", "text", "name", "ename",
                               "evalue", "traceback")),
                    "images": [pick(i, ("sha256", "mime", "width", "height", "size_bytes")) for i in images.get(o.id, [])],
                } for o in outputs.get(c.id, [])],
            } for c in cells],
        })

    return app


# --- helpers ---------------------------------------------------------------------------------------


def corpus_database(server: str) -> str:
    from sqlmodel import Session

    from db import schema
    from db.server import create_database
    from db.settings import Settings
    from ingest.local import ingest_paths

    name = f"bench_api_{uuid.uuid4().hex[:8]}"
    url = create_database(server, name)
    eng = create_engine(url)
    schema.upgrade(eng)
    with Session(eng) as session:
        ingest_paths([CORPUS], session=session, settings=Settings(home=Path(tempfile.mkdtemp()), database_url=url),
                     progress=False)
        session.commit()
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))  # the state a served corpus is in, not the one right after a load
    eng.dispose()
    return url


def scale_corpus(url: str, copies: int) -> None:
    """Add ``copies`` copies of every notebook (new hashes, same cells, outputs and images), so the
    export figures measure throughput rather than per-request overheads."""
    if copies <= 0:
        return
    eng = create_engine(url)

    def columns(conn, table: str) -> list[str]:
        return list(conn.execute(text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = :t AND is_generated = 'NEVER' "
            "AND table_schema = 'public' ORDER BY ordinal_position"), {"t": table}).scalars())

    def clone(conn, table: str, mapping: str | None, replace: dict[str, str], joins: str) -> None:
        cols = columns(conn, table)
        select_list = ", ".join(replace.get(c, f"x.{c}") for c in cols)
        if mapping:
            conn.execute(text(f"INSERT INTO {table} ({', '.join(cols)}) SELECT {select_list} FROM {table} x {joins}"))

    with eng.begin() as conn:
        conn.execute(text(
            "CREATE TEMP TABLE nb_map AS SELECT n.id AS old_id, k, nextval(pg_get_serial_sequence('notebook', 'id')) AS new_id "
            "FROM notebook n, generate_series(1, :k) k"), {"k": copies})
        clone(conn, "notebook", "nb_map", {
            "id": "m.new_id", "sha256": "encode(sha256(convert_to(x.sha256 || m.k, 'UTF8')), 'hex')"},
            "JOIN nb_map m ON m.old_id = x.id")
        clone(conn, "source", "nb_map", {
            "id": "nextval(pg_get_serial_sequence('source', 'id'))", "notebook_id": "m.new_id",
            "location": "x.location || '#copy' || m.k"}, "JOIN nb_map m ON m.old_id = x.notebook_id")
        conn.execute(text(
            "CREATE TEMP TABLE cell_map AS SELECT c.id AS old_id, m.new_id AS notebook_id, "
            "nextval(pg_get_serial_sequence('cell', 'id')) AS new_id FROM cell c JOIN nb_map m ON m.old_id = c.notebook_id"))
        clone(conn, "cell", "cell_map", {"id": "m.new_id", "notebook_id": "m.notebook_id"},
              "JOIN cell_map m ON m.old_id = x.id")
        conn.execute(text(
            "CREATE TEMP TABLE output_map AS SELECT o.id AS old_id, m.new_id AS cell_id, m.notebook_id, "
            "nextval(pg_get_serial_sequence('output', 'id')) AS new_id FROM output o JOIN cell_map m ON m.old_id = o.cell_id"))
        clone(conn, "output", "output_map", {"id": "m.new_id", "cell_id": "m.cell_id", "notebook_id": "m.notebook_id"},
              "JOIN output_map m ON m.old_id = x.id")
        clone(conn, "output_image", "output_map", {"output_id": "m.new_id"}, "JOIN output_map m ON m.old_id = x.output_id")
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    eng.dispose()


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def latency(base: str, n: int, q5_id: int) -> dict:
    results = {}
    with httpx.Client(base_url=base, timeout=120) as http:
        for i, (name, (query, variables)) in enumerate(QUERIES.items(), start=1):
            if name.startswith("q5"):
                variables = {"id": str(q5_id)}
            params = {"q": variables["q"]} if name.startswith("q3") else {"id": q5_id} if name.startswith("q5") else {}
            body = {"query": query, "variables": variables or {}}

            def graphql():
                r = http.post("/graphql", json=body)
                assert r.status_code == 200 and "errors" not in r.json(), r.text[:500]
                return len(r.content)

            def baseline():
                r = http.get(f"/baseline/q{i}", params=params)
                assert r.status_code == 200, r.text[:500]
                return len(r.content)

            for _ in range(10):  # warm up both
                graphql(), baseline()
            g, b = [], []
            g_bytes = b_bytes = 0
            for _ in range(n):
                t = time.perf_counter()
                g_bytes = graphql()
                g.append(time.perf_counter() - t)
                t = time.perf_counter()
                b_bytes = baseline()
                b.append(time.perf_counter() - t)
            results[name] = {
                "graphql_p50_ms": round(percentile(g, 0.5) * 1000, 2),
                "graphql_p95_ms": round(percentile(g, 0.95) * 1000, 2),
                "baseline_p50_ms": round(percentile(b, 0.5) * 1000, 2),
                "baseline_p95_ms": round(percentile(b, 0.95) * 1000, 2),
                "ratio_p50": round(percentile(g, 0.5) / percentile(b, 0.5), 2),
                "ratio_p95": round(percentile(g, 0.95) / percentile(b, 0.95), 2),
                "graphql_bytes": g_bytes,
                "baseline_bytes": b_bytes,
            }
    return results


def field_cost(url: str) -> dict:
    """Strawberry's own time per resolved field, the database excluded, for a page of 1,000 cells."""
    import psycopg

    from api.context import Context
    from api.database import Database, make_api_engine
    from api.schema import build_schema
    from db.queries import browse
    from db.settings import Settings

    settings = Settings(database_url=url)
    db = Database(make_api_engine(settings, public=False), settings=settings, public=False)
    schema = build_schema(public=False, settings=settings)
    query = "{ cells(first: 1000) { nodes { dbId position cellType executionCount } } }"

    async def execute():
        result = await schema.execute(query, context_value=Context(db, max_page_size=1000))
        assert not result.errors, result.errors
        return result

    def sql_time():
        t = time.perf_counter()
        db.read_sync(browse.cell_page, first=1000)
        return time.perf_counter() - t

    loop = asyncio.new_event_loop()
    for _ in range(5):
        loop.run_until_complete(execute())
    totals, sqls = [], []
    for _ in range(30):
        t = time.perf_counter()
        loop.run_until_complete(execute())
        totals.append(time.perf_counter() - t)
        sqls.append(sql_time())
    loop.close()
    fields = 1000 * 4 + 1000 + 2  # four leaves per node, the node objects, nodes and cells
    graphql_s = statistics.median(totals) - statistics.median(sqls)

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    fetches = []
    with psycopg.connect(conninfo) as conn:
        for _ in range(30):
            t = time.perf_counter()
            conn.execute("SELECT id, position, cell_type, execution_count FROM cell ORDER BY id LIMIT 1000").fetchall()
            fetches.append(time.perf_counter() - t)
    db.dispose()
    fetch_s = statistics.median(fetches)
    return {
        "objects": 1000,
        "fields_resolved": fields,
        "graphql_ms_excluding_sql": round(graphql_s * 1000, 2),
        "us_per_field": round(graphql_s / fields * 1e6, 2),
        "psycopg_fetch_same_rows_ms": round(fetch_s * 1000, 2),
        "ratio_to_psycopg_fetch": round(graphql_s / fetch_s, 1),
    }


def export_throughput(base: str, url: str, repeat: int) -> dict:
    import psycopg
    from sqlmodel import Session

    from db.queries.export import copy_baseline_sql

    eng = create_engine(url)
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    out = {}
    with httpx.Client(base_url=base, timeout=300) as http:
        for table in ("cells", "outputs", "notebooks"):
            with Session(eng) as session:
                sql = copy_baseline_sql(session, table)
            copies = []
            with psycopg.connect(conninfo) as conn:
                for _ in range(repeat):
                    t = time.perf_counter()
                    size = 0
                    with conn.cursor().copy(f"COPY ({sql}) TO STDOUT") as copy:
                        for block in copy:
                            size += len(block)
                    copies.append(time.perf_counter() - t)
            row = {"copy_ms": round(min(copies) * 1000, 1), "copy_bytes": size}
            for fmt in ("parquet", "ndjson"):
                times = []
                for _ in range(repeat):
                    t = time.perf_counter()
                    n = 0
                    with http.stream("GET", f"/export/{table}.{fmt}") as r:
                        assert r.status_code == 200
                        for chunk in r.iter_raw(1 << 20):
                            n += len(chunk)
                    times.append(time.perf_counter() - t)
                row[f"{fmt}_ms"] = round(min(times) * 1000, 1)
                row[f"{fmt}_bytes"] = n
                row[f"{fmt}_throughput_ratio_to_copy"] = round(min(copies) / min(times), 2)
            out[table] = row
    eng.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100, help="Requests per query and kind.")
    parser.add_argument("--repeat", type=int, default=5, help="Runs of each export (the best counts).")
    parser.add_argument("--database-url", help="A database holding an ingested corpus (default: ingest one).")
    parser.add_argument("--copies", type=int, default=4,
                        help="Extra copies of every notebook added to the ingested corpus (not with --database-url).")
    args = parser.parse_args()

    import logging

    logging.disable(logging.WARNING)
    tmp = None
    if args.database_url:
        url = args.database_url
    else:
        from db.server import embedded_uri

        tmp = Path(tempfile.mkdtemp(prefix="nbatlas-bench-api-"))
        url = corpus_database(embedded_uri(tmp / "pg"))
        scale_corpus(url, args.copies)

    port = free_port()
    env = {**os.environ, "NBATLAS_DATABASE_URL": url, "NBATLAS_HOME": str(Path(tempfile.mkdtemp()))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.benchmarks.api:create_bench_app", "--factory",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        cwd=REPO, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_serving(proc, base, 300)
        except ServerNotServing as exc:
            raise SystemExit(f"the benchmark server: {exc} (its error, if any, is above)") from None
        eng = create_engine(url)
        with eng.connect() as conn:
            q5_id = conn.execute(text("SELECT id FROM notebook ORDER BY n_image_outputs DESC, id LIMIT 1")).scalar()
            q5_size = conn.execute(text("SELECT n_cells, n_outputs FROM notebook WHERE id = :i"), {"i": q5_id}).one()
        eng.dispose()
        with create_engine(url).connect() as conn:
            sizes = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in ("notebook", "cell", "output", "image")}
        report = {
            "corpus": str(CORPUS) + (f" + {args.copies} copies of each notebook" if not args.database_url and args.copies else ""),
            "rows": sizes,
            "requests_per_query": args.requests,
            "q5_notebook": {"id": q5_id, "cells": q5_size[0], "outputs": q5_size[1]},
            "latency_over_http": latency(base, args.requests, q5_id),
            "field_cost_in_process": field_cost(url),
            "export_vs_copy": export_throughput(base, url, args.repeat),
        }
        lat = report["latency_over_http"]
        report["targets"] = {
            "worst_p50_ratio": max(v["ratio_p50"] for v in lat.values()),
            "worst_p95_ratio": max(v["ratio_p95"] for v in lat.values()),
            "within_3x": all(v["ratio_p50"] <= 3 for v in lat.values()),
            "worst_export_throughput_ratio": min(
                v[f"{f}_throughput_ratio_to_copy"] for v in report["export_vs_copy"].values() for f in ("parquet", "ndjson")
            ),
        }
        print(json.dumps(report, indent=2))
    finally:
        stop_server(proc)
        if tmp is not None:
            from db.server import stop_embedded

            stop_embedded(tmp / "pg")


if __name__ == "__main__":
    main()
