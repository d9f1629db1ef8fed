"""The CLI: `nbatlas stats [--json]`, `nbatlas get`, `nbatlas ingest` exit codes and summaries.

One command runs as a real subprocess; the others run in-process through Typer's CliRunner (the same
code path from argument parsing on), which spares the CLI's start-up on a shared two-core machine."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys

import nbformat
import pytest
from sqlalchemy import create_engine
from sqlmodel import Session

from db.queries.stats import corpus_stats
from tests.conftest import BROKEN_CORPUS, cli_env, real_notebooks
from tests.test_ingest import independent_count


def nbatlas(*args: str, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ingest.cli", *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli(monkeypatch, tmp_path):
    """``cli(database_url, *args)`` runs ``nbatlas *args`` in-process against that database."""
    from typer.testing import CliRunner

    from db.settings import get_settings
    from ingest.cli import app

    def run(database_url: str, *args: str):
        monkeypatch.setenv("NBATLAS_DATABASE_URL", database_url)
        monkeypatch.setenv("NBATLAS_HOME", str(tmp_path / "home"))
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(app, list(args))
        finally:
            get_settings.cache_clear()

    return run


def test_stats_json_and_table_on_the_real_corpus(real_corpus_url, tmp_path, cli):
    env = cli_env(real_corpus_url, tmp_path / "home")
    done = nbatlas("stats", "--json", env=env)
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    expected = independent_count(real_notebooks())
    for key in ("notebooks", "cells", "outputs", "image_outputs", "images"):
        assert stats[key] == expected[key], key
    assert stats["problems"] == 0
    eng = create_engine(real_corpus_url)
    with Session(eng) as session:
        assert stats == corpus_stats(session=session)
    eng.dispose()

    table = cli(real_corpus_url, "stats")
    assert table.exit_code == 0, table.output
    assert "image_outputs" in table.stdout and f"{expected['cells']:,}" in table.stdout


def test_get_writes_the_notebook_back(real_corpus_url, tmp_path, cli):
    logging.getLogger("traitlets").setLevel(logging.CRITICAL)
    original = max(real_notebooks(), key=lambda p: p.read_bytes().count(b"image/png"))  # the one with most plots
    sha = hashlib.sha256(original.read_bytes()).hexdigest()
    done = cli(real_corpus_url, "get", sha[:12], "-o", str(tmp_path / "out.ipynb"))
    assert done.exit_code == 0, done.output
    written = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    reference = nbformat.reads(original.read_text(encoding="utf-8"), as_version=4)
    if reference.metadata.get("orig_nbformat") == 3:  # cell ids made up by the upgrade, at random
        for nb in (written, reference):
            for cell in nb.cells:
                cell.pop("id", None)
    assert written == reference

    missing = cli(real_corpus_url, "get", "00000000")
    assert missing.exit_code == 1 and "no notebook" in missing.stderr


def test_ingest_command_summary_and_exit_codes(fresh_database, tmp_path, cli):
    url = fresh_database()
    folder = tmp_path / "nbs"
    folder.mkdir()
    for path in real_notebooks()[:4]:
        shutil.copy(path, folder / path.name)
    shutil.copy(sorted(BROKEN_CORPUS.glob("*.ipynb"))[-1], folder / "broken.ipynb")

    first = cli(url, "ingest", str(folder), "--json", "--no-analyze", "--workers", "1")
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert (report["files_seen"], report["notebooks_added"], len(report["problems"])) == (5, 4, 1)
    assert report["problems"][0]["stage"] == "decode"

    again = cli(url, "ingest", str(folder), "--no-analyze")
    assert again.exit_code == 0, again.output
    assert "nothing new" in again.stdout and "problems" in again.stdout

    missing = cli(url, "ingest", str(tmp_path / "nope"))
    assert missing.exit_code == 2 and "no such file or folder" in missing.stderr

    only_broken = tmp_path / "broken"
    shutil.copytree(BROKEN_CORPUS, only_broken)
    broken = cli(url, "ingest", str(only_broken), "--no-analyze")
    assert broken.exit_code == 1 and "none of the 10 files could be ingested" in broken.stderr
    assert "not valid JSON" in broken.stdout

    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = cli(url, "ingest", str(empty))
    assert nothing.exit_code == 1 and "no notebooks found" in nothing.stderr


def test_get_a_notebook_with_nul_and_lone_surrogates(fresh_database, tmp_path, cli):
    from tests.test_rebuild import first_difference, odd_notebook

    url = fresh_database()
    text_ = odd_notebook()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "odd.ipynb").write_text(text_, encoding="utf-8")
    assert cli(url, "ingest", str(tmp_path / "in"), "--no-analyze", "--workers", "1").exit_code == 0
    sha = hashlib.sha256((tmp_path / "in" / "odd.ipynb").read_bytes()).hexdigest()
    done = cli(url, "get", sha, "-o", str(tmp_path / "out.ipynb"))
    assert done.exit_code == 0, done.output
    logging.getLogger("traitlets").setLevel(logging.CRITICAL)
    written = nbformat.reads((tmp_path / "out.ipynb").read_text(encoding="utf-8"), as_version=4)
    assert first_difference(written, nbformat.reads(text_, as_version=4)) is None
