"""``nbatlas demo``: the notebooks are really executed, and the CLI ingests exactly what is on disk.

Also the project's front door: the README's quick start agrees with .ci/run, every setting and
command is documented, and docker-compose.yml is a valid deployment.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ingest.demo import generate_demo_corpus
from ingest.demo_notebooks import DEMO_NOTEBOOKS
from tests.conftest import REPO, cli_env

IMAGE_MIMES_V4 = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")
IMAGE_KEYS_V3 = ("png", "jpeg", "svg")


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An NBATLAS_HOME whose demo/ holds the executed notebooks (executed once per test session)."""
    home = tmp_path_factory.mktemp("demo-home")
    corpus = generate_demo_corpus(home / "demo", progress=False)
    assert corpus.generated
    return home


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _cells(nb: dict) -> list[dict]:
    if nb["nbformat"] == 3:
        return [cell for sheet in nb.get("worksheets", []) for cell in sheet.get("cells", [])]
    return nb["cells"]


def _image_payloads(output: dict, version: int) -> list[bytes]:
    """The decoded bytes of each image an output carries, read straight from the JSON."""
    if version == 3:
        found = [(key, output[key]) for key in IMAGE_KEYS_V3 if key in output]
        text_like = {"svg"}
    else:
        data = output.get("data", {})
        found = [(mime, data[mime]) for mime in IMAGE_MIMES_V4 if mime in data]
        text_like = {"image/svg+xml"}
    payloads = []
    for kind, value in found:
        value = "".join(value) if isinstance(value, list) else value
        payloads.append(value.encode("utf-8") if kind in text_like else base64.b64decode(value))
    return payloads


def count_notebooks(paths: list[Path]) -> dict[str, int]:
    """An independent count of what the files hold, by reading their JSON directly."""
    counts = {"notebooks": 0, "cells": 0, "outputs": 0, "image_outputs": 0}
    digests: set[str] = set()
    for path in paths:
        nb = _load(path)
        counts["notebooks"] += 1
        for cell in _cells(nb):
            counts["cells"] += 1
            for output in cell.get("outputs", []):
                counts["outputs"] += 1
                payloads = _image_payloads(output, nb["nbformat"])
                if payloads:
                    counts["image_outputs"] += 1
                digests.update(hashlib.sha256(p).hexdigest() for p in payloads)
    counts["images"] = len(digests)
    return counts


# --------------------------------------------------------------------------- generation


def test_demo_notebooks_are_executed_for_real(demo_home: Path) -> None:
    paths = sorted((demo_home / "demo").glob("*.ipynb"))
    assert [p.stem for p in paths] == [spec.name for spec in DEMO_NOTEBOOKS]

    for spec, path in zip(DEMO_NOTEBOOKS, paths):
        nb = _load(path)
        assert nb["nbformat"] == spec.nbformat, path.name
        code = [c for c in _cells(nb) if c["cell_type"] == "code"]
        counts = [c.get("execution_count", c.get("prompt_number")) for c in code]
        # every code cell ran, in order, in one kernel
        assert counts == list(range(1, len(code) + 1)), path.name
        if spec.nbformat == 4:
            # the kernel was this interpreter, not whatever "python3" a user spec points at
            assert nb["metadata"]["language_info"]["version"] == platform.python_version()
        errors = [o for c in code for o in c["outputs"] if o["output_type"] in ("error", "pyerr")]
        if spec.ends_in_error:
            assert [o["ename"] for o in errors] == ["FileNotFoundError"], path.name
            assert errors[0] in code[-1]["outputs"]
            assert any("train.csv" in line for line in errors[0]["traceback"])
        else:
            assert errors == [], path.name


def test_demo_plots_are_real_images(demo_home: Path) -> None:
    kinds: dict[str, list[str]] = {}
    for path in sorted((demo_home / "demo").glob("*.ipynb")):
        nb = _load(path)
        for cell in _cells(nb):
            for output in cell.get("outputs", []):
                for payload in _image_payloads(output, nb["nbformat"]):
                    if payload.lstrip().startswith(b"<"):
                        assert b"<svg" in payload
                        kinds.setdefault(path.stem, []).append("svg")
                        continue
                    image = Image.open(io.BytesIO(payload))
                    image.load()  # decodes the whole picture, not just the header
                    assert image.width > 200 and image.height > 150
                    # a plot, not a blank canvas
                    assert len(image.convert("L").getcolors(maxcolors=1 << 20)) > 8
                    kinds.setdefault(path.stem, []).append(image.format.lower())
    assert kinds == {
        "01_exploring_the_data": ["png", "png"],  # histogram, scatter
        "02_training_a_classifier": ["png"],  # learning curve
        "03_evaluating_the_model": ["png", "png", "png"],  # confusion matrix, ROC, feature importance
        "04_a_failed_run": ["png"],
        "05_legacy_nbformat3": ["png"],  # bar chart, stored under v3's "png" key
        "06_figure_formats": ["png", "png", "svg", "jpeg"],
    }


def test_demo_reuses_notebooks_on_disk(demo_home: Path) -> None:
    paths = sorted((demo_home / "demo").glob("*.ipynb"))
    before = {p: p.stat().st_mtime_ns for p in paths}
    corpus = generate_demo_corpus(demo_home / "demo", progress=False)
    assert corpus.generated is False
    assert {p: p.stat().st_mtime_ns for p in corpus.paths} == before


