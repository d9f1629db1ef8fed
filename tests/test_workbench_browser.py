"""The workbench in a real browser: Debian's headless Chromium driven by Playwright, against
`nbatlas serve` on a copy of the real corpus.

A researcher's path: open the gallery, filter by a plot kind, open a plot, follow "more like this",
code it with a key press, reload and see the code kept. Then a notebook full of script payloads
(markdown, HTML output, SVG) is opened and nothing of it runs. Every page is saved as a screenshot
under tests/artifacts/workbench/ and checked not to be blank.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text
from sqlmodel import Session

from ingest.serve_process import ServerNotServing, free_port, stop_server, wait_until_serving
from tests.conftest import cli_env
from tests.test_workbench import XSS_FLAG, add_xss_notebook, copy_real_corpus, drop_database, setup_study

CHROMIUM = os.environ.get("NBATLAS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "workbench"
NBATLAS = str(Path(sys.executable).with_name("nbatlas"))
WAIT = 30_000  # ms: generous, the CI machine is shared

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}: run .ci/chromium.sh (apt-get install chromium)"
)


def embed_some_images(url: str, shas: list[str]) -> None:
    """Vectors and pHashes for these images with the configured image model, written the way the
    embed job writes them (embedding all ~600 real images would cost a minute of this test)."""
    from db.queries import similarity as sim
    from ingest.embed import get_embedder
    from ingest.embed.phash import phash_bits
    from ingest.embed.protocol import ImageItem

    settings_model = get_embedder("image")
    eng = create_engine(url)
    with Session(eng) as session:
        rows = session.execute(
            text("SELECT sha256, mime, data, svg FROM image WHERE sha256 = ANY(:s) ORDER BY sha256"), {"s": shas}
        ).all()
        items = [ImageItem(r.mime, bytes(r.data) if r.data is not None else None, r.svg) for r in rows]
        ref = sim.register_model(session=session, space="image", name=settings_model.name,
                                 version=settings_model.version, dimension=settings_model.dimension)
        sim.write_embeddings(session=session, ref=ref, keys=[r.sha256.strip() for r in rows],
                             vectors=settings_model.embed(items))
        sim.write_phashes(session=session, rows=[(r.sha256.strip(), phash_bits(item)) for r, item in zip(rows, items)])
        sim.ensure_hnsw_index(session=session, ref=ref)
        session.commit()
    eng.dispose()


@pytest.fixture(scope="module")
def beacon() -> Iterator[dict]:
    """A web server that records every request: the payloads try to load an image from it."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}/xss-beacon.png", "hits": hits}
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def site(server_url, real_corpus_url, tmp_path_factory, beacon) -> Iterator[dict]:
    """`nbatlas serve` on a copy of the real corpus plus the payload notebook, with an annotator,
    a codebook and image vectors for the plots this test visits."""
    tmp = tmp_path_factory.mktemp("workbench_browser")
    url = copy_real_corpus(server_url, real_corpus_url, tmp)
    xss_id = add_xss_notebook(url, tmp, beacon=beacon["url"])
    study = setup_study(url)
    eng = create_engine(url)
    with eng.connect() as conn:
        # the plot kind the test filters by: the most frequent one among the first gallery pages' figures
        kind = conn.execute(text(
            "SELECT k FROM output_plot p, unnest(p.plot_kinds) k WHERE p.image_sha256 IS NOT NULL "
            "GROUP BY k ORDER BY count(*) DESC, k LIMIT 1")).scalar_one()
        of_kind = [r[0].strip() for r in conn.execute(text(
            "SELECT DISTINCT ON (p.output_id) p.image_sha256 FROM output_plot p WHERE :k = ANY(p.plot_kinds) "
            "AND p.image_sha256 IS NOT NULL ORDER BY p.output_id LIMIT 20"), {"k": kind})]
        others = [r[0].strip() for r in conn.execute(text(
            "SELECT sha256 FROM image WHERE mime = 'image/png' ORDER BY sha256 LIMIT 25"))]
    eng.dispose()
    embed_some_images(url, sorted(set(of_kind + others)))

    port = free_port()
    home = tmp / "home"
    log_path = tmp / "serve.log"
    env = {**cli_env(url, home), "NBATLAS_RATE_LIMIT_BURST": "10000"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([NBATLAS, "serve", "--port", str(port), "--log-level", "warning"], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_serving(proc, base, 120)
        except ServerNotServing as exc:
            raise RuntimeError(f"nbatlas serve: {exc}: {log_path.read_text()}") from None
        yield {"base": base, "url": url, "kind": kind, "xss_notebook": xss_id, **study}
    finally:
        stop_server(proc)
        drop_database(server_url, url)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Debian's Chromium, never a downloaded one (`playwright install` is not used)
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(site, browser) -> Iterator:
    """A fresh browser tab that records every dialog, script error and request."""
    from types import SimpleNamespace

    context = browser.new_context(viewport={"width": 1360, "height": 900})
    tab = SimpleNamespace(pg=context.new_page(), dialogs=[], errors=[], requests=[])
    tab.pg.set_default_timeout(WAIT)

    def on_dialog(dialog):
        tab.dialogs.append(dialog.message)
        dialog.dismiss()

    tab.pg.on("dialog", on_dialog)
    tab.pg.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    tab.pg.on("request", lambda request: tab.requests.append(request.url))
    yield tab
    context.close()


def screenshot(pg, name: str) -> Path:
    """Save the page as tests/artifacts/workbench/NAME.png and check it is not blank."""
    from PIL import Image, ImageStat

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS.parent / ".gitignore").write_text("*\n")  # test artefacts, never committed
    path = ARTIFACTS / f"{name}.png"
    pg.screenshot(path=str(path), full_page=False)
    with Image.open(path) as im:
        grey = im.convert("L")
        spread = ImageStat.Stat(grey).stddev[0]
        distinct = len(set(np.asarray(grey).ravel().tolist()))
    assert spread > 12 and distinct > 30, f"{path} looks blank (pixel stddev {spread:.1f}, {distinct} grey levels)"
    return path


def log_in(pg, site) -> None:
    pg.goto(f"{site['base']}/login")
    pg.fill("input[name=token]", site["token"])
    pg.click("#login-form button[type=submit]")
    pg.wait_for_selector("#annotator-name")


def test_gallery_filter_plot_more_like_this_and_coding(page, site):
    from playwright.sync_api import expect

    pg = page.pg
    log_in(pg, site)
    pg.goto(site["base"] + "/")
    expect(pg.locator("li.tile")).to_have_count(48)
    screenshot(pg, "1-gallery")

    # filter by a plot kind through the form, as a researcher does
    pg.select_option("#filter-plot_kind", site["kind"])
    with pg.expect_navigation():
        pg.click("#filters button[type=submit]")
    assert f"plot_kind={site['kind']}" in pg.url
    tiles = pg.locator("li.tile")
    assert tiles.count() > 0
    for i in range(tiles.count()):
        assert site["kind"] in tiles.nth(i).locator(".kind").all_inner_texts()
    screenshot(pg, "2-gallery-filtered")

    # open a plot: the image itself, its code, its notebook
    first = tiles.first.locator("a").get_attribute("data-sha")
    with pg.expect_navigation():
        tiles.first.locator("a").click()
    assert pg.url.endswith(f"/plot/{first}")
    expect(pg.locator("#plot-image")).to_be_visible()
    assert pg.locator("#plot-image").evaluate("img => img.complete && img.naturalWidth > 0")
    expect(pg.locator(".source .hl")).to_be_visible()
    screenshot(pg, "3-plot")

    # more like this: nearest images by the image model, and one of them opened
    similar = pg.locator("#more-like-this li.tile a")
    assert similar.count() > 0
    target = similar.first.get_attribute("data-sha")
    assert target != first
    with pg.expect_navigation():
        similar.first.click()
    assert pg.url.endswith(f"/plot/{target}")
    screenshot(pg, "4-more-like-this")

    # code it with a key press
    code = site["codes"][0]
    button = pg.locator(f'#coding button.code[data-code-id="{code["id"]}"]')
    expect(button).to_have_attribute("aria-pressed", "false")
    pg.keyboard.press(code["key"])
    expect(button).to_have_attribute("aria-pressed", "true")
    expect(pg.locator("#coding-status")).to_have_text(f"applied {code['name']}")
    screenshot(pg, "5-coded")

    # reload: the code is kept (it is in the database, not in the page)
    pg.reload()
    expect(pg.locator(f'#coding button.code[data-code-id="{code["id"]}"]')).to_have_attribute("aria-pressed", "true")
    eng = create_engine(site["url"])
    with eng.connect() as conn:
        stored = conn.execute(text(
            "SELECT c.name, w.name FROM annotation a JOIN code c ON c.id = a.code_id JOIN annotator w ON w.id = a.annotator_id "
            "WHERE a.image_sha256 = :s"), {"s": target}).all()
    eng.dispose()
    assert stored == [(code["name"], "alice")]
    screenshot(pg, "6-reloaded")

    # the same key again removes it
    pg.keyboard.press(code["key"])
    expect(pg.locator(f'#coding button.code[data-code-id="{code["id"]}"]')).to_have_attribute("aria-pressed", "false")

    # its notebook: j moves to the first cell, a key codes that cell, and a reload shows it kept
    with pg.expect_navigation():
        pg.click("#notebook-link")
    pg.keyboard.press("j")
    focused = pg.locator("article.cell.focused")
    expect(focused).to_have_count(1)
    expect(pg.locator("#target-label")).to_have_text("cell #0")
    cell_id = focused.get_attribute("data-cell-id")
    explain = site["codes"][1]
    pg.keyboard.press(explain["key"])
    badges = pg.locator(f'.cell-codes[data-for="cell:{cell_id}"] .kind')
    expect(badges).to_have_text([explain["name"]])
    screenshot(pg, "7-notebook-cell-coded")
    pg.reload()
    expect(pg.locator(f'.cell-codes[data-for="cell:{cell_id}"] .kind')).to_have_text([explain["name"]])
    eng = create_engine(site["url"])
    with eng.connect() as conn:
        kinds = conn.execute(text("SELECT target_kind, cell_id FROM annotation ORDER BY id")).all()
    eng.dispose()
    assert kinds == [("cell", int(cell_id))]  # the plot's code was removed above
    assert not page.errors and not page.dialogs


def test_a_notebook_of_payloads_runs_nothing(page, site, beacon):
    """Markdown, an HTML output and an SVG carrying <script>, on*= handlers and javascript: links:
    opened, scrolled, hovered and clicked, none of them sets the global or opens a dialog."""
    from playwright.sync_api import expect

    pg = page.pg
    log_in(pg, site)
    pg.goto(f"{site['base']}/notebook/{site['xss_notebook']}")
    expect(pg.locator("h1").first).to_contain_text("xss <img")  # the file name, shown as text
    for frame in pg.locator("iframe.html-output").all():
        frame.scroll_into_view_if_needed()
    pg.get_by_text("hover me").hover()
    pg.get_by_text("an html link").click()
    pg.wait_for_timeout(1500)
    frames = [f for f in pg.frames if "/frames/output/" in f.url]
    assert frames, "the HTML output is shown in its frame"
    assert frames[0].locator("table").count() == 1  # rendered, but inert
    for frame in pg.frames:  # the page and every frame in it
        assert frame.evaluate(f"typeof window.{XSS_FLAG}") == "undefined", frame.url
    screenshot(pg, "8-payload-notebook")

    # the SVG: on its plot page (an <img>), and its URL opened as a page of its own
    svg = pg.locator("figure.out-image img").first.get_attribute("src").split("?")[0]
    sha = svg.rsplit("/", 1)[1]
    pg.goto(f"{site['base']}/plot/{sha}")
    expect(pg.locator("#plot-image")).to_be_visible()
    assert pg.evaluate(f"typeof window.{XSS_FLAG}") == "undefined"
    screenshot(pg, "9-payload-svg-plot")
    pg.goto(site["base"] + svg)
    pg.wait_for_timeout(500)
    assert pg.evaluate(f"typeof window.{XSS_FLAG}") == "undefined"
    # the HTML output's frame document opened as a page of its own
    pg.goto(frames[0].url)
    pg.wait_for_timeout(500)
    assert pg.evaluate(f"typeof window.{XSS_FLAG}") == "undefined"

    assert not page.dialogs, f"a payload opened a dialog: {page.dialogs}"
    # the images they try to load never reach the network: the CSPs stop them in the browser
    assert beacon["hits"] == []
    assert not [u for u in page.requests if u.lower().startswith("javascript:")]
    assert not page.errors
