"""`nbatlas inspect` on real notebooks: one from the corpus (re-executed once) and one left out of it,
in the terminal and as HTML, every section present and its facts equal to the database's.

The corpus here is the Carl-McBride-Ellis notebooks of ../shared/corpus/real minus one (HELD_OUT),
ingested, embedded with the default models and one of them (IN_CORPUS) reproduced by the real
reproduce job with the local backend (here it stops at `import seaborn`: a missing module).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import subprocess
import uuid

import pytest
from PIL import Image
from sqlalchemy import create_engine, text
from sqlmodel import Session

from analysis.inspect import SECTIONS
from db import schema
from db.settings import Settings
from db.server import create_database, drop_database
from tests.conftest import BROKEN_CORPUS, REAL_CORPUS, cli_env
from tests.test_api import NBATLAS, TIMEOUT, serve

AUTHOR = "Carl-McBride-Ellis__My-kaggle-notebooks__files__"
HELD_OUT = REAL_CORPUS / f"{AUTHOR}titanic-in-all-the-confusion.ipynb"
IN_CORPUS = REAL_CORPUS / f"{AUTHOR}discrimination-threshold-false-positive-negative.ipynb"


@pytest.fixture(scope="module")
def corpus(server_url, tmp_path_factory):
    """(database url, home, engine): the author's notebooks but HELD_OUT, embedded, IN_CORPUS reproduced."""
    from db.queries import reproduce as q
    from ingest.embed.job import embed
    from ingest.local import ingest_paths
    from ingest.reproduce.jobs import WorkerDeps, reproduce_one
    from ingest.reproduce.local_backend import LocalBackend

    files = [p for p in sorted(REAL_CORPUS.glob(f"{AUTHOR}*.ipynb")) if p != HELD_OUT]
    assert IN_CORPUS in files and len(files) > 10
    name = f"nbatlas_inspect_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    engine = create_engine(url)
    schema.upgrade(engine)
    home = tmp_path_factory.mktemp("inspect") / "home"
    settings = Settings(home=home, database_url=url)
    with Session(engine) as session:
        report = ingest_paths(files, session=session, settings=settings)
        assert report.notebooks_added == len(files)
        embed(session=session, settings=settings)
        notebook_id = session.execute(text("SELECT notebook_id FROM source WHERE location = :l"),
                                      {"l": str(IN_CORPUS)}).scalar_one()
        backend = LocalBackend(trust_notebooks=True)
        request_id = q.create_request(session=session, backend="local", image=backend.image, timeout_s=120,
                                      limits={}, data_dir=None, selection={}, n_notebooks=1)
        session.commit()
    status = reproduce_one(WorkerDeps(engine=engine, trust_notebooks=True), request_id=request_id, notebook_id=notebook_id)
    assert status in ("ok", "error")
    yield url, home, engine
    engine.dispose()
    drop_database(server_url, name)


@pytest.fixture(scope="module")
def public_url(corpus):
    """A public read-only server on the corpus: what inspect asks keeps within its alias, token and body limits."""
    url, home, _ = corpus
    with serve(url, home.parent / "public-home", "--public") as base:
        yield base


