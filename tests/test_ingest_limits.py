"""Limits: too-large files, decompression bombs, archive members that escape, links, unpacked size."""

from __future__ import annotations

import base64
import io
import json
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

from PIL import Image
from sqlalchemy import text

from db.queries.stats import corpus_stats
from ingest.local import ingest_paths
from tests.conftest import real_notebooks


def notebook_with_png(png: bytes) -> str:
    return json.dumps({
        "nbformat": 4, "nbformat_minor": 4, "metadata": {},
        "cells": [{"cell_type": "code", "metadata": {}, "source": "plot()", "execution_count": 1, "outputs": [
            {"output_type": "display_data", "metadata": {}, "data": {"image/png": base64.b64encode(png).decode(), "text/plain": "<Figure>"}},
        ]}],
    })


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def with_declared_size(data: bytes, width: int, height: int) -> bytes:
    """The same PNG claiming another size in its header (CRC fixed): small bytes, huge declared pixels."""
    ihdr = data[12:16] + struct.pack(">II", width, height) + data[24:29]
    return data[:8] + data[8:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


def test_file_over_the_size_limit_is_a_problem(session, settings, tmp_path):
    small, large = sorted(real_notebooks(), key=lambda p: p.stat().st_size)[5], max(real_notebooks(), key=lambda p: p.stat().st_size)
    for p in (small, large):
        (tmp_path / p.name).write_bytes(p.read_bytes())
    limited = settings.model_copy(update={"max_file_bytes": small.stat().st_size + 1})
    report = ingest_paths([tmp_path], session=session, settings=limited, cell_analyzer=None)
    assert report.notebooks_added == 1
    [(location, member, stage, reason)] = report.problems
    assert Path(location).name == large.name and stage == "limit"
    assert f"{large.stat().st_size:,} bytes" in reason and "NBATLAS_MAX_FILE_BYTES" in reason


def test_decompression_bomb_is_kept_as_text_not_as_image(session, settings, tmp_path):
    bomb = with_declared_size(png(8, 8), 60_000, 60_000)  # 3.6 billion pixels declared, ~100 bytes
    assert len(bomb) < 200
    (tmp_path / "bomb.ipynb").write_text(notebook_with_png(bomb))
    honest = png(300, 300)
    (tmp_path / "big_by_our_limit.ipynb").write_text(notebook_with_png(honest))
    (tmp_path / "fine.ipynb").write_text(notebook_with_png(png(20, 10)))
    limited = settings.model_copy(update={"max_image_pixels": 50_000})  # 300x300 is over it, 20x10 is not
    report = ingest_paths([tmp_path], session=session, settings=limited, cell_analyzer=None)

    assert report.notebooks_added == 3 and report.problems == []  # the notebooks stay; only the images are refused
    warnings = {Path(w[0]).name: w for w in report.warnings}
    assert set(warnings) == {"bomb.ipynb", "big_by_our_limit.ipynb"}
    assert "60000x60000" in warnings["bomb.ipynb"][3] and "decompression bomb" in warnings["bomb.ipynb"][3]
    assert warnings["bomb.ipynb"][2] == "image"
    sizes = session.execute(text("SELECT width, height FROM image")).all()
    assert [tuple(s) for s in sizes] == [(20, 10)]
    stats = corpus_stats(session=session)
    assert (stats["image_outputs"], stats["images"]) == (3, 1)
    # nothing is lost: the refused image is still in its output, as the base64 text it was
    kept = session.execute(text("SELECT data->>'image/png' FROM output WHERE data ? 'image/png'")).scalars().all()
    assert sorted(kept) == sorted([base64.b64encode(bomb).decode(), base64.b64encode(honest).decode()])


def test_archive_members_that_escape_or_link_are_problems(session, settings, tmp_path):
    notebook = real_notebooks()[10].read_bytes()
    with zipfile.ZipFile(tmp_path / "escape.zip", "w") as archive:
        archive.writestr("ok/fine.ipynb", notebook)
        archive.writestr("../../evil.ipynb", notebook)
        archive.writestr("/etc/absolute.ipynb", notebook)
        link = zipfile.ZipInfo("ok/link.ipynb")
        link.external_attr = (0o120777 << 16)  # a symbolic link, as zip stores one
        archive.writestr(link, "../../../etc/passwd")
    with tarfile.open(tmp_path / "links.tar.gz", "w:gz") as archive:
        info = tarfile.TarInfo("nb/real.ipynb")
        info.size = len(notebook)
        archive.addfile(info, io.BytesIO(notebook))
        for name, kind, target in (("nb/sym.ipynb", tarfile.SYMTYPE, "/etc/passwd"), ("nb/hard.ipynb", tarfile.LNKTYPE, "nb/real.ipynb")):
            link = tarfile.TarInfo(name)
            link.type, link.linkname = kind, target
            archive.addfile(link)
        traversal = tarfile.TarInfo("../up.ipynb")
        traversal.size = len(notebook)
        archive.addfile(traversal, io.BytesIO(notebook))

    report = ingest_paths([tmp_path / "escape.zip", tmp_path / "links.tar.gz"], session=session, settings=settings, cell_analyzer=None)

    problems = {member: (stage, reason) for _, member, stage, reason in report.problems}
    assert set(problems) == {"../../evil.ipynb", "/etc/absolute.ipynb", "ok/link.ipynb", "nb/sym.ipynb", "nb/hard.ipynb", "../up.ipynb"}
    assert all(stage == "archive" for stage, _ in problems.values())
    assert "climbs out of the archive" in problems["../../evil.ipynb"][1]
    assert "absolute path" in problems["/etc/absolute.ipynb"][1]
    assert "symbolic link" in problems["ok/link.ipynb"][1]
    assert "symbolic link" in problems["nb/sym.ipynb"][1] and "/etc/passwd" in problems["nb/sym.ipynb"][1]
    assert "hard link" in problems["nb/hard.ipynb"][1]
    # the safe members are read (the same bytes twice: one notebook, two places)
    assert (report.notebooks_added, report.already_present) == (1, 1)
    assert sorted(session.execute(text("SELECT member FROM source")).scalars()) == ["nb/real.ipynb", "ok/fine.ipynb"]
    assert corpus_stats(session=session)["problems"] == 6


def test_archive_unpacked_size_limit_stops_reading_it(session, settings, tmp_path):
    files = real_notebooks()[:6]
    with zipfile.ZipFile(tmp_path / "big.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.name)
    limit = sum(p.stat().st_size for p in files[:3])  # room for the first three members only
    limited = settings.model_copy(update={"max_archive_bytes": limit})
    report = ingest_paths([tmp_path / "big.zip"], session=session, settings=limited, cell_analyzer=None)
    assert report.notebooks_added == 3
    [(location, member, stage, reason)] = report.problems
    assert member == files[3].name and stage == "limit"
    assert "NBATLAS_MAX_ARCHIVE_BYTES" in reason and "the rest were not read" in reason


def test_corrupt_archive_and_missing_path(session, settings, tmp_path):
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    report = ingest_paths([tmp_path / "broken.zip"], session=session, settings=settings, cell_analyzer=None)
    [(location, member, stage, reason)] = report.problems
    assert (Path(location).name, member, stage) == ("broken.zip", "", "archive")
    assert "cannot read the archive" in reason
    import pytest

    with pytest.raises(FileNotFoundError, match="nope"):
        ingest_paths([tmp_path / "nope"], session=session, settings=settings)
