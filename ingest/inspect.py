"""What one notebook file holds, read on this machine and never executed: the local half of
``nbatlas inspect``.

The file is parsed as ingest parses it (``ingest.parse``: size limit, JSON, nbformat 3 upgraded to 4)
and analysed by the same code analyser (``ingest.understand``): every cell's stage and libraries,
every figure's plot kinds, evidence and the markdown around it. Nothing is stored. The result is
plain data (dicts, lists, str, bytes) that ``analysis.inspect`` takes to the API, which knows the
corpus: the notebook's stored record when its SHA-256 is there, and the nearest notebooks, plots
and code.
"""

from __future__ import annotations

import binascii
import hashlib
from pathlib import Path
from typing import Any

from db.queries.codec import IMAGE_MIMES, SVG_MIME

NOT_ANALYSED = "not analysed"  # the stage shown for a cell whose code the analyser does not read
SOURCE_CHARS = 20_000  # of a cell kept for display and for the similarity query: the start says what it does


class NotebookUnreadable(ValueError):
    """The file cannot be inspected; the message names the file and the reason."""


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


def _title(cells: list[dict]) -> str | None:
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            for line in _text(cell.get("source")).splitlines():
                if line.lstrip().startswith("#"):
                    title = line.lstrip("# \t").strip()
                    if title:
                        return title[:200]
    return None


def _image(mime: str, value: Any, max_pixels: int) -> dict | None:
    """An output's picture as ingest stores it: SHA-256 of the decoded bytes (of the UTF-8 text for SVG)."""
    if not isinstance(value, str | list):
        return None
    text = _text(value)
    if mime == SVG_MIME:
        blob = text.encode("utf-8")
        return {"sha256": hashlib.sha256(blob).hexdigest(), "mime": mime, "data": None, "svg": text,
                "width": None, "height": None}
    try:
        blob = binascii.a2b_base64(text)
    except (binascii.Error, ValueError):
        return None
    if not blob:
        return None
    from ingest.parse import _image_size

    width, height = _image_size(blob)
    if width is not None and width * height > max_pixels:
        return None  # a decompression bomb stays text, as in the corpus
    return {"sha256": hashlib.sha256(blob).hexdigest(), "mime": mime, "data": blob, "svg": None,
            "width": width, "height": height}


def describe_notebook(path: str | Path, *, max_file_bytes: int, max_image_pixels: int) -> dict[str, Any]:
    """The notebook at ``path``: identity, cells with stage and libraries, figures with kinds and context.

    Raises NotebookUnreadable (naming the file and the reason) for what ingest would record as a problem.
    """
    from ingest.parse import NotANotebook, _kernel, decode_json, quiet_nbformat, read_file, to_v4
    from ingest.understand import ANALYZER_VERSION, analyze_notebook

    path = Path(path)
    quiet_nbformat()
    try:
        raw = read_file(str(path), max_file_bytes)
        if len(raw) > max_file_bytes:
            raise NotANotebook("limit", f"file is over the limit of {max_file_bytes:,} bytes (NBATLAS_MAX_FILE_BYTES)")
        value, _, _ = decode_json(raw)
        nb, original_major = to_v4(value)
    except NotANotebook as exc:
        raise NotebookUnreadable(f"{path}: {exc.reason}") from None
    except OSError as exc:
        raise NotebookUnreadable(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    except Exception as exc:  # an input nobody foresaw: still a clear message, never a traceback
        raise NotebookUnreadable(f"{path}: not a notebook ({type(exc).__name__}: {exc})") from None

    facts = analyze_notebook(nb)
    # code in another kernel language is not analysed: shown as such, as the database stores it (no
    # stage, plot kind or library), not as the analyser's placeholder "other"
    unread = facts.not_analysed is not None
    cells_in = nb.get("cells") or []
    kernel_name, language = _kernel(nb.get("metadata") or {})
    cells = []
    for cf, cell in zip(facts.cells, cells_in):
        source = _text(cell.get("source"))
        cells.append({
            "position": cf.position,
            "cell_type": cf.cell_type,
            "source": source[:SOURCE_CHARS],
            "source_chars": len(source),
            "stage": NOT_ANALYSED if unread else cf.stage,
            "stage_evidence": [] if unread else list(cf.stage_evidence),
            "libraries": [] if unread else list(cf.libraries),
            "is_visualisation": cf.is_visualisation,
            "plot_kinds": [] if unread else list(cf.plot_kinds),
            "parsed": cf.parsed,
            "parse_error": cf.parse_error,
            "n_outputs": len(cell.get("outputs") or []),
        })
    figures = []
    for pf in facts.plots:
        outputs = cells_in[pf.cell_position].get("outputs") or []
        data = outputs[pf.output_position].get("data") or {} if pf.output_position < len(outputs) else {}
        image = None
        if pf.mime in IMAGE_MIMES:
            image = _image(pf.mime, data.get(pf.mime), max_image_pixels)
        figures.append({
            "cell_position": pf.cell_position,
            "output_position": pf.output_position,
            "mime": pf.mime,
            "interactive": pf.interactive,
            "plot_kinds": [] if unread else list(pf.plot_kinds),
            "evidence": [] if unread else [e.get("rule") or e.get("call") for e in pf.evidence],
            "plot_calls": [] if unread else list(pf.plot_calls),
            "context_before": pf.context_before,
            "context_after": pf.context_after,
            "stage": NOT_ANALYSED if unread else (facts.cells[pf.cell_position].stage
                                                  if pf.cell_position < len(facts.cells) else None),
            "image": image,
        })
    return {
        "path": str(path),
        "name": path.name,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "size_bytes": len(raw),
        "original_nbformat": original_major,
        "nbformat": f"{nb.get('nbformat')}.{nb.get('nbformat_minor')}",
        "kernel_name": kernel_name,
        "language": language,
        "title": _title(cells_in),
        "analyzer_version": ANALYZER_VERSION,
        "libraries": [] if unread else list(facts.libraries),
        "not_analysed": facts.not_analysed,
        "cells": cells,
        "figures": figures,
    }
