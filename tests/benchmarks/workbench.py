"""Benchmark: the workbench's gallery on a corpus of 100,000 images. Run by hand:

    /work/venv/bin/python tests/benchmarks/workbench.py [--images N] [--repeat R]

A synthetic corpus is written straight into a fresh database (notebooks of 10 plots each, every
plot with its code cell, output, image, figure row and code analysis; a markdown cell before every
notebook's plots), then each query of the gallery is timed (median of ``--repeat``) next to the
baseline measured in the same run: the API's own keyset page of images (``browse.image_page``, 48
rows). Also timed: the whole gallery page over HTTP (in-process client), first and deep pages.
Prints JSON with seconds and ratios to the baseline.
"""

from __future__ import annotations

import argparse
import json
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

from db import schema  # noqa: E402
from db.server import create_database, embedded_uri, stop_embedded  # noqa: E402
from db.settings import Settings  # noqa: E402

KINDS = ["line", "bar", "scatter", "histogram", "heatmap", "box", "confusion_matrix", "roc_curve",
         "feature_importance", "learning_curve"]
STAGES = ["exploration", "evaluation", "modelling", "explanation", "preprocessing"]
# a 1x1 PNG: the gallery never decodes images, it only pages through their rows
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da6360000000000500010d0a2db40000000049454e44ae426082")


def build(url: str, n_images: int) -> None:
    per = 10
    n_notebooks = n_images // per
    eng = create_engine(url)
    with eng.begin() as conn:
        conn.execute(text(
            "INSERT INTO notebook (id, sha256, size_bytes, nbformat, nbformat_minor, original_nbformat, language, "
            "metadata, n_cells, n_outputs, n_image_outputs, ingested_at) "
            "SELECT g, encode(sha256(('nb' || g)::bytea), 'hex'), 1000, 4, 5, 4, 'python', '{}', :per + 1, :per, :per, now() "
            "FROM generate_series(1, :n) g"), {"n": n_notebooks, "per": per})
        # cell 0 of each notebook is markdown; cells 1..per draw one plot each
        conn.execute(text(
            "INSERT INTO cell (id, notebook_id, position, cell_type, source, metadata) "
            "SELECT (nb - 1) * (:per + 1) + pos + 1, nb, pos, CASE WHEN pos = 0 THEN 'markdown' ELSE 'code' END, "
            # 1 notebook in 50 discusses a confusion matrix, 1 plotting cell in 100 calls one
            "CASE WHEN pos = 0 THEN 'We look at model ' || nb || CASE WHEN nb % 50 = 0 THEN ' with a confusion matrix' "
            "ELSE ' and its residuals' END "
            "ELSE 'import matplotlib.pyplot as plt' || chr(10) || 'plt.plot(x' || pos || ', y)' || chr(10) || "
            "CASE WHEN (nb * 11 + pos) % 100 = 3 THEN 'ConfusionMatrixDisplay(confusion_matrix(y, p))' "
            "ELSE 'plt.title(\"figure ' || nb || '\")' END END, '{}' "
            "FROM generate_series(1, :n) nb, generate_series(0, :per) pos"), {"n": n_notebooks, "per": per})
        conn.execute(text(
            "INSERT INTO output (id, cell_id, notebook_id, position, output_type, mime_types, data, metadata) "
            "SELECT c.id, c.id, c.notebook_id, 0, 'display_data', ARRAY['image/png', 'text/plain'], "
            "'{\"text/plain\": \"<Figure>\"}', '{}' FROM cell c WHERE c.cell_type = 'code'"))
        conn.execute(text(
            "INSERT INTO image (sha256, mime, data, size_bytes, width, height, created_at) "
            "SELECT encode(sha256(('img' || o.id)::bytea), 'hex'), 'image/png', :png, 68, 640, 480, now() FROM output o"),
            {"png": PNG})
        conn.execute(text(
            "INSERT INTO output_image (output_id, mime, image_sha256) "
            "SELECT o.id, 'image/png', encode(sha256(('img' || o.id)::bytea), 'hex') FROM output o"))
        conn.execute(text(
            "INSERT INTO cell_analysis (cell_id, notebook_id, analyzer_version, parsed, ipython_syntax, call_names, "
            "libraries, stage, is_visualisation, plot_kinds) "
            "SELECT c.id, c.notebook_id, 1, true, false, ARRAY['matplotlib.pyplot.plot'], ARRAY['matplotlib'], "
            "(CAST(:stages AS text[]))[1 + c.id % 5], c.cell_type = 'code', "
            "CASE WHEN c.cell_type = 'code' THEN ARRAY[(CAST(:kinds AS text[]))[1 + c.id % 10]] ELSE '{}' END FROM cell c"),
            {"stages": STAGES, "kinds": KINDS})
        # a rare kind: 1 figure in 100 is a calibration curve
        conn.execute(text(
            "INSERT INTO output_plot (output_id, mime, cell_id, notebook_id, image_sha256, interactive, analyzer_version, "
            "plot_kinds, plot_calls, analyzed_at) "
            "SELECT o.id, 'image/png', o.cell_id, o.notebook_id, oi.image_sha256, false, 1, "
            "CASE WHEN o.id % 100 = 7 THEN ARRAY['calibration_curve'] ELSE ARRAY[(CAST(:kinds AS text[]))[1 + o.id % 10]] END, "
            "ARRAY['matplotlib.pyplot.plot'], now() FROM output o JOIN output_image oi ON oi.output_id = o.id"),
            {"kinds": KINDS})
        conn.execute(text(
            "INSERT INTO notebook_analysis (notebook_id, analyzer_version, analyzed_at, libraries, n_code_cells, "
            "n_unparsed_cells, n_visualisation_cells) SELECT id, 1, now(), ARRAY['matplotlib'], :per, 0, :per FROM notebook"),
            {"per": per})
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    eng.dispose()


