"""Ingest of real notebooks: counts against an independent count, other folders and archives, broken
files, idempotence, and a SIGKILL half-way followed by a re-run."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import Session

from db.queries.stats import corpus_stats
from ingest.local import ingest_paths
from tests.conftest import BROKEN_CORPUS, REAL_CORPUS, cli_env, real_notebooks

CONTENT_TABLES = ("notebook", "cell", "output", "image", "output_image", "source", "problem")
V4_IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")
V3_IMAGE_KEYS = {"png": "image/png", "jpeg": "image/jpeg", "svg": "image/svg+xml"}


def independent_count(files: list[Path]) -> dict:
    """Counted straight from the JSON with the json module (not nbformat, not nbatlas)."""
    seen: set[str] = set()
    counts = {"notebooks": 0, "cells": 0, "outputs": 0, "image_outputs": 0}
    images: set[str] = set()
    per_file: dict[str, tuple[int, int]] = {}
    for path in files:
        raw = path.read_bytes()
        sha = hashlib.sha256(raw).hexdigest()
        nb = json.loads(raw.decode("utf-8"))
        if nb["nbformat"] >= 4:
            cells = nb["cells"]
        else:
            cells = [cell for sheet in nb["worksheets"] for cell in sheet["cells"]]
        file_cells = len(cells)
        file_image_outputs = 0
        outputs = 0
        for cell in cells:
            if cell.get("cell_type") != "code":
                continue
            for output in cell.get("outputs", []):
                outputs += 1
                if nb["nbformat"] >= 4:
                    bundle = output.get("data", {}) if output["output_type"] in ("execute_result", "display_data") else {}
                    bundle = {mime: value for mime, value in bundle.items() if mime in V4_IMAGE_MIMES}
                else:
                    bundle = {}
                    if output["output_type"] in ("pyout", "display_data"):
                        bundle = {V3_IMAGE_KEYS[key]: value for key, value in output.items() if key in V3_IMAGE_KEYS}
                if bundle:
                    file_image_outputs += 1
                for mime, value in bundle.items():
                    value = "".join(value) if isinstance(value, list) else value
                    blob = value.encode("utf-8") if mime == "image/svg+xml" else base64.b64decode(value)
                    if sha not in seen:
                        images.add(hashlib.sha256(blob).hexdigest())
        per_file[path.name] = (file_cells, file_image_outputs)
        if sha in seen:
            continue
        seen.add(sha)
        counts["notebooks"] += 1
        counts["cells"] += file_cells
        counts["outputs"] += outputs
        counts["image_outputs"] += file_image_outputs
    counts["images"] = len(images)
    counts["per_file"] = per_file
    return counts


def table_counts(session_or_conn) -> dict[str, int]:
    return {t: session_or_conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in CONTENT_TABLES}


def stats_match(stats: dict, expected: dict) -> dict:
    keys = ("notebooks", "cells", "outputs", "image_outputs", "images")
    return {k: (stats[k], expected[k]) for k in keys if stats[k] != expected[k]}


# --- the real corpus --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_session(real_corpus_url):
    eng = create_engine(real_corpus_url)
    with Session(eng) as sess:
        yield sess
    eng.dispose()


def test_real_corpus_counts_equal_an_independent_count(real_session):
    expected = independent_count(real_notebooks())
    stats = corpus_stats(session=real_session)
    assert stats_match(stats, expected) == {}
    assert stats["problems"] == 0
    assert stats["sources"] == len(real_notebooks())
    # the stored rows themselves, not only the counters kept on each notebook
    tables = table_counts(real_session)
    assert tables["notebook"] == expected["notebooks"]
    assert tables["cell"] == expected["cells"]
    assert tables["output"] == expected["outputs"]
    assert tables["image"] == expected["images"]
    image_outputs = real_session.execute(
        text("SELECT count(*) FROM output WHERE mime_types && ARRAY['image/png','image/jpeg','image/gif','image/svg+xml']")
    ).scalar_one()
    assert image_outputs == expected["image_outputs"]


def test_real_corpus_counts_per_notebook_equal_sources_tsv(real_session):
    rows = list(csv.DictReader((REAL_CORPUS / "SOURCES.tsv").open(encoding="utf-8"), delimiter="\t"))
    stored = {
        Path(location).name: (n_cells, n_image_outputs, original)
        for location, n_cells, n_image_outputs, original in real_session.execute(
            text(
                "SELECT s.location, n.n_cells, n.n_image_outputs, n.original_nbformat "
                "FROM source s JOIN notebook n ON n.id = s.notebook_id"
            )
        )
    }
    assert len(rows) == len(stored) == len(real_notebooks())
    mismatched = [
        (row["file"], (int(row["n_cells"]), int(row["n_image_outputs"])), stored[row["file"]][:2])
        for row in rows
        if (int(row["n_cells"]), int(row["n_image_outputs"])) != stored[row["file"]][:2]
    ]
    assert mismatched == []
    assert {row["file"] for row in rows if row["nbformat"].startswith("3")} == {
        name for name, (_, _, original) in stored.items() if original == 3
    }


def test_schema_violations_are_warnings_on_ingested_notebooks(real_session):
    # some real notebooks break the schema (markdown cells with execution_count, ...): ingested, with warnings
    rows = real_session.execute(
        text(
            "SELECT p.stage, p.reason, p.notebook_id, s.location FROM problem p "
            "JOIN source s ON s.notebook_id = p.notebook_id WHERE p.severity = 'warning'"
        )
    ).all()
    schema = [r for r in rows if r.stage == "schema"]
    assert schema, "the real corpus has notebooks that break the nbformat schema"
    assert all(r.notebook_id is not None for r in rows)
    assert any("execution_count" in r.reason for r in schema)
    assert all("breaks the nbformat" in r.reason for r in schema)
    errors = real_session.execute(text("SELECT count(*) FROM problem WHERE severity = 'error'")).scalar_one()
    assert errors == 0


# --- any other folder of real notebooks, and archives --------------------------------------------


def _subset(step: int, offset: int = 0) -> list[Path]:
    return real_notebooks()[offset::step]


def test_other_folder_zip_and_tar_of_real_notebooks(session, settings, tmp_path):
    folder = tmp_path / "folder" / "nested"
    folder.mkdir(parents=True)
    in_folder = _subset(9)
    for path in in_folder:
        shutil.copy(path, folder / path.name)
    in_zip = _subset(11, 1)
    with zipfile.ZipFile(tmp_path / "some.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for path in in_zip:
            archive.write(path, f"kernels/{path.name}")
        archive.writestr("README.txt", "not a notebook")
    in_tar = _subset(13, 2)
    with tarfile.open(tmp_path / "some.tar.gz", "w:gz") as archive:
        for path in in_tar:
            archive.add(path, f"dump/{path.name}")
    everything = in_folder + in_zip + in_tar

    report = ingest_paths(
        [tmp_path / "folder", tmp_path / "some.zip", tmp_path / "some.tar.gz"], session=session, settings=settings, cell_analyzer=None
    )
    expected = independent_count(everything)
    assert report.files_seen == len(everything)
    assert report.notebooks_added == expected["notebooks"]
    assert report.notebooks_added + report.already_present == len(everything)
    assert report.problems == []
    assert stats_match(corpus_stats(session=session), expected) == {}
    kinds = dict(session.execute(text("SELECT kind, count(*) FROM source GROUP BY kind")).all())
    assert kinds == {"local": len(in_folder), "archive": len(in_zip) + len(in_tar)}
    members = set(session.execute(text("SELECT member FROM source WHERE kind = 'archive'")).scalars())
    assert {f"kernels/{p.name}" for p in in_zip} | {f"dump/{p.name}" for p in in_tar} == members
    locations = set(session.execute(text("SELECT location FROM source WHERE kind = 'archive'")).scalars())
    assert locations == {str(tmp_path / "some.zip"), str(tmp_path / "some.tar.gz")}


def test_same_file_at_two_places_is_one_notebook_with_two_sources(session, settings, tmp_path):
    original = _subset(40)[0]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(original, tmp_path / "a" / "first.ipynb")
    shutil.copy(original, tmp_path / "b" / "second.ipynb")
    report = ingest_paths([tmp_path], session=session, settings=settings, cell_analyzer=None)
    assert (report.files_seen, report.notebooks_added, report.already_present, report.sources_added) == (2, 1, 1, 2)
    sha = hashlib.sha256(original.read_bytes()).hexdigest()
    places = session.execute(
        text("SELECT s.location FROM source s JOIN notebook n ON n.id = s.notebook_id WHERE n.sha256 = :sha ORDER BY 1"), {"sha": sha}
    ).scalars().all()
    assert places == [str(tmp_path / "a" / "first.ipynb"), str(tmp_path / "b" / "second.ipynb")]


# --- broken files ---------------------------------------------------------------------------------------


def test_broken_files_are_one_problem_each_and_the_good_ones_are_ingested(session, settings, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(BROKEN_CORPUS, mixed)
    good = _subset(50)
    (mixed / "good").mkdir()  # one good notebook has the name of a broken one (another commit of it)
    for path in good:
        shutil.copy(path, mixed / "good" / path.name)
    broken = sorted(BROKEN_CORPUS.glob("*.ipynb"))

    report = ingest_paths([mixed], session=session, settings=settings, cell_analyzer=None)

    assert report.notebooks_added == len({hashlib.sha256(p.read_bytes()).hexdigest() for p in good})
    rows = session.execute(
        text("SELECT location, member, stage, reason, file_sha256 FROM problem WHERE severity = 'error' ORDER BY location")
    ).all()
    assert sorted(Path(r.location).name for r in rows) == [p.name for p in broken]  # exactly one per broken file
    assert len(report.problems) == len(broken)
    reasons = {Path(r.location).name: r.reason for r in rows}
    assert all(r.file_sha256 for r in rows)
    expected_json = {row["file"]: row["json_error"] for row in csv.DictReader((BROKEN_CORPUS / "SOURCES.tsv").open(), delimiter="\t")}
    for name, reason in reasons.items():
        if expected_json[name].startswith("UnicodeDecodeError"):
            assert "not UTF-8" in reason and "0x89" in reason and "PNG" in reason
        else:
            # json's own message with its line and column, as in SOURCES.tsv
            message = expected_json[name].split(": ", 1)[1].split(" (char")[0]
            assert reason.startswith("not valid JSON") and message.split(": line")[0] in reason, (name, reason)
            assert "line" in reason and "column" in reason
    assert "merge conflict" in reasons["jmschrei__pomegranate__examples__hmm_rainy_sunny.ipynb"]
    stats = corpus_stats(session=session)
    assert stats["problems"] == len(broken)
    assert stats["notebooks"] == report.notebooks_added


def test_not_a_notebook_structures_are_problems(session, settings, tmp_path):
    cases = {
        "list.ipynb": "[1, 2, 3]",
        "no_nbformat.ipynb": '{"cells": []}',
        "future.ipynb": '{"nbformat": 5, "nbformat_minor": 0, "cells": [], "metadata": {}}',
        "cells_not_list.ipynb": '{"nbformat": 4, "nbformat_minor": 4, "cells": {}, "metadata": {}}',
        "cell_not_object.ipynb": '{"nbformat": 4, "nbformat_minor": 4, "cells": ["x"], "metadata": {}}',
    }
    for name, body in cases.items():
        (tmp_path / name).write_text(body)
    report = ingest_paths([tmp_path], session=session, settings=settings, cell_analyzer=None)
    assert report.notebooks_added == 0
    reasons = {Path(p[0]).name: (p[2], p[3]) for p in report.problems}
    assert set(reasons) == set(cases)
    assert all(stage == "notebook" and "not a notebook" in reason for stage, reason in reasons.values())
    assert "a list" in reasons["list.ipynb"][1]
    assert "'nbformat'" in reasons["no_nbformat.ipynb"][1]
    assert "nbformat 5" in reasons["future.ipynb"][1]
    assert "cell 0" in reasons["cell_not_object.ipynb"][1]


def test_loading_in_the_workers_stores_what_loading_in_the_main_process_does(fresh_database, tmp_path):
    """Both ways of loading, on the same mixed folder: broken files, a file at two places, a zip."""
    folder = tmp_path / "mixed"
    shutil.copytree(BROKEN_CORPUS, folder)
    good = _subset(25)
    (folder / "good").mkdir()  # one good notebook has the name of a broken one
    for path in good:
        shutil.copy(path, folder / "good" / path.name)
    shutil.copy(good[0], folder / "again.ipynb")
    with zipfile.ZipFile(folder / "some.zip", "w") as archive:
        for path in good[:3] + _subset(31, 1):
            archive.write(path, f"kernels/{path.name}")
    queries = (
        "SELECT sha256, size_bytes, nbformat, language, metadata::text, n_cells, n_outputs, n_image_outputs FROM notebook ORDER BY 1",
        "SELECT n.sha256, c.position, c.cell_type, md5(c.source), c.metadata::text, c.search_vector::text "
        "FROM cell c JOIN notebook n ON n.id = c.notebook_id ORDER BY 1, 2",
        "SELECT n.sha256, c.position, o.position, o.output_type, md5(coalesce(o.data::text, '') || coalesce(o.text, '')) "
        "FROM output o JOIN cell c ON c.id = o.cell_id JOIN notebook n ON n.id = c.notebook_id ORDER BY 1, 2, 3",
        "SELECT sha256, mime, md5(data), width, height FROM image ORDER BY 1",
        "SELECT n.sha256, oi.mime, oi.image_sha256 FROM output_image oi JOIN output o ON o.id = oi.output_id "
        "JOIN notebook n ON n.id = o.notebook_id ORDER BY 1, 2, 3",
        "SELECT n.sha256, s.kind, s.location, s.member FROM source s JOIN notebook n ON n.id = s.notebook_id ORDER BY 2, 3, 4",
        "SELECT location, member, stage, severity, reason, file_sha256 FROM problem ORDER BY 1, 2, 3, 4",
    )
    rows, reports = [], []
    for workers in (1, 2):
        url = fresh_database()
        eng = create_engine(url)
        from db.settings import Settings

        with Session(eng) as session:
            reports.append(ingest_paths([folder], session=session, settings=Settings(home=tmp_path / f"h{workers}", database_url=url, workers=workers), cell_analyzer=None))
        with eng.connect() as conn:
            rows.append([conn.execute(text(q)).all() for q in queries])
        eng.dispose()
    main, workers = reports
    assert (main.loaded_by, workers.loaded_by) == ("main", "workers")
    for key in ("files_seen", "notebooks_added", "sources_added", "already_present", "bytes_read"):
        assert getattr(main, key) == getattr(workers, key), key
    assert sorted(main.problems) == sorted(workers.problems) and len(main.problems) == len(list(BROKEN_CORPUS.glob("*.ipynb")))
    assert sorted(main.warnings) == sorted(workers.warnings)
    for query, in_main, in_workers in zip(queries, *rows):
        assert in_main == in_workers, query
    assert all(rows[0])  # every table has rows


# --- idempotence --------------------------------------------------------------------------------------


def test_second_ingest_adds_no_rows(session, settings, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for path in _subset(15) + sorted(BROKEN_CORPUS.glob("*.ipynb"))[:3]:
        shutil.copy(path, folder / path.name)
    first = ingest_paths([folder], session=session, settings=settings, cell_analyzer=None)
    assert first.notebooks_added > 0 and not first.nothing_new
    before = table_counts(session)
    second = ingest_paths([folder], session=session, settings=settings, cell_analyzer=None)
    assert table_counts(session) == before
    assert second.nothing_new
    assert (second.notebooks_added, second.sources_added) == (0, 0)
    assert second.already_present == first.notebooks_added
    assert len(second.problems) == len(first.problems) == 3  # found again, not recorded again


def test_sigkill_half_way_then_rerun_equals_one_clean_run(fresh_database, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    files = real_notebooks()[::5]
    for path in files:
        shutil.copy(path, folder / path.name)
    shutil.copy(sorted(BROKEN_CORPUS.glob("*.ipynb"))[0], folder / "broken.ipynb")
    command = [sys.executable, "-m", "ingest.cli", "ingest", str(folder), "--no-analyze", "--batch", "2", "--workers", "2", "--no-progress"]

    killed_url = fresh_database()
    env = cli_env(killed_url, tmp_path / "home")
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    eng = create_engine(killed_url)
    deadline = time.monotonic() + 120
    count = 0
    while time.monotonic() < deadline and proc.poll() is None:
        with eng.connect() as conn:
            count = conn.execute(text("SELECT count(*) FROM notebook")).scalar_one()
        if count > 0:
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()
    os.killpg(proc.pid, signal.SIGKILL)  # the ingest and its workers, with no chance to clean up
    proc.wait()
    with eng.connect() as conn:
        partial = conn.execute(text("SELECT count(*) FROM notebook")).scalar_one()
    assert 0 < partial < len(files), "the kill should land half-way"

    rerun = subprocess.run(command, env=env, capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr.decode()

    clean_url = fresh_database()
    clean = subprocess.run(command, env=cli_env(clean_url, tmp_path / "home2"), capture_output=True, timeout=300)
    assert clean.returncode == 0, clean.stderr.decode()

    eng_clean = create_engine(clean_url)
    with eng.connect() as killed, eng_clean.connect() as fresh:
        assert table_counts(killed) == table_counts(fresh)
        for query in (
            "SELECT sha256 FROM notebook ORDER BY 1",
            "SELECT n.sha256, c.position, md5(c.source) FROM cell c JOIN notebook n ON n.id = c.notebook_id ORDER BY 1, 2",
            "SELECT sha256 FROM image ORDER BY 1",
            "SELECT location, stage FROM problem ORDER BY 1, 2",
        ):
            assert killed.execute(text(query)).all() == fresh.execute(text(query)).all()
        statuses = killed.execute(text("SELECT status FROM ingest_run ORDER BY id")).scalars().all()
        assert statuses == ["running", "finished"]  # the killed run could not even say so
    eng.dispose()
    eng_clean.dispose()


def test_two_concurrent_ingests_of_the_same_files_equal_one_clean_run(fresh_database, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for path in real_notebooks()[1::16]:
        shutil.copy(path, folder / path.name)
    racing_url = fresh_database()
    command = [sys.executable, "-m", "ingest.cli", "ingest", str(folder), "--no-analyze", "--batch", "2", "--json", "--workers"]
    # one racer loads in its main process, the other in its two workers (each over its own connection)
    racers = [
        subprocess.Popen([*command, str(i + 1)], env=cli_env(racing_url, tmp_path / f"home{i}"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for i in range(2)
    ]
    reports = []
    for proc in racers:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        reports.append(json.loads(out))
    # between them every notebook was added once; neither recorded a problem for losing a race
    assert [r["loaded_by"] for r in reports] == ["main", "workers"]
    assert sum(r["notebooks_added"] for r in reports) == len(list(folder.iterdir()))
    assert all(r["problems"] == [] for r in reports)

    clean_url = fresh_database()
    eng_clean = create_engine(clean_url)
    from db.settings import Settings

    with Session(eng_clean) as session:
        ingest_paths([folder], session=session, settings=Settings(home=tmp_path / "h", database_url=clean_url), cell_analyzer=None)
    eng = create_engine(racing_url)
    with eng.connect() as racing, eng_clean.connect() as clean:
        assert table_counts(racing) == table_counts(clean)
    eng.dispose()
    eng_clean.dispose()
