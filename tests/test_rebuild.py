"""Nothing is lost: every real notebook rebuilt from the database equals nbformat.reads of the file,
and so do generated notebooks with what PostgreSQL cannot store as is."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import warnings

import nbformat
import pytest
from sqlalchemy import create_engine, text
from sqlmodel import Session

from db.queries.notebooks import AmbiguousPrefix, NotebookNotFound, rebuild_notebook, rebuild_notebooks, resolve_sha256
from ingest.local import ingest_paths
from tests.conftest import real_notebooks


@pytest.fixture(autouse=True)
def _quiet_nbformat():
    # nbformat logs each schema violation of the reference reads; ingest records them as warnings
    logging.getLogger("traitlets").setLevel(logging.CRITICAL)


def reference(raw: bytes) -> nbformat.NotebookNode:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbformat's own warning about the cell ids it makes up
        return nbformat.reads(raw.decode("utf-8"), as_version=4)


def random_ids(raw: bytes) -> set[int]:
    """Cells whose id nbformat itself makes up at random on reading: every cell of a v3 notebook
    (upgrade), and in nbformat >= 4.5 the cells with no id or a repeated one (validate's repair)."""
    nb = json.loads(raw)
    if nb["nbformat"] < 4:
        return {i for sheet in nb["worksheets"] for i, _ in enumerate(sheet["cells"])} | set(range(10_000))
    seen: set = set()
    made_up = set()
    for i, cell in enumerate(nb["cells"]):
        if nb.get("nbformat_minor", 0) >= 5 and ("id" not in cell or cell["id"] in seen):
            made_up.add(i)
        seen.add(cell.get("id"))
    return made_up


def without_random_ids(nb: dict, positions: set[int]) -> dict:
    nb = json.loads(json.dumps(nb))
    for i, cell in enumerate(nb["cells"]):
        if i in positions:
            assert isinstance(cell.get("id"), str) and cell["id"]  # present on both sides, just not comparable
            cell.pop("id")
    return nb


def first_difference(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{path}/{key}: only in {'rebuilt' if key in a else 'original'}"
            found = first_difference(a[key], b[key], f"{path}/{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items rebuilt, {len(b)} originally"
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    if type(a) is not type(b) or a != b:
        return f"{path}: {a!r:.80} rebuilt, {b!r:.80} originally"
    return None


def test_every_real_notebook_rebuilds_to_what_nbformat_reads(real_corpus_url):
    files = real_notebooks()
    raws = {hashlib.sha256(p.read_bytes()).hexdigest(): p.read_bytes() for p in files}
    eng = create_engine(real_corpus_url)
    with Session(eng) as session:
        rebuilt = rebuild_notebooks(session=session, sha256s=list(raws))
    eng.dispose()
    assert set(rebuilt) == set(raws)
    differences = {}
    for sha, raw in raws.items():
        made_up = random_ids(raw)
        ours = without_random_ids(rebuilt[sha], made_up)
        theirs = without_random_ids(reference(raw), made_up)
        found = first_difference(ours, theirs)
        if found:
            differences[sha[:12]] = found
    assert differences == {}
    # the comparison covers images: every notebook with image outputs got them back byte for byte
    assert sum("image/png" in json.dumps(nb) for nb in rebuilt.values()) > 50
    # ... including each base64 layout; base64 laid out as Jupyter does (one line, a final newline or not)
    # is rebuilt from the image bytes, not kept a second time as text in output.data
    eng = create_engine(real_corpus_url)
    with eng.connect() as conn:
        layouts = dict(conn.execute(text("SELECT coalesce(b64_layout, 'one line'), count(*) FROM output_image GROUP BY 1")).all())
        kept_as_text = conn.execute(
            text("SELECT count(*) FROM output WHERE data ?| array['image/png', 'image/jpeg', 'image/gif']")
        ).scalar_one()
    eng.dispose()
    assert layouts.get("one_line_nl", 0) > 100 and layouts.get("lines76", 0) > 100, layouts
    assert kept_as_text == layouts.get("raw", 0)


def test_get_by_prefix_and_not_found(real_corpus_url):
    sha = hashlib.sha256(real_notebooks()[0].read_bytes()).hexdigest()
    eng = create_engine(real_corpus_url)
    with Session(eng) as session:
        assert resolve_sha256(session=session, prefix=sha[:10].upper()) == sha
        with pytest.raises(NotebookNotFound, match="no notebook"):
            resolve_sha256(session=session, prefix="0000000000")
        with pytest.raises(NotebookNotFound, match="not a SHA-256"):
            resolve_sha256(session=session, prefix="xyz")
        with pytest.raises(NotebookNotFound):
            rebuild_notebook(session=session, sha256="f" * 64)
    eng.dispose()


def test_ambiguous_prefix_is_refused(session, settings, tmp_path):
    by_prefix: dict[str, str] = {}
    for i in range(100_000):  # two tiny notebooks whose hashes share 4 hex digits (birthday: ~300 tries)
        body = json.dumps({"nbformat": 4, "nbformat_minor": 4, "metadata": {"n": i}, "cells": []})
        prefix = hashlib.sha256(body.encode()).hexdigest()[:4]
        if prefix in by_prefix:
            (tmp_path / "a.ipynb").write_text(by_prefix[prefix])
            (tmp_path / "b.ipynb").write_text(body)
            break
        by_prefix[prefix] = body
    assert ingest_paths([tmp_path], session=session, settings=settings, cell_analyzer=None).notebooks_added == 2
    with pytest.raises(AmbiguousPrefix, match="matches 2 notebooks"):
        resolve_sha256(session=session, prefix=prefix)


# --- what PostgreSQL cannot store as is, and other oddities ---------------------------------------------------

PNG_1x1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def odd_notebook() -> str:
    one_line = base64.b64encode(PNG_1x1).decode()
    other_layout = "\n".join(one_line[i : i + 20] for i in range(0, len(one_line), 20))  # neither layout
    nb = {
        "nbformat": 4,
        "nbformat_minor": 4,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "weird\u0000key": "x", "big": 2**70, "inf": float("inf"), "neg": float("-inf"), "private": "\ue000"},
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["NUL \u0000 here", " and a lone \ud83d surrogate"]},
            {"cell_type": "code", "metadata": {"trusted": True}, "source": "print(1)", "outputs": [
                {"output_type": "stream", "name": "stdout", "text": ["a\u0000b\n"]},
                {"output_type": "display_data", "metadata": {"image/png": {"width": 10}},
                 "data": {"image/png": other_layout, "text/plain": ["<Figure>"]}},
                {"output_type": "display_data", "metadata": {}, "data": {"image/png": "not base64!", "image/gif": 3}},
                {"output_type": "execute_result", "metadata": {}, "data": {"text/plain": "x"}},
                {"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["t\u0000", 'quote " back \\ {brace}, comma\ttab\r\n', "NULL", ""], "unknown": 1},
                {"output_type": "display_data", "metadata": {}, "data": {"image/svg+xml": ["<svg>\n", "</svg>"]}},
            ]},
            {"cell_type": "code", "metadata": {}, "source": "", "execution_count": "seven", "outputs": []},
            {"cell_type": "raw", "metadata": {}, "source": "", "attachments": {"a.png": {"image/png": one_line}}},
            {"cell_type": "heading", "metadata": {}, "source": "old", "level": 2},
        ],
        "extra_top_level": [1, 2],
    }
    # json.dumps writes NaN/Infinity and lone surrogates, as Python tools sometimes did
    return json.dumps(nb)


def test_nul_surrogates_non_finite_numbers_odd_layouts_round_trip(session, settings, tmp_path):
    text_ = odd_notebook()
    (tmp_path / "odd.ipynb").write_text(text_, encoding="utf-8", errors="surrogatepass")
    raw = (tmp_path / "odd.ipynb").read_bytes()
    report = ingest_paths([tmp_path], session=session, settings=settings, cell_analyzer=None)
    assert report.notebooks_added == 1, report.problems
    sha = hashlib.sha256(raw).hexdigest()
    escape = session.execute(text("SELECT text_escape FROM notebook WHERE sha256 = :s"), {"s": sha}).scalar_one()
    assert escape and escape != "\ue000"  # an escape character the file does not use
    ours = rebuild_notebook(session=session, sha256=sha)
    theirs = nbformat.reads(text_, as_version=4)
    assert first_difference(ours, theirs) is None
    assert ours.metadata["inf"] == math.inf and ours.metadata["big"] == 2**70
    assert ours.cells[0].source == "NUL \u0000 here and a lone \ud83d surrogate"
    # the 1x1 PNG is stored as an image even though its base64 was laid out oddly (kept verbatim too)
    layouts = session.execute(
        text(
            "SELECT oi.mime, oi.b64_layout, i.width, i.height FROM output_image oi JOIN image i ON i.sha256 = oi.image_sha256 "
            "JOIN output o ON o.id = oi.output_id JOIN notebook n ON n.id = o.notebook_id WHERE n.sha256 = :s ORDER BY 1"
        ),
        {"s": sha},
    ).all()
    assert [tuple(r) for r in layouts] == [("image/png", "raw", 1, 1), ("image/svg+xml", None, None, None)]
    warnings = session.execute(
        text("SELECT stage, reason FROM problem WHERE file_sha256 = :s AND severity = 'warning'"), {"s": sha}
    ).all()
    stages = {w.stage for w in warnings}
    assert stages == {"schema", "image"}
    assert "not valid base64" in next(w.reason for w in warnings if w.stage == "image")