def timed(fn, repeat: int) -> float:
    fn()  # warm caches and the plan
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    from db.queries import browse
    from db.queries import workbench as wb

    with tempfile.TemporaryDirectory() as tmp:
        pgdata = Path(tmp) / "pg"
        server = embedded_uri(pgdata)
        try:
            name = f"bench_wb_{uuid.uuid4().hex[:8]}"
            url = create_database(server, name)
            eng = create_engine(url)
            schema.upgrade(eng)
            started = time.perf_counter()
            build(url, args.images)
            build_s = time.perf_counter() - started

            with Session(eng) as s:
                deep = wb.gallery_page(session=s, first=args.images // 2)[-1]
                after = (deep["output_id"], deep["mime"])
                cases = {
                    "baseline_image_page_48": lambda: browse.image_page(session=s, first=48),
                    "gallery_first_page": lambda: wb.gallery_page(session=s, first=48),
                    "gallery_deep_page": lambda: wb.gallery_page(session=s, first=48, after=after),
                    "gallery_common_kind": lambda: wb.gallery_page(session=s, first=48, filter=wb.PlotFilter(plot_kind=("line",))),
                    "gallery_rare_kind_1pct": lambda: wb.gallery_page(
                        session=s, first=48, filter=wb.PlotFilter(plot_kind=("calibration_curve",))),
                    "gallery_kind_and_stage": lambda: wb.gallery_page(
                        session=s, first=48, filter=wb.PlotFilter(plot_kind=("bar",), stage=("evaluation",))),
                    "gallery_text_search_3pct": lambda: wb.gallery_page(
                        session=s, first=48, filter=wb.PlotFilter(text="confusion matrix")),
                    "gallery_count_capped": lambda: wb.gallery_count(session=s),
                    "gallery_filter_values": lambda: wb.gallery_filter_values(session=s),
                }
                results = {k: timed(fn, args.repeat) for k, fn in cases.items()}

            from fastapi.testclient import TestClient

            from api.app import create_app

            app = create_app(Settings(home=Path(tmp) / "home", database_url=url))
            with TestClient(app) as client:
                assert client.get("/").status_code == 200
                results["http_gallery_page"] = timed(lambda: client.get("/"), args.repeat)
                results["http_gallery_deep_page"] = timed(lambda: client.get("/", params={"after": f"{after[0]}:{after[1]}"}),
                                                          args.repeat)
                results["http_gallery_rare_kind"] = timed(
                    lambda: client.get("/", params={"plot_kind": "calibration_curve"}), args.repeat)
            eng.dispose()
        finally:
            stop_embedded(pgdata)
    baseline = results["baseline_image_page_48"]
    print(json.dumps({
        "images": args.images, "build_seconds": round(build_s, 1), "repeat": args.repeat,
        "seconds": {k: round(v, 5) for k, v in results.items()},
        "ratio_to_baseline": {k: round(v / baseline, 1) for k, v in results.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