# --------------------------------------------------------------------------- the CLI


def test_nbatlas_demo_ingests_exactly_the_generated_notebooks(demo_home: Path, fresh_database) -> None:
    from sqlalchemy import create_engine
    from sqlmodel import Session

    from db.queries.stats import corpus_stats

    url = fresh_database()
    env = cli_env(url, demo_home)
    command = [sys.executable, "-m", "ingest.cli", "demo", "--no-serve", "--no-progress"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert first.returncode == 0, first.stderr
    assert "using the 6 demo notebooks already in" in first.stderr  # the session fixture made them

    expected = count_notebooks(sorted((demo_home / "demo").glob("*.ipynb")))
    assert expected["image_outputs"] > expected["images"]  # the figure shown twice is one image

    engine = create_engine(url)
    try:
        with Session(engine) as session:
            stats = dict(corpus_stats(session=session))
        for key, value in expected.items():
            assert stats[key] == value, key
        assert stats["problems"] == 0
        assert stats["upgraded_to_v4"] == 1
        # the table on stdout shows the same numbers
        assert re.search(rf"notebooks\s*│\s*{expected['notebooks']}\b", first.stdout), first.stdout

        # a second demo finds everything already there and adds nothing
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert second.returncode == 0, second.stderr
        assert "nothing new" in second.stdout + second.stderr, second.stdout
        with Session(engine) as session:
            again = dict(corpus_stats(session=session))
        content = ("notebooks", "cells", "outputs", "image_outputs", "images", "sources", "problems")
        assert {k: again[k] for k in content} == {k: stats[k] for k in content}
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- README, CI, compose


def _quick_start_commands() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    commands = _quick_start_commands()
    assert len(commands) >= 2
    demo, tests = commands[0], commands[1]
    assert demo.endswith("nbatlas demo") and "pip install -e ." in demo
    assert tests.endswith("-m pytest") and "pip install -e '.[dev]'" in tests

    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    match = re.search(r'^TEST_COMMAND="(.+)"$', ci, re.MULTILINE)
    assert match, ".ci/run must define TEST_COMMAND"
    assert match.group(1) == tests
    assert 'bash -c "$TEST_COMMAND"' in ci
    assert "set -euo pipefail" in ci
    assert re.search(r'"\$status" -eq 5', ci), "pytest's exit 5 (no tests) must fail CI"


def _documented_default(value) -> str | None:
    """How the README's configuration table writes a default (None: not a literal, e.g. a factory)."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (int, str)):
        return str(value)
    return None


def test_readme_documents_every_setting_and_command() -> None:
    from pydantic_core import PydanticUndefined
    from typer.main import get_command

    from db.settings import Settings
    from ingest.cli import app

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(NBATLAS_[A-Z0-9_]+)` \| ([^|]*) \|", readme, re.MULTILINE))
    wrong = []
    for name, field in Settings.model_fields.items():
        variable = f"NBATLAS_{name.upper()}"
        default = None if field.default is PydanticUndefined else _documented_default(field.default)
        cell = rows.get(variable)
        if cell is None or (default is not None and cell.split(" ")[0] != default):
            wrong.append(f"| `{variable}` | {default or '?'} | {field.description or '?'} |")
    assert wrong == [], "README's configuration table lacks or misstates:\n" + "\n".join(wrong)

    commands = sorted(get_command(app).commands)
    undocumented = [name for name in commands if f"`nbatlas {name}" not in readme]
    assert undocumented == [], f"README's command table lacks {undocumented}"


def test_docker_compose_is_a_valid_deployment() -> None:
    import yaml

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert services["db"]["image"].startswith("pgvector/pgvector:")
    volume = services["db"]["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]  # a named volume, not a host folder
    for name in ("db", "api", "public"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("api", "public"):
        service = services[name]
        assert service["build"] == "."
        assert service["command"][:2] == ["nbatlas", "serve"] and "0.0.0.0" in service["command"]
        assert service["environment"]["NBATLAS_DATABASE_URL"].startswith("postgresql://")
        assert service["depends_on"]["db"]["condition"] == "service_healthy"
    assert "--public" in services["public"]["command"] and "--public" not in services["api"]["command"]
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile and "pip install ." in dockerfile

    # the real validator when this machine has one (docker compose v2 plugin or Debian's docker-compose)
    for validator in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(validator[0]) is None:
            continue
        probe = subprocess.run([*validator, "version"], capture_output=True, text=True)
        if probe.returncode != 0:
            continue
        check = subprocess.run(
            [*validator, "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
            capture_output=True, text=True, cwd=REPO, stdin=subprocess.DEVNULL,
        )
        assert check.returncode == 0, check.stderr
        break


def test_demo_example_query_is_valid_on_both_apis() -> None:
    from graphql import build_schema, parse, validate

    from api.schema import sdl
    from ingest.commands.demo import EXAMPLE_QUERY

    for public in (False, True):
        errors = validate(build_schema(sdl(public=public)), parse(EXAMPLE_QUERY))
        assert errors == [], (public, errors)
