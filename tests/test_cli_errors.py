"""The `nbatlas` command's clear errors (walkthrough s7 #3, #4, #10 and its nits), run as a real subprocess.

Every check names the exit code and the message a researcher sees; none may end in a traceback. One small
database (a real notebook with a plot, ingested by the CLI) is shared by the module; most checks need less.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REAL_CORPUS, cli_env

# a small real notebook that drew one PNG figure
NOTEBOOK = REAL_CORPUS / "adgirish__kaggleScape__data__script1096.ipynb"
BAD_URL = "postgresql://researcher:s3cr3t-pw@127.0.0.1:1/atlas"


def nbatlas(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ingest.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=Path(__file__).resolve().parent.parent)


def said(proc: subprocess.CompletedProcess) -> str:
    """stdout and stderr with line breaks and runs of spaces folded (rich wraps long lines)."""
    return " ".join((proc.stdout + proc.stderr).split())


def assert_clean_error(proc: subprocess.CompletedProcess, *fragments: str, code: int = 1) -> None:
    text = said(proc)
    assert proc.returncode == code, text
    assert "Traceback" not in text and "ValidationError" not in text and "╭─" not in text, text
    for fragment in fragments:
        assert fragment in text, (fragment, text)


@pytest.fixture(scope="module")
def small_corpus(server_url: str, tmp_path_factory: pytest.TempPathFactory):
    """(env, sha256) of a database holding one real notebook (with its plot), ingested by the CLI."""
    import uuid

    from db.server import create_database, drop_database

    name = f"nbatlas_clierr_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    env = cli_env(url, tmp_path_factory.mktemp("clierr_home"))
    done = nbatlas(["ingest", str(NOTEBOOK), "--workers", "1", "--json"], env)
    assert done.returncode == 0, done.stderr
    import hashlib

    yield env, hashlib.sha256(NOTEBOOK.read_bytes()).hexdigest()
    drop_database(server_url, name)


@pytest.fixture
def empty_env(engine, tmp_path: Path) -> dict[str, str]:
    """The session's migrated, empty database (nothing is committed into it here)."""
    return cli_env(engine.url.render_as_string(hide_password=False), tmp_path / "home")


# --- #3: output paths that cannot be written -------------------------------------------------------


def test_export_to_a_missing_folder_names_it_and_leaves_nothing(empty_env, tmp_path):
    target = tmp_path / "no-such-dir" / "x.parquet"
    proc = nbatlas(["export", "images", "-o", str(target), "--no-progress"], empty_env)
    assert_clean_error(proc, f"cannot write {target}: the folder {target.parent} does not exist")
    assert not target.parent.exists()

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    proc = nbatlas(["export", "cells", "-o", str(a_file / "x.ndjson"), "--no-progress"], empty_env)
    assert_clean_error(proc, f"cannot write {a_file / 'x.ndjson'}: {a_file} is not a folder")


def test_export_that_fails_while_writing_leaves_no_part_file(empty_env):
    # /proc takes no new files, not even from root: the open of the .part file itself fails
    proc = nbatlas(["export", "images", "-o", "/proc/nbatlas-x.parquet", "--no-progress"], empty_env)
    assert_clean_error(proc, "cannot write /proc/nbatlas-x.parquet: ")
    assert ".part" not in said(proc)
    assert not Path("/proc/nbatlas-x.parquet.part").exists()


def test_get_to_a_missing_folder_or_unwritable_place(small_corpus, tmp_path):
    env, sha = small_corpus
    target = tmp_path / "nope" / "d" / "x.ipynb"
    assert_clean_error(nbatlas(["get", sha[:8], "-o", str(target)], env),
                       f"cannot write {target}: the folder {target.parent} does not exist")
    assert_clean_error(nbatlas(["get", sha[:8], "-o", "/proc/nbatlas-x.ipynb"], env), "cannot write /proc/nbatlas-x.ipynb: ")
    assert_clean_error(nbatlas(["get", sha[:8], "-o", str(tmp_path)], env), f"cannot write {tmp_path}: it is a folder")
    good = nbatlas(["get", sha[:8], "-o", str(tmp_path / "x.ipynb")], env)
    assert good.returncode == 0 and (tmp_path / "x.ipynb").read_bytes().startswith(b"{"), good.stderr


def test_annotations_export_to_a_missing_folder(empty_env, tmp_path):
    target = tmp_path / "gone" / "a.csv"
    assert_clean_error(nbatlas(["annotations", "export", "-o", str(target)], empty_env),
                       f"cannot write {target}: the folder {target.parent} does not exist")


# --- #3: bad NBATLAS_* settings ----------------------------------------------------------------------


def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path):
    env = {**os.environ, "NBATLAS_HOME": str(tmp_path), "NBATLAS_WORKERS": "abc"}
    env.pop("NBATLAS_DATABASE_URL", None)
    proc = nbatlas(["stats"], env)
    assert_clean_error(proc, "error: NBATLAS_WORKERS='abc' is not valid: it should be a whole number")
    assert not (tmp_path / "pg").exists()  # refused before any database was started

    env = {**env, "NBATLAS_WORKERS": "2", "NBATLAS_PUBLIC": "maybe", "NBATLAS_MAX_PAGE_SIZE": "lots"}
    proc = nbatlas(["serve", "--print-schema"], env)
    assert_clean_error(proc, "NBATLAS_PUBLIC='maybe' is not valid: it should be true or false",
                       "NBATLAS_MAX_PAGE_SIZE='lots' is not valid: it should be a whole number")
    assert proc.stderr.count("error:") == 2 and proc.stdout == ""


