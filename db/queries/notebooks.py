"""Rebuild notebooks from the database: the inverse of ingest (see ``db.queries.codec``).

``rebuild_notebook(session=..., sha256=...)`` gives a ``NotebookNode`` equal (as a dict) to
``nbformat.reads(original_text, as_version=4)`` of the file that was ingested.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import nbformat
from sqlalchemy import text
from sqlmodel import Session

from db.queries import codec


class NotebookNotFound(LookupError):
    pass


class AmbiguousPrefix(LookupError):
    def __init__(self, prefix: str, matches: list[str]):
        super().__init__(f"{prefix!r} matches {len(matches)} notebooks: {', '.join(m[:16] for m in matches[:5])}...")
        self.matches = matches


def resolve_sha256(*, session: Session, prefix: str) -> str:
    """The full SHA-256 of the one notebook whose hash starts with ``prefix`` (at least 4 hex digits)."""
    prefix = prefix.strip().lower()
    if len(prefix) < 4 or any(c not in "0123456789abcdef" for c in prefix):
        raise NotebookNotFound(f"{prefix!r} is not a SHA-256 (or a prefix of at least 4 hex digits)")
    rows = session.execute(
        text("SELECT sha256 FROM notebook WHERE sha256 LIKE :p ORDER BY sha256 LIMIT 6"), {"p": prefix + "%"}
    ).scalars().all()
    if not rows:
        raise NotebookNotFound(f"no notebook has a SHA-256 starting with {prefix!r}")
    if len(rows) > 1:
        raise AmbiguousPrefix(prefix, list(rows))
    return rows[0]


def rebuild_notebook(*, session: Session, sha256: str) -> nbformat.NotebookNode:
    found = rebuild_notebooks(session=session, sha256s=[sha256])
    if sha256 not in found:
        raise NotebookNotFound(f"no notebook with SHA-256 {sha256}")
    return found[sha256]


def rebuild_notebooks(*, session: Session, sha256s: Sequence[str]) -> dict[str, nbformat.NotebookNode]:
    """Batch variant: sha256 -> NotebookNode for those of ``sha256s`` that are in the database."""
    if not sha256s:
        return {}
    notebooks = session.execute(
        text(
            "SELECT id, sha256, nbformat, nbformat_minor, metadata, extra, text_escape "
            "FROM notebook WHERE sha256 = ANY(:shas)"
        ),
        {"shas": list(sha256s)},
    ).mappings().all()
    if not notebooks:
        return {}
    ids = [row["id"] for row in notebooks]
    cells: dict[int, list[Any]] = defaultdict(list)
    for row in session.execute(
        text(
            "SELECT id, notebook_id, cell_type, cell_key, source, execution_count, metadata, attachments, extra "
            "FROM cell WHERE notebook_id = ANY(:ids) ORDER BY notebook_id, position"
        ),
        {"ids": ids},
    ).mappings():
        cells[row["notebook_id"]].append(row)
    outputs: dict[int, list[Any]] = defaultdict(list)
    output_ids: list[int] = []
    for row in session.execute(
        text(
            "SELECT id, cell_id, output_type, mime_types, data, metadata, execution_count, name, text, "
            "ename, evalue, traceback, extra FROM output WHERE notebook_id = ANY(:ids) ORDER BY cell_id, position"
        ),
        {"ids": ids},
    ).mappings():
        outputs[row["cell_id"]].append(row)
        output_ids.append(row["id"])
    images: dict[int, dict[str, Any]] = defaultdict(dict)
    if output_ids:
        for row in session.execute(
            text(
                "SELECT oi.output_id, oi.mime, oi.b64_layout, i.data, i.svg FROM output_image oi "
                "JOIN image i ON i.sha256 = oi.image_sha256 WHERE oi.output_id = ANY(:ids)"
            ),
            {"ids": output_ids},
        ).mappings():
            images[row["output_id"]][row["mime"]] = row

    result = {}
    for nb in notebooks:
        cell_dicts = [_cell(c, outputs.get(c["id"], ()), images) for c in cells.get(nb["id"], ())]
        result[nb["sha256"]] = _notebook(nb, cell_dicts)
    return result


def _notebook(row, cells: list[dict]) -> nbformat.NotebookNode:
    absent = codec.extra_absent(row["extra"])
    d: dict[str, Any] = {"nbformat": row["nbformat"]}
    if "nbformat_minor" not in absent:
        d["nbformat_minor"] = row["nbformat_minor"]
    d["metadata"] = row["metadata"]
    d["cells"] = cells
    d.update(codec.extra_keys(row["extra"]))
    if row["text_escape"]:
        d = codec.unescape_tree(d, row["text_escape"])
    return nbformat.from_dict(d)


def _cell(row, outputs, images) -> dict:
    extra = row["extra"]
    absent = codec.extra_absent(extra)
    cell_type = row["cell_type"]
    d: dict[str, Any] = {}
    if "cell_type" not in absent:
        d["cell_type"] = cell_type  # a cell_type that is not text is in extra and overrides this
    if row["cell_key"] is not None:
        d["id"] = row["cell_key"]
    canonical = codec.CELL_KEYS.get(cell_type, codec.CELL_KEYS_OTHER)
    if "metadata" not in absent:
        d["metadata"] = row["metadata"]
    if "source" not in absent:
        d["source"] = row["source"]
    if "execution_count" in canonical and "execution_count" not in absent:
        d["execution_count"] = row["execution_count"]
    if "attachments" in canonical and row["attachments"] is not None:
        d["attachments"] = row["attachments"]
    if "outputs" in canonical and "outputs" not in absent:
        d["outputs"] = [_output(o, images.get(o["id"], {})) for o in outputs]
    d.update(codec.extra_keys(extra))
    return d


def _output(row, images: dict[str, Any]) -> dict:
    extra = row["extra"]
    absent = codec.extra_absent(extra)
    output_type = row["output_type"]
    canonical = codec.OUTPUT_KEYS.get(output_type, ())
    d: dict[str, Any] = {"output_type": output_type}
    if "data" in canonical and row["data"] is not None:
        stored = row["data"]
        data = {}
        for mime in row["mime_types"]:
            image = images.get(mime)
            if image is None or image["b64_layout"] == codec.LAYOUT_RAW:
                data[mime] = stored[mime]
            elif image["svg"] is not None:
                data[mime] = image["svg"]
            else:
                data[mime] = codec.encode_b64(bytes(image["data"]), image["b64_layout"])
        d["data"] = data
    if "metadata" in canonical and row["metadata"] is not None:
        d["metadata"] = row["metadata"]
    if "execution_count" in canonical and "execution_count" not in absent:
        d["execution_count"] = row["execution_count"]
    for key in ("name", "text", "ename", "evalue", "traceback"):
        if key in canonical and row[key] is not None:
            d[key] = row[key]
    d.update(codec.extra_keys(extra))
    return d
