"""Turn a backend's outcome into the rows of one run: scores, failure class, cells, outputs, images.

The reproduced outputs go through ingest's own parser (``ingest.parse``), so a reproduced output is
stored exactly as an original one would be: the same columns, images decoded and content-addressed
in the shared ``image`` table.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any

from db.queries import codec
from db.queries.reproduce import RunRecord
from ingest.parse import Limits as ParseLimits
from ingest.parse import RowBuilder
from ingest.reproduce.outcome import RunOutcome
from ingest.reproduce.scoring import classify_failure, score_notebook

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(obj: Any) -> Any:
    """PostgreSQL text/jsonb refuse NUL, lone surrogates and non-finite numbers: replace them (a
    reproduction is a record of what happened, not a file to rebuild byte for byte)."""
    if isinstance(obj, str):
        return _UNSTORABLE.sub("\ufffd", obj) if _UNSTORABLE.search(obj) else obj
    if isinstance(obj, dict):
        return {_storable(k): _storable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_storable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _ts(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, timezone.utc) if epoch else None


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source") or ""
    return "".join(source) if isinstance(source, list) else source


def build_record(
    *,
    outcome: RunOutcome,
    original: dict[str, Any],
    cell_ids: dict[int, int],
    worker: str | None,
    attempt: int = 1,
    max_image_pixels: int = 178_956_970,
) -> RunRecord:
    original_cells = original.get("cells") or []
    reported = {c.get("index"): c for c in outcome.cells if isinstance(c, dict)}
    statuses = {i: c.get("status") for i, c in reported.items()}
    score = score_notebook(original, outcome.notebook, statuses, outcome.status)
    sources = [_source(c) if c.get("cell_type") == "code" else "" for c in original_cells]
    failure_class, failure_detail = classify_failure(
        outcome.status, outcome.ename, outcome.evalue,
        sources=sources, failing_cell=outcome.failing_cell, detail=outcome.detail,
    )

    executed = _storable(outcome.notebook) if outcome.notebook else None
    builder = RowBuilder(ParseLimits(max_file_bytes=0, max_image_pixels=max_image_pixels), None)
    if executed:
        for position, cell in enumerate(executed.get("cells") or []):
            if position < len(original_cells) and isinstance(cell, dict):
                builder.cell(position, cell)

    cells = []
    for position, cell in enumerate(original_cells):
        info = reported.get(position, {})
        runnable = cell.get("cell_type") == "code" and bool(_source(cell).strip())
        status = info.get("status") or ("not_run" if runnable else "skipped")
        s = score.cells[position]
        cells.append({
            "cell_id": cell_ids.get(position),
            "position": position,
            "status": status,
            "duration_s": info.get("duration_s"),
            "execution_count": info.get("execution_count") if codec.is_int4(info.get("execution_count")) else None,
            "truncated_bytes": int(info.get("truncated_bytes") or 0),
            "comparison": s.comparison,
            "text_same": s.text_same,
            "images_same": s.images_same,
            "n_images_original": s.n_images_original,
            "n_images_reproduced": s.n_images_reproduced,
            "max_phash_distance": s.max_phash_distance,
            "max_pixel_diff": s.max_pixel_diff,
            "difference": _storable(s.difference),
            "details": _storable(s.details) or None,
        })

    code_cells = [c for c in cells if c["status"] != "skipped"]
    run = {
        "backend": outcome.backend,
        "image": outcome.image,
        "image_digest": outcome.image_digest,
        "worker": worker,
        "attempt": attempt,
        "status": outcome.status,
        "ename": _storable(outcome.ename),
        "evalue": _storable(outcome.evalue),
        "traceback": _storable(outcome.traceback) if outcome.traceback else None,
        "failing_cell_position": outcome.failing_cell,
        "failure_class": failure_class,
        "failure_detail": _storable(failure_detail),
        "started_at": _ts(outcome.started_at),
        "finished_at": _ts(outcome.finished_at),
        "wall_s": outcome.wall_s,
        "run_s": outcome.run_s,
        "kernel_startup_s": outcome.kernel_startup_s,
        "overhead_s": outcome.overhead_s,
        "exit_code": outcome.exit_code if codec.is_int4(outcome.exit_code) else None,
        "oom_killed": outcome.oom_killed,
        "timed_out": outcome.timed_out,
        "output_truncated": outcome.truncated,
        "output_bytes": outcome.output_bytes,
        "n_code_cells": len(code_cells),
        "n_cells_run": sum(1 for c in code_cells if c["status"] not in ("not_run", "skipped")),
        "n_cells_ok": sum(1 for c in code_cells if c["status"] == "ok"),
        "environment": _storable(outcome.environment) or None,
        "log_tail": _storable(outcome.log_tail[-8000:]) if outcome.log_tail else None,
        "detail": _storable(outcome.detail),
        "ran_without_error": score.ran_without_error,
        "same_results": score.same_results,
        "same_results_ignoring_images": score.same_results_ignoring_images,
        "same_plots": score.same_plots,
        "n_cells_compared": score.n_cells_compared,
        "n_cells_same": score.n_cells_same,
        "n_images_compared": score.n_images_compared,
        "n_images_same": score.n_images_same,
    }
    return RunRecord(run=run, cells=cells, outputs=builder.outputs, images=list(builder.images.values()),
                     output_images=builder.output_images)