def test_a_bad_kaggle_setting_too(tmp_path):
    env = {**os.environ, "NBATLAS_HOME": str(tmp_path), "NBATLAS_KAGGLE_CONCURRENCY": "99"}
    proc = nbatlas(["mine", "kaggle", "--competition", "titanic"], env)
    assert_clean_error(proc, "NBATLAS_KAGGLE_CONCURRENCY='99' is not valid: it should be less than or equal to 16")


# --- #4: brackets in messages survive rich ----------------------------------------------------------


def test_install_hint_keeps_the_extra(empty_env, tmp_path):
    # Make sentence-transformers missing for this one process, as on an install without the ml extra
    blocker = tmp_path / "blocker" / "sentence_transformers"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError(\"No module named 'sentence_transformers'\")\n")
    env = {**empty_env, "PYTHONPATH": os.pathsep.join([str(blocker.parent), empty_env.get("PYTHONPATH", "")])}
    proc = nbatlas(["embed", "--space", "code", "--model", "st:all-MiniLM-L6-v2"], env)
    assert_clean_error(proc, "pip install 'nbatlas[ml]'")


def test_bracketed_file_names_are_printed_whole(empty_env, tmp_path):
    missing = tmp_path / "study[final]" / "plots[v2].ipynb"
    proc = nbatlas(["ingest", str(missing)], empty_env)
    assert_clean_error(proc, f"no such file or folder: {missing}", code=2)


# --- #10: no password on screen ------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["stats"], ["db", "current"], ["db", "upgrade"]])
def test_database_errors_hide_the_password(tmp_path, args):
    env = cli_env(BAD_URL, tmp_path)
    proc = nbatlas(args, env)
    assert_clean_error(proc, "cannot open the database (postgresql://researcher:***@127.0.0.1:1/atlas)")
    assert "s3cr3t" not in proc.stdout + proc.stderr


def test_db_url_hides_the_password_unless_asked(tmp_path):
    env = cli_env(BAD_URL, tmp_path)
    shown = nbatlas(["db", "url"], env)
    assert shown.returncode == 0 and shown.stdout.strip() == "postgresql+psycopg://researcher:***@127.0.0.1:1/atlas"
    revealed = nbatlas(["db", "url", "--show-password"], env)
    assert revealed.stdout.strip() == "postgresql+psycopg://researcher:s3cr3t-pw@127.0.0.1:1/atlas"


# --- nits --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args,option", [(["--workers", "-3"], "--workers"), (["--batch", "0"], "--batch")])
def test_embed_refuses_nonsense_sizes(empty_env, args, option):
    proc = nbatlas(["embed", *args], empty_env)
    assert_clean_error(proc, f"Invalid value for '{option}'", "greater than or equal to 1", code=2)


def test_analyze_says_the_notebooks_are_current(small_corpus):
    env, _ = small_corpus
    proc = nbatlas(["analyze", "--quiet"], env)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to do, the corpus's one notebook is already analysed by this version" in said(proc)
    assert "0 of 0" not in said(proc)


def test_analyze_on_an_empty_corpus(empty_env):
    proc = nbatlas(["analyze", "--quiet"], empty_env)
    assert proc.returncode == 0 and "the corpus has no notebooks yet" in said(proc), said(proc)


def test_ingest_of_an_empty_folder_is_only_the_error(empty_env, tmp_path):
    folder = tmp_path / "emptyd"
    folder.mkdir()
    proc = nbatlas(["ingest", str(folder)], empty_env)
    assert_clean_error(proc, "error: no notebooks found")
    assert "files seen" not in said(proc) and proc.stdout == ""


def test_empty_listings_say_so(empty_env):
    runs = nbatlas(["mine", "runs"], empty_env)
    assert runs.returncode == 0 and "no mining or import runs yet" in said(runs), said(runs)
    jobs = nbatlas(["jobs"], empty_env)
    assert jobs.returncode == 0 and "no run requests yet" in said(jobs), said(jobs)
    assert "…" not in runs.stdout + runs.stderr + jobs.stdout + jobs.stderr


def test_help_shows_whole_option_names_at_80_columns():
    env = {**os.environ, "COLUMNS": "80"}
    proc = nbatlas(["mine", "kaggle", "--help"], env)
    assert proc.returncode == 0
    assert "…" not in proc.stdout and max(len(line) for line in proc.stdout.splitlines()) <= 80
    for option in ("--top-competitions", "--competition-search", "--competition-category", "--competition-sort",
                   "--with-outputs", "--progress / --no-progress"):
        assert option in proc.stdout, option
    # brackets in help texts are text, not markup
    built = nbatlas(["runner-image", "build", "--help"], env)
    assert "[default: /var/cache/nbatlas-ci when writable, else the user cache]" in " ".join(built.stdout.split())


def test_sample_prints_the_whole_command_to_draw_it_again(small_corpus):
    env, _ = small_corpus
    assert nbatlas(["codebook", "create", "plots"], env).returncode == 0
    proc = nbatlas(["sample", "--name", "again", "--n", "1", "--seed", "7", "--codebook", "plots"], env)
    assert proc.returncode == 0, said(proc)
    line = next(x for x in proc.stderr.splitlines() if x.startswith("to draw it again: "))
    command = line.removeprefix("to draw it again: ")
    assert command == "nbatlas sample --name again --n 1 --seed 7 --unit image --codebook plots"
    # and it does draw it again: the same sample, found
    again = nbatlas(command.split()[1:], env)
    assert again.returncode == 0 and "found (already drawn with this specification)" in said(again), said(again)