def rows(engine, sql: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def inspect_cli(corpus, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    url, home, _ = corpus
    env = {**cli_env(url, home), "COLUMNS": "220", "NO_COLOR": "1", **(env or {})}
    return subprocess.run([NBATLAS, "inspect", *args], env=env, capture_output=True, text=True, timeout=TIMEOUT * 2)


def section_texts(out: str) -> dict[str, str]:
    """The terminal output cut at its section rules (─── Title ───)."""
    parts = re.split(r"^─+ (.+?) ─+$", out, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


PLACE = re.compile(r"^\s+0\.\d{3}\s+.+ in (.+) \(cell (\d+), output (\d+), ([\w.-]+)(?: (\d+)×(\d+))?, ([0-9a-f]{8})\)$")


def check_plot_places(engine, section: str) -> None:
    """Every similar plot is named by its cell, output, format, size and short SHA, as stored; no two
    neighbours of one figure read the same (a cell that drew several figures listed one line per
    figure, all saying only "cell N")."""
    blocks = re.split(r"^figure \d+ .*:$", section, flags=re.M)[1:]
    assert blocks
    for block in blocks:
        lines = [line for line in block.splitlines() if re.match(r"^\s+0\.\d{3}\s", line)]
        places = [PLACE.match(line) for line in lines]
        assert all(places), lines
        assert len({m.groups() for m in places}) == len(places), lines
        for m in places:
            cell, output, fmt, width, height, sha = m.group(2, 3, 4, 5, 6, 7)
            found = rows(engine, """SELECT i.mime, i.width, i.height FROM image i JOIN output_image oi ON oi.image_sha256 = i.sha256
                                    JOIN output o ON o.id = oi.output_id JOIN cell c ON c.id = o.cell_id
                                    WHERE i.sha256 LIKE :sha AND o.position = :o AND c.position = :c""",
                         sha=f"{sha}%", o=int(output), c=int(cell))
            assert found, m.group(0)
            mime, w, h = found[0]
            assert mime.removeprefix("image/").removesuffix("+xml") == fmt
            assert (width, height) == ((str(w), str(h)) if w and h else (None, None))


def test_terminal_in_the_corpus(corpus, public_url):
    _, _, engine = corpus
    done = inspect_cli(corpus, str(IN_CORPUS), "--server", public_url)
    assert done.returncode == 0, done.stderr
    sections = section_texts(done.stdout)
    assert list(sections) == list(SECTIONS)

    (nid,) = rows(engine, "SELECT notebook_id FROM source WHERE location = :l", l=str(IN_CORPUS))[0]
    assert f"in the corpus as notebook {nid}" in sections["Notebook"]
    assert hashlib.sha256(IN_CORPUS.read_bytes()).hexdigest() in sections["Notebook"]

    # the outline: one row per cell, each code cell with the stage the ingest stored for it
    stored = dict(rows(engine, """SELECT c.position, ca.stage FROM cell c JOIN cell_analysis ca ON ca.cell_id = c.id
                                  WHERE c.notebook_id = :n AND c.cell_type = 'code'""", n=nid))
    outline = {int(m.group(1)): m.group(2) for m in re.finditer(r"^(\d+)\s+(?:code|mark|raw)\s+(\w*)", sections["Outline"], re.M)}
    n_cells = rows(engine, "SELECT n_cells FROM notebook WHERE id = :n", n=nid)[0][0]
    assert sorted(outline) == list(range(n_cells))
    assert {pos: outline[pos] for pos in stored} == stored and "evaluation" in stored.values()

    libraries = rows(engine, "SELECT libraries FROM notebook_analysis WHERE notebook_id = :n", n=nid)[0][0]
    listed = [line.split()[0] for line in sections["Libraries"].strip().splitlines()[1:]]
    assert sorted(listed) == sorted(libraries) and "yellowbrick" in listed

    stored_figures = rows(engine, """SELECT array_to_string(p.plot_kinds, ', '), c.position FROM output_plot p
                                     JOIN cell c ON c.id = p.cell_id WHERE p.notebook_id = :n ORDER BY p.cell_id, p.output_id""", n=nid)
    figures = [(k, int(pos)) for k, pos in re.findall(r"│ (.+?)  cell (\d+), stage", sections["Visualisations"])]
    assert figures == stored_figures and len(figures) == 4
    assert "before:" in sections["Visualisations"] and "evidence:" in sections["Visualisations"]

    # its own cells and plots are not its neighbours; another notebook's are
    assert "discrimination-threshold" not in sections["Similar notebooks"]
    assert re.search(r"^\s*0\.\d{3}\s+\S", sections["Similar notebooks"], re.M)
    plot_hits = re.findall(r"^figure \d+ \(.*\):\n\s+0\.\d{3}\s+.+ in (\S+) \(cell \d+,", sections["Similar plots"], re.M)
    assert len(plot_hits) == 4 and not any("discrimination-threshold" in h for h in plot_hits)
    check_plot_places(engine, sections["Similar plots"])
    assert re.search(r"^\s*0\.\d{3}\s+\d+: ", sections["Similar code"], re.M)

    (run_id, failure, detail) = rows(engine, "SELECT id, failure_class, failure_detail FROM run WHERE notebook_id = :n", n=nid)[0]
    assert f"run {run_id} (local" in sections["Reproducibility"]
    if failure is not None:  # here: seaborn is not installed, a missing module
        assert f"{failure} ({detail})" in sections["Reproducibility"]
    else:
        assert "ran without error" in sections["Reproducibility"]


def test_terminal_not_in_the_corpus(corpus, public_url):
    _, _, engine = corpus
    sha = hashlib.sha256(HELD_OUT.read_bytes()).hexdigest()
    assert rows(engine, "SELECT count(*) FROM notebook WHERE sha256 = :s", s=sha) == [(0,)]
    done = inspect_cli(corpus, str(HELD_OUT), "--server", public_url)
    assert done.returncode == 0, done.stderr
    sections = section_texts(done.stdout)
    assert list(sections) == list(SECTIONS)
    assert "not in the corpus" in sections["Notebook"] and sha in sections["Notebook"]
    assert "confusion_matrix" in sections["Visualisations"] and "roc_curve" in sections["Visualisations"]
    assert "sklearn" in sections["Libraries"]
    # its siblings are in the corpus: the nearest plots of its confusion matrices are confusion matrices
    first_hits = re.findall(r"figure \d+ \(confusion_matrix, cell \d+\):\n\s+0\.\d+\s+(\S+) in", sections["Similar plots"])
    assert first_hits and all(kind.rstrip(",") == "confusion_matrix" for kind in first_hits)
    check_plot_places(engine, sections["Similar plots"])
    ranked = re.findall(r"^\s*(0\.\d{3})\s+\S", sections["Similar notebooks"], re.M)
    assert len(ranked) >= 3 and [float(s) for s in ranked] == sorted((float(s) for s in ranked), reverse=True)
    assert "Not in the corpus, so it has no reproduction record" in sections["Reproducibility"]


def test_a_space_the_server_cannot_search_is_said_in_its_section(corpus):
    """The (private) server is configured with an image model the corpus has no vectors from: the plots
    are not searched and the sections say why; code and text still are."""
    done = inspect_cli(corpus, str(HELD_OUT), env={"NBATLAS_EMBED_IMAGE_MODEL": "plot-descriptor-v9"})
    assert done.returncode == 0, done.stderr
    sections = section_texts(done.stdout)
    assert list(sections) == list(SECTIONS)
    assert "image: this corpus has no image vectors from model 'plot-descriptor-v9'" in sections["Similar plots"]
    assert "No plot of this notebook could be searched" in sections["Similar plots"]
    assert re.search(r"^\s*0\.\d{3}\s+\S", sections["Similar notebooks"], re.M)
    assert re.search(r"^\s*0\.\d{3}\s+\d+: ", sections["Similar code"], re.M)


def _data_images(page: str) -> list[tuple[str, bytes]]:
    return [(mime, base64.b64decode(data)) for mime, data in re.findall(r"src='data:([\w/+.-]+);base64,([^']+)'", page)]


@pytest.mark.parametrize("notebook, server", [(IN_CORPUS, None), (HELD_OUT, "public_url")],
                         ids=["in-corpus-own-server", "not-in-corpus-public-server"])
def test_html_page(corpus, notebook, server, request, tmp_path):
    """Without --server the command starts (and stops) a private API on the configured database."""
    _, _, engine = corpus
    out = tmp_path / "page.html"
    where = ["--server", request.getfixturevalue(server)] if server else []
    done = inspect_cli(corpus, str(notebook), *where, "--html", str(out))
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    assert "<script" not in page and "Content-Security-Policy" in page
    assert ("<strong>in the corpus</strong>" in page) == (notebook == IN_CORPUS)
    assert ("<strong>not in the corpus</strong>" in page) == (notebook == HELD_OUT)
    images = _data_images(page)
    # the notebook's own figures, byte for byte, then the similar plots' thumbnails (PNG from the server)
    nb = json.loads(notebook.read_text())
    own = [base64.b64decode("".join(o["data"]["image/png"])) for c in nb["cells"] for o in c.get("outputs", [])
           if "image/png" in o.get("data", {})]
    assert [data for _, data in images[: len(own)]] == own
    thumbs = images[len(own):]
    assert thumbs and all(mime == "image/png" for mime, _ in thumbs)
    for _, data in thumbs:
        img = Image.open(io.BytesIO(data))
        assert img.width <= 256 and img.height > 10
    (n_runs, run_id, status) = rows(engine, "SELECT count(*), min(r.id), min(r.status) FROM run r JOIN notebook n "
                                    "ON n.id = r.notebook_id WHERE n.sha256 = :s",
                                    s=hashlib.sha256(notebook.read_bytes()).hexdigest())[0]
    assert (f"<tr><td>{run_id}</td><td>{status}</td><td>local</td>" in page) == (n_runs == 1)
    assert ("no reproduction record" in page) == (n_runs == 0)


def test_notebook_text_cannot_inject_script(corpus, public_url, tmp_path):
    """Markdown around a plot, rendered in the page, keeps no script, handler or javascript: link."""
    nb = json.loads(HELD_OUT.read_text())
    plot_cell = next(i for i, c in enumerate(nb["cells"]) if any("image/png" in o.get("data", {}) for o in c.get("outputs", [])))
    nb["cells"].insert(plot_cell + 1, {"cell_type": "markdown", "metadata": {}, "source": [
        "<script>alert(1)</script> <img src=x onerror=alert(2)> [click](javascript:alert(3)) **bold**"]})
    hostile = tmp_path / "hostile.ipynb"
    hostile.write_text(json.dumps(nb))
    out = tmp_path / "page.html"
    done = inspect_cli(corpus, str(hostile), "--server", public_url, "--html", str(out))
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert "<strong>bold</strong>" in page
    # shown as text at most, never as a tag, an attribute or a link
    assert "<script" not in page and "&lt;script&gt;alert(1)" in page
    assert not re.search(r"<[^>]*\bonerror\s*=", page)
    assert not re.search(r"href\s*=\s*['\"]?\s*javascript:", page, re.I)


def test_a_broken_notebook_is_named_with_its_reason(corpus):
    """Refused before any server is started or asked."""
    broken = BROKEN_CORPUS / "rasbt__pattern_classification__Images__ml3_3d_lot.ipynb"
    done = inspect_cli(corpus, str(broken))
    assert done.returncode == 1
    message = done.stderr.replace("\n", "")
    assert str(broken) in message and "it looks like a PNG image" in message


def test_similar_plots_of_one_cell_are_told_apart(real_corpus_url, tmp_path):
    """A real cell that drew several pictures: the line inspect writes for each, from the fields it asks
    the (public) API for, names a different output, format/size or SHA (it said only "cell N" for each)."""
    from analysis.inspect import _IMAGE_FIELDS, _NB, plot_place
    from api.app import create_app
    from tests.test_api_schema import gql

    engine = create_engine(real_corpus_url)
    try:
        (cell_position, shas), = rows(engine, """
            SELECT c.position, array_agg(DISTINCT oi.image_sha256) FROM cell c JOIN output o ON o.cell_id = c.id
            JOIN output_image oi ON oi.output_id = o.id GROUP BY c.id, c.position
            HAVING count(DISTINCT oi.image_sha256) >= 3 ORDER BY count(DISTINCT oi.image_sha256) DESC, c.id LIMIT 1""")
    finally:
        engine.dispose()
    app = create_app(Settings(home=tmp_path / "home", database_url=real_corpus_url), public=True)
    try:
        places = []
        for sha in shas:
            body = gql(app, f"query($s: String!) {{ image(sha256: $s) {{ {_IMAGE_FIELDS} }} }}" + _NB, {"s": sha})
            assert "errors" not in body, body["errors"]
            image = body["data"]["image"]
            if image["outputs"][0]["cell"]["position"] == cell_position:  # shown first in this cell
                places.append(plot_place(image))
    finally:
        app.state.db.dispose()
    assert len(places) >= 3
    assert len(set(places)) == len(places), places
    assert all(p.startswith(f"cell {cell_position}, output ") for p in places)


def test_a_julia_notebook_is_shown_as_not_analysed(corpus, public_url):
    """As the database stores it: no stage, library or plot kind, not the analyser's placeholder "other"."""
    julia = REAL_CORPUS / "jiahao__ijulia-notebooks-assorted__BlockSVD.ipynb"
    done = inspect_cli(corpus, str(julia), "--server", public_url, "-k", "1")
    assert done.returncode == 0, done.stderr
    sections = section_texts(done.stdout)
    assert "not analysed: the kernel language is julia" in sections["Notebook"]
    outline = sections["Outline"].splitlines()[1]  # leading markdown cells still make an "other" run
    assert re.fullmatch(r"(other \(\d+\) → )?not analysed \(\d+\)", outline.strip()), outline
    figures = re.findall(r"^.*cell \d+, stage .*$", sections["Visualisations"], re.M)
    assert len(figures) == 12 and all("stage not analysed" in f and "other" not in f for f in figures), figures
