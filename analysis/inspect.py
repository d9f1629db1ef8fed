"""One notebook seen against the corpus: ``nbatlas inspect NOTEBOOK.ipynb`` (terminal, or ``--html``).

The notebook itself is read and analysed on the client's machine, never executed (``ingest.inspect``
gives it here as plain data: cells with stage and libraries, figures with plot kinds, context and
picture). Everything about the corpus comes from the API, over HTTP:

* its stored record, when a notebook with the same SHA-256 is in the corpus: provenance, Kaggle
  metadata and reproduction runs (``notebook(sha256:)``);
* the nearest code cells, markdown cells and plots for each of its own (``similarCells(code:)``,
  ``similarText(text:)``, ``similarImages(image:)``, many searches per request through aliases,
  requests kept within a public server's body, alias and token limits);
* the most similar notebooks, aggregated here from those neighbours: a corpus notebook scores the
  mean, over the inspected notebook's searched items, of its best similarity (1 - cosine distance)
  to each. A notebook in the corpus is left out of its own neighbours.

A space with no vectors on the server (``nbatlas embed`` not run) is reported in its section, not
an error.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from analysis.client import GraphQLErrors, NbatlasClient

SECTIONS = ("Notebook", "Outline", "Libraries", "Visualisations", "Similar notebooks", "Similar plots",
            "Similar code", "Reproducibility")

MAX_ITEMS = {"code": 300, "text": 200, "image": 100}  # searched per notebook; the first ones
ALIASES_PER_REQUEST = 20  # a public server allows 30
BYTES_PER_REQUEST = 180_000  # variables per request; a public server takes bodies up to 256 KB
MAX_IMAGE_SEND = 120_000  # bytes of a picture sent as a query; bigger ones are shrunk first
SEND_MAX_SIDE = 800
RASTER = ("image/png", "image/jpeg", "image/gif", "image/webp")
THUMB_WIDTH = 256  # one of the widths a public server keeps thumbnails at

_NB = "fragment NB on Notebook { dbId sha256 sources { kind location member } kaggle { title ref author votes } }"
_CELL = "fragment C on SimilarCell { distance cell { dbId position cellType source } notebook { ...NB } }"
# what a similar plot's line shows (``plot_place``): where it is drawn and which picture it is
_IMAGE_FIELDS = "sha256 mime width height plotKinds outputs(first: 5) { position cell { position } notebook { ...NB } }"
_IMAGE = f"fragment I on SimilarImage {{ distance image {{ {_IMAGE_FIELDS} }} }}"
_FIELD = {"code": ("similarCells", "code", "C"), "text": ("similarText", "text", "C"), "image": ("similarImages", "image", "I")}

_RECORD = """query($sha: String!) {
  notebook(sha256: $sha) {
    ...NB nCells nImageOutputs ingestedAt libraries
    runs { dbId status backend image createdAt wallS failureClass failureDetail ename evalue failingCellPosition
           ranWithoutError sameResults sameResultsIgnoringImages samePlots nCodeCells nCellsRun nCellsOk
           nCellsCompared nCellsSame nImagesCompared nImagesSame }
  }
  embeddingModels { space name vectors }
  vocabulary { stages }
}
""" + _NB


@dataclass
class Hit:
    """A corpus item near one of the notebook's items."""

    distance: float
    notebook: dict[str, Any]
    cell: dict[str, Any] | None = None  # code and text hits
    image: dict[str, Any] | None = None  # plot hits
    thumbnail: bytes | None = None  # PNG, fetched for the HTML page


@dataclass
class SimilarNotebook:
    notebook: dict[str, Any]
    score: float
    matches: Counter = field(default_factory=Counter)  # space -> items of ours it is nearest to


@dataclass
class Inspection:
    local: dict[str, Any]
    server: str
    record: dict[str, Any] | None
    stages: list[str]
    code: dict[int, list[Hit]] = field(default_factory=dict)  # cell position -> hits
    text: dict[int, list[Hit]] = field(default_factory=dict)
    plots: dict[int, list[Hit]] = field(default_factory=dict)  # figure index -> hits
    notebooks: list[SimilarNotebook] = field(default_factory=list)
    searched: Counter = field(default_factory=Counter)  # space -> items searched
    notes: dict[str, str] = field(default_factory=dict)  # space -> why it was not searched (fully)

    @property
    def in_corpus(self) -> bool:
        return self.record is not None


# --- querying ---------------------------------------------------------------------------------------

def _shrunk(image: dict) -> bytes | None:
    """The picture as sent for a search: as it is when small, else scaled down (the plot descriptor
    looks at a few hundred pixels anyway)."""
    data = image.get("data")
    if not data or image.get("mime") not in RASTER:
        return None
    if len(data) <= MAX_IMAGE_SEND:
        return data
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        img.thumbnail((SEND_MAX_SIDE, SEND_MAX_SIDE))
        if img.mode not in ("RGB", "RGBA", "L", "LA"):
            img = img.convert("RGBA")
        out = io.BytesIO()
        img.save(out, "PNG", optimize=True)
        if out.tell() > MAX_IMAGE_SEND:
            out = io.BytesIO()
            flat = Image.new("RGB", img.size, "white")
            flat.paste(img, mask=img.getchannel("A") if "A" in img.mode else None)
            flat.save(out, "JPEG", quality=85)
        return out.getvalue()
    except Exception:
        return None


def _items(local: dict) -> tuple[list[tuple[str, int, str]], Counter]:
    """(space, key, value) of every item to search, and how many were left out per space (caps)."""
    found: dict[str, list[tuple[str, int, str]]] = {"code": [], "text": [], "image": []}
    for cell in local["cells"]:
        space = {"code": "code", "markdown": "text"}.get(cell["cell_type"])
        if space and cell["source"].strip():
            found[space].append((space, cell["position"], cell["source"]))
    for index, fig in enumerate(local["figures"]):
        data = _shrunk(fig["image"]) if fig.get("image") else None
        if data:
            found["image"].append(("image", index, base64.b64encode(data).decode("ascii")))
    left_out = Counter({s: max(0, len(v) - MAX_ITEMS[s]) for s, v in found.items()})
    return [i for s in ("code", "text", "image") for i in found[s][: MAX_ITEMS[s]]], left_out


def _batches(items: list[tuple[str, int, str]]):
    batch: list[tuple[str, int, str]] = []
    size = 0
    for item in items:
        n = len(item[2].encode("utf-8"))
        if batch and (len(batch) >= ALIASES_PER_REQUEST or size + n > BYTES_PER_REQUEST or batch[0][0] != item[0]):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += n
    if batch:
        yield batch


def _search(api: NbatlasClient, batch: list[tuple[str, int, str]], first: int) -> list[list[dict]]:
    space = batch[0][0]
    name, arg, fragment = _FIELD[space]
    decls = ", ".join(f"$q{i}: String!" for i in range(len(batch)))
    fields = " ".join(f"q{i}: {name}({arg}: $q{i}, first: {first}) {{ ...{fragment} }}" for i in range(len(batch)))
    fragments = (_IMAGE if space == "image" else _CELL) + " " + _NB
    data = api.query(f"query({decls}) {{ {fields} }} {fragments}", {f"q{i}": item[2] for i, item in enumerate(batch)})
    return [data[f"q{i}"] for i in range(len(batch))]


def inspect_notebook(
    api: NbatlasClient,
    local: dict[str, Any],
    *,
    neighbours: int = 3,
    thumbnails: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> Inspection:
    """``local`` (from ``ingest.inspect.describe_notebook``) against the corpus behind ``api``."""
    head = api.query(_RECORD, {"sha": local["sha256"]})
    record = head["notebook"]
    own_id = record["dbId"] if record else None
    ins = Inspection(local=local, server=api.base_url, record=record, stages=head["vocabulary"]["stages"])
    with_vectors = {m["space"] for m in head["embeddingModels"] if m["vectors"] > 0}

    items, left_out = _items(local)
    for space, n in left_out.items():
        if n:
            ins.notes[space] = f"the first {MAX_ITEMS[space]} were searched, {n} more were not"
    for space in ("code", "text", "image"):
        if space not in with_vectors and any(i[0] == space for i in items):
            ins.notes[space] = f"the corpus has no {space} vectors yet (`nbatlas embed --space {space}`)"
    items = [i for i in items if i[0] in with_vectors]
    # our own notebook's items come back first when it is in the corpus: ask for a few more
    first = neighbours * 2 + 2 if own_id is not None else neighbours
    done, failed = 0, set()
    batches = list(_batches(items))
    for batch in batches:
        space = batch[0][0]
        if space in failed:
            continue
        try:
            answers = _search(api, batch, first)
        except GraphQLErrors as exc:  # e.g. the default model has no vectors here: the section says why
            failed.add(space)
            ins.notes[space] = str(exc)
            continue
        for (_, key, _), answer in zip(batch, answers):
            hits = _hits(space, answer, own_id)[:neighbours]
            {"code": ins.code, "text": ins.text, "image": ins.plots}[space][key] = hits
            ins.searched[space] += 1
        done += len(batch)
        if on_progress:
            on_progress(done, len(items))
    ins.notebooks = _rank_notebooks(ins, api, own_id)
    if thumbnails:
        for hits in ins.plots.values():
            for hit in hits:
                try:
                    hit.thumbnail = api.image(hit.image["sha256"], width=THUMB_WIDTH)
                except Exception:  # a thumbnail the server cannot make: the page shows the facts without it
                    hit.thumbnail = None
    return ins


def plot_place(image: dict[str, Any]) -> str:
    """Where a similar plot is shown and which picture it is: a cell may draw several figures, so the
    cell alone does not tell them apart ("cell 16, output 2, png 640×480, 3fa2c1de")."""
    shown = image["outputs"][0]
    size = f" {image['width']}×{image['height']}" if image.get("width") and image.get("height") else ""
    kind = image["mime"].removeprefix("image/").removesuffix("+xml")
    return f"cell {shown['cell']['position']}, output {shown['position']}, {kind}{size}, {image['sha256'][:8]}"


def _hits(space: str, answer: list[dict], own_id: int | None) -> list[Hit]:
    hits = []
    for a in answer:
        if space == "image":
            # where the picture is shown, our own notebook left out (the same plot elsewhere stays)
            others = [o for o in a["image"]["outputs"] if o["notebook"]["dbId"] != own_id]
            if others:
                hits.append(Hit(distance=a["distance"], notebook=others[0]["notebook"],
                                image={**a["image"], "outputs": others}))
        else:
            if a["notebook"]["dbId"] == own_id:
                continue
            hits.append(Hit(distance=a["distance"], notebook=a["notebook"], cell=a["cell"]))
    return hits


def _rank_notebooks(ins: Inspection, api: NbatlasClient, own_id: int | None, top: int = 10) -> list[SimilarNotebook]:
    best: dict[int, dict[tuple[str, int], float]] = {}
    info: dict[int, dict] = {}
    for space, by_item in (("code", ins.code), ("text", ins.text), ("image", ins.plots)):
        for key, hits in by_item.items():
            for hit in hits:
                notebooks = [o["notebook"] for o in hit.image["outputs"]] if hit.image else [hit.notebook]
                for nb in notebooks:
                    if nb["dbId"] == own_id:
                        continue
                    info[nb["dbId"]] = nb
                    sim = max(0.0, 1.0 - hit.distance)
                    mine = best.setdefault(nb["dbId"], {})
                    mine[(space, key)] = max(mine.get((space, key), 0.0), sim)
    total = sum(ins.searched.values())
    ranked = []
    for nid, sims in best.items():
        matches = Counter(space for space, _ in sims)
        ranked.append(SimilarNotebook(notebook=info[nid], score=sum(sims.values()) / max(1, total), matches=matches))
    ranked.sort(key=lambda s: (-s.score, s.notebook["dbId"]))
    return ranked[:top]


# --- words shared by both renderings ---------------------------------------------------------------

def notebook_label(nb: dict) -> str:
    kaggle = nb.get("kaggle") or []
    if kaggle and (kaggle[0].get("title") or kaggle[0].get("ref")):
        return kaggle[0].get("title") or kaggle[0]["ref"]
    sources = nb.get("sources") or []
    if sources:
        loc = sources[0]["member"] or sources[0]["location"]
        return loc.rsplit("/", 1)[-1].removesuffix(".ipynb")
    return f"notebook {nb['dbId']}"


def _first_line(text: str, width: int = 80) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= width else line[: width - 1] + "…"
    return ""


def stage_outline(ins: Inspection) -> list[tuple[str, list[int]]]:
    """Consecutive runs of cells in one stage: [(stage, [positions])], markdown cells joining the run
    they sit in (a notebook alternates explanation and code)."""
    runs: list[tuple[str, list[int]]] = []
    for cell in ins.local["cells"]:
        stage = cell["stage"] if cell["cell_type"] == "code" else None
        if runs and (stage is None or runs[-1][0] == stage):
            runs[-1][1].append(cell["position"])
        else:
            runs.append((stage or "other", [cell["position"]]))
    return runs


def library_rows(ins: Inspection) -> list[tuple[str, int, list[str]]]:
    """(library, cells using it, stages of those cells in pipeline order), most used first."""
    cells: Counter = Counter()
    stages: dict[str, set[str]] = {}
    for cell in ins.local["cells"]:
        for lib in cell["libraries"]:
            cells[lib] += 1
            stages.setdefault(lib, set()).add(cell["stage"])
    order = {s: i for i, s in enumerate(ins.stages)}
    return [(lib, n, sorted(stages[lib], key=lambda s: order.get(s, 99))) for lib, n in cells.most_common()]


def run_summary(run: dict) -> str:
    status = run["status"].lower()
    if run["ranWithoutError"]:
        same = {True: "same results", False: "different results", None: "nothing to compare"}[run["sameResults"]]
        return f"{status}: ran without error, {same} ({run['nCellsSame']}/{run['nCellsCompared']} cells same)"
    why = run["failureClass"] or "failed"
    detail = f" ({run['failureDetail']})" if run["failureDetail"] else ""
    where = f" at cell {run['failingCellPosition']}" if run["failingCellPosition"] is not None else ""
    return f"{status}: {why}{detail}{where}; {run['ename'] or ''} {run['nCellsOk']}/{run['nCodeCells']} code cells ran".strip()


# --- terminal ----------------------------------------------------------------------------------------

def render_terminal(ins: Inspection, console) -> None:
    """Every section, as rich tables, on ``console``."""
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    local = ins.local

    def section(title: str) -> None:
        console.rule(f"[bold]{title}")

    section("Notebook")
    grid = Table.grid(padding=(0, 2))
    grid.add_row("file", escape(local["path"]))
    grid.add_row("sha256", local["sha256"])
    if local.get("title"):
        grid.add_row("title", escape(local["title"]))
    grid.add_row("format", f"nbformat {local['nbformat']} (on disk {local['original_nbformat']}), "
                 f"{escape(str(local['language'] or 'unknown language'))}, {len(local['cells'])} cells, "
                 f"{len(local['figures'])} figures")
    if local.get("not_analysed"):
        grid.add_row("code", escape(f"{local['not_analysed']}: no stage, library or plot kind"))
    if ins.record:
        grid.add_row("corpus", f"[green]in the corpus[/] as notebook {ins.record['dbId']} on {escape(ins.server)}: "
                     + escape(notebook_label(ins.record)))
        for s in ins.record["sources"][:3]:
            grid.add_row("", escape(f"{s['kind']}: {s['location']}{(' :: ' + s['member']) if s['member'] else ''}"))
    else:
        grid.add_row("corpus", f"[yellow]not in the corpus[/] of {escape(ins.server)} (no notebook with this SHA-256)")
    console.print(grid)

    section("Outline")
    console.print(" → ".join(f"{stage} ({len(pos)})" for stage, pos in stage_outline(ins)) or "(no cells)")
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for col in ("#", "type", "stage", "libraries", "plots", "first line"):
        # only the source line gives way on a narrow terminal
        table.add_column(col, no_wrap=col != "first line", overflow="ellipsis",
                         max_width={"libraries": 24, "plots": 20}.get(col), ratio=1 if col == "first line" else None)
    for cell in local["cells"]:
        stage = cell["stage"] if cell["cell_type"] == "code" else ""
        table.add_row(str(cell["position"]), cell["cell_type"][:4], stage, escape(", ".join(cell["libraries"])),
                      escape(", ".join(cell["plot_kinds"])),
                      Text(_first_line(cell["source"], 100), no_wrap=True, overflow="ellipsis"))
    console.print(table)

    section("Libraries")
    rows = library_rows(ins)
    if rows:
        table = Table(box=None, header_style="bold")
        for col in ("library", "cells", "stages"):
            table.add_column(col)
        for lib, n, stages in rows:
            table.add_row(escape(lib), str(n), ", ".join(stages))
        console.print(table)
    else:
        console.print("No library imported or called.")

    section("Visualisations")
    if not local["figures"]:
        console.print("No figure in the notebook's outputs.")
    for i, fig in enumerate(local["figures"]):
        img = fig.get("image") or {}
        size = f" {img['width']}x{img['height']}" if img.get("width") else ""
        body = [f"[bold]{escape(', '.join(fig['plot_kinds']) or 'unknown kind')}[/]  cell {fig['cell_position']}, "
                f"stage {fig['stage']}, {fig['mime']}{size}" + (" (interactive)" if fig["interactive"] else "")]
        if fig["evidence"]:
            body.append("evidence: " + escape("; ".join(fig["evidence"][:3])))
        if fig["context_before"]:
            body.append("before: " + escape(_first_line(fig["context_before"], 100)))
        if fig["context_after"]:
            body.append("after: " + escape(_first_line(fig["context_after"], 100)))
        console.print(Panel("\n".join(body), title=f"figure {i + 1}", title_align="left", expand=False))

    section("Similar notebooks")
    _note(console, ins, ("code", "text", "image"))
    if ins.notebooks:
        table = Table(box=None, header_style="bold")
        for col in ("score", "notebook", "matched (code/text/plots)", "id"):
            table.add_column(col)
        for s in ins.notebooks:
            m = s.matches
            table.add_row(f"{s.score:.3f}", escape(notebook_label(s.notebook)),
                          f"{m['code']}/{m['text']}/{m['image']}", str(s.notebook["dbId"]))
        console.print(table)
    else:
        console.print("No similar notebook found.")

    section("Similar plots")
    _note(console, ins, ("image",))
    if not ins.plots:
        console.print("No plot of this notebook could be searched (no raster image, or no image vectors).")
    for index, hits in ins.plots.items():
        fig = local["figures"][index]
        console.print(f"[bold]figure {index + 1}[/] ({escape(', '.join(fig['plot_kinds']) or 'unknown kind')}, cell {fig['cell_position']}):")
        for hit in hits:
            console.print(f"  {hit.distance:.3f}  {escape(', '.join(hit.image['plotKinds']) or 'unknown kind')} in "
                          f"{escape(notebook_label(hit.notebook))} ({escape(plot_place(hit.image))})")
        if not hits:
            console.print("  (no neighbour)")

    section("Similar code")
    _note(console, ins, ("code",))
    pairs = sorted(((hits[0], pos) for pos, hits in ins.code.items() if hits), key=lambda p: p[0].distance)
    if pairs:
        table = Table(box=None, header_style="bold")
        for col in ("distance", "our cell", "nearest corpus cell"):
            table.add_column(col, overflow="fold")
        for hit, pos in pairs[:15]:
            table.add_row(f"{hit.distance:.3f}", f"{pos}: " + escape(_first_line(local["cells"][pos]["source"], 40)),
                          f"[dim]{escape(notebook_label(hit.notebook))}, cell {hit.cell['position']}[/]\n"
                          + escape(_first_line(hit.cell["source"], 60)))
        console.print(table)
        if len(pairs) > 15:
            console.print(f"… and {len(pairs) - 15} more code cells with neighbours (the HTML page lists them all)")
    else:
        console.print("No code cell of this notebook has a neighbour in the corpus.")

    section("Reproducibility")
    for line in _reproducibility_lines(ins):
        console.print(escape(line))


def _note(console, ins: Inspection, spaces) -> None:
    from rich.markup import escape

    for space in spaces:
        if space in ins.notes:
            console.print(f"[yellow]{space}: {escape(ins.notes[space])}[/]")


def _reproducibility_lines(ins: Inspection) -> list[str]:
    if ins.record is None:
        return ["Not in the corpus, so it has no reproduction record: ingest it, then `nbatlas reproduce`."]
    runs = ins.record["runs"]
    if not runs:
        return ["In the corpus, never re-executed yet (`nbatlas reproduce`)."]
    return [f"run {r['dbId']} ({r['backend']}, {r['createdAt'][:19]}): {run_summary(r)}" for r in runs]


# --- HTML ----------------------------------------------------------------------------------------------

_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { border-bottom: 1px solid #ccc; margin-top: 2rem; }
table { border-collapse: collapse; } td, th { padding: .2rem .6rem; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
pre { background: #f6f6f6; padding: .4rem; overflow-x: auto; max-height: 12rem; margin: 0; font-size: 12px; }
.stage { display: inline-block; padding: .1rem .4rem; margin: .1rem; border-radius: 3px; background: #e8eef8; }
.figure { display: flex; gap: 1rem; border: 1px solid #ddd; padding: .6rem; margin: .6rem 0; }
.figure img { max-width: 320px; max-height: 260px; }
.neighbours { display: flex; gap: .6rem; flex-wrap: wrap; }
.neighbours figure { margin: 0; width: 230px; font-size: 12px; }
.neighbours img { max-width: 220px; max-height: 180px; border: 1px solid #eee; }
.context { font-size: 13px; color: #444; border-left: 3px solid #ccc; padding-left: .5rem; }
.note { color: #8a5a00; }
#similar-code table { table-layout: fixed; width: 100%; }
#similar-code pre { white-space: pre-wrap; overflow-wrap: anywhere; }
"""

_ALLOWED_TAGS = {"p", "em", "strong", "code", "pre", "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6",
                 "blockquote", "br", "hr", "table", "thead", "tbody", "tr", "th", "td", "del"}


def _markdown(text: str | None) -> str:
    """Untrusted markdown as inert HTML: raw HTML in it escaped, the output through nh3's allow-list."""
    if not text:
        return ""
    import nh3
    from markdown_it import MarkdownIt

    rendered = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"]).render(text)
    return nh3.clean(rendered, tags=_ALLOWED_TAGS, url_schemes={"http", "https", "mailto"},
                     link_rel="noopener noreferrer nofollow")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(mime: str, data: bytes | None = None, svg: str | None = None) -> str | None:
    # only picture types: a data: URI of another type in <img> would show nothing, in a link it could run
    if mime not in (*RASTER, "image/svg+xml"):
        return None
    raw = data if data is not None else (svg or "").encode("utf-8")
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}" if raw else None


def render_html(ins: Inspection) -> str:
    """The full page: every section, our figures and the corpus's similar plots as embedded pictures."""
    local = ins.local
    out: list[str] = []
    add = out.append
    title = local.get("title") or local["name"]
    add(f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>nbatlas inspect: {_e(title)}</title>")
    # the page holds untrusted text: no script may run in it, whatever slipped through
    add("<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">")
    add(f"<style>{_CSS}</style></head><body>")
    add(f"<h1>{_e(title)}</h1>")

    add("<section id='notebook'><h2>Notebook</h2><table>")
    add(f"<tr><th>file</th><td>{_e(local['path'])}</td></tr><tr><th>sha256</th><td><code>{local['sha256']}</code></td></tr>")
    add(f"<tr><th>format</th><td>nbformat {_e(local['nbformat'])} (on disk {local['original_nbformat']}), "
        f"{_e(local['language'] or 'unknown language')}, {len(local['cells'])} cells, {len(local['figures'])} figures</td></tr>")
    if ins.record:
        srcs = "<br>".join(_e(f"{s['kind']}: {s['location']}" + (f" :: {s['member']}" if s["member"] else ""))
                           for s in ins.record["sources"][:5])
        add(f"<tr><th>corpus</th><td><strong>in the corpus</strong> as notebook {ins.record['dbId']} on {_e(ins.server)}: "
            f"{_e(notebook_label(ins.record))}<br>{srcs}</td></tr>")
    else:
        add(f"<tr><th>corpus</th><td><strong>not in the corpus</strong> of {_e(ins.server)} (no notebook with this SHA-256)</td></tr>")
    if local.get("not_analysed"):
        add(f"<tr><th>code</th><td>{_e(local['not_analysed'])}: no stage, library or plot kind</td></tr>")
    add(f"<tr><th>inspected</th><td>{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, code analyser v{local['analyzer_version']}</td></tr>")
    add("</table></section>")

    add("<section id='outline'><h2>Outline</h2><p>")
    add(" → ".join(f"<span class='stage'>{_e(stage)} ({len(pos)})</span>" for stage, pos in stage_outline(ins)))
    add("</p><table><tr><th>#</th><th>type</th><th>stage</th><th>libraries</th><th>plots</th><th>source</th></tr>")
    for cell in local["cells"]:
        stage = cell["stage"] if cell["cell_type"] == "code" else ""
        add(f"<tr><td>{cell['position']}</td><td>{_e(cell['cell_type'])}</td><td>{_e(stage)}</td>"
            f"<td>{_e(', '.join(cell['libraries']))}</td><td>{_e(', '.join(cell['plot_kinds']))}</td>"
            f"<td>{_e(_first_line(cell['source'], 100))}</td></tr>")
    add("</table></section>")

    add("<section id='libraries'><h2>Libraries</h2>")
    rows = library_rows(ins)
    if rows:
        add("<table><tr><th>library</th><th>cells</th><th>stages</th></tr>")
        for lib, n, stages in rows:
            add(f"<tr><td>{_e(lib)}</td><td>{n}</td><td>{_e(', '.join(stages))}</td></tr>")
        add("</table>")
    else:
        add("<p>No library imported or called.</p>")
    add("</section>")

    add("<section id='visualisations'><h2>Visualisations</h2>")
    if not local["figures"]:
        add("<p>No figure in the notebook's outputs.</p>")
    for i, fig in enumerate(local["figures"]):
        img = fig.get("image") or {}
        uri = _data_uri(img["mime"], img.get("data"), img.get("svg")) if img else None
        picture = f"<img alt='figure {i + 1}' src='{uri}'>" if uri else f"<em>{_e(fig['mime'])}: not shown</em>"
        add(f"<div class='figure' id='figure-{i + 1}'>{picture}<div><strong>figure {i + 1}: "
            f"{_e(', '.join(fig['plot_kinds']) or 'unknown kind')}</strong><br>cell {fig['cell_position']}, "
            f"stage {_e(fig['stage'])}, {_e(fig['mime'])}" + (" (interactive)" if fig["interactive"] else ""))
        if fig["evidence"]:
            add(f"<br>evidence: <code>{_e('; '.join(fig['evidence'][:3]))}</code>")
        if fig["context_before"]:
            add(f"<div class='context'><small>before</small>{_markdown(fig['context_before'])}</div>")
        if fig["context_after"]:
            add(f"<div class='context'><small>after</small>{_markdown(fig['context_after'])}</div>")
        add("</div></div>")
    add("</section>")

    add("<section id='similar-notebooks'><h2>Similar notebooks</h2>")
    add(_html_notes(ins, ("code", "text", "image")))
    if ins.notebooks:
        add("<p>Score: mean over this notebook's searched cells and plots of the best similarity (1 − cosine "
            "distance) to the corpus notebook's.</p><table><tr><th>score</th><th>notebook</th><th>code</th>"
            "<th>text</th><th>plots</th><th>id</th></tr>")
        for s in ins.notebooks:
            add(f"<tr><td>{s.score:.3f}</td><td>{_e(notebook_label(s.notebook))}</td><td>{s.matches['code']}</td>"
                f"<td>{s.matches['text']}</td><td>{s.matches['image']}</td><td>{s.notebook['dbId']}</td></tr>")
        add("</table>")
    else:
        add("<p>No similar notebook found.</p>")
    add("</section>")

    add("<section id='similar-plots'><h2>Similar plots</h2>")
    add(_html_notes(ins, ("image",)))
    if not ins.plots:
        add("<p>No plot of this notebook could be searched (no raster image, or no image vectors).</p>")
    for index, hits in ins.plots.items():
        fig = local["figures"][index]
        add(f"<h3>figure {index + 1}: {_e(', '.join(fig['plot_kinds']) or 'unknown kind')} (cell {fig['cell_position']})</h3>"
            "<div class='neighbours'>")
        for hit in hits:
            # a server sends an SVG as it is, every other picture as a PNG thumbnail
            mime = "image/svg+xml" if hit.image["mime"] == "image/svg+xml" else "image/png"
            uri = _data_uri(mime, hit.thumbnail) if hit.thumbnail else None
            picture = f"<img alt='similar plot' src='{uri}'>" if uri else "<em>(no thumbnail)</em>"
            add(f"<figure>{picture}<figcaption>{hit.distance:.3f} · {_e(', '.join(hit.image['plotKinds']) or 'unknown kind')}"
                f"<br>{_e(notebook_label(hit.notebook))} ({_e(plot_place(hit.image))})"
                f"</figcaption></figure>")
        if not hits:
            add("<p>(no neighbour)</p>")
        add("</div>")
    add("</section>")

    add("<section id='similar-code'><h2>Similar code</h2>")
    add(_html_notes(ins, ("code",)))
    if any(ins.code.values()):
        add("<table><tr><th>our cell</th><th>nearest corpus cells</th></tr>")
        for pos, hits in ins.code.items():
            if not hits:
                continue
            near = "".join(f"<div><small>{h.distance:.3f} · {_e(notebook_label(h.notebook))}, cell {h.cell['position']}</small>"
                           f"<pre>{_e(h.cell['source'][:1500])}</pre></div>" for h in hits)
            add(f"<tr><td><small>cell {pos}</small><pre>{_e(local['cells'][pos]['source'][:1500])}</pre></td><td>{near}</td></tr>")
        add("</table>")
    else:
        add("<p>No code cell of this notebook has a neighbour in the corpus.</p>")
    add("</section>")

    add("<section id='reproducibility'><h2>Reproducibility</h2>")
    if ins.record and ins.record["runs"]:
        add("<table><tr><th>run</th><th>status</th><th>backend</th><th>when</th><th>outcome</th></tr>")
        for r in ins.record["runs"]:
            add(f"<tr><td>{r['dbId']}</td><td>{_e(r['status'].lower())}</td><td>{_e(r['backend'])}</td>"
                f"<td>{_e(r['createdAt'][:19])}</td><td>{_e(run_summary(r))}</td></tr>")
        add("</table>")
    else:
        add("".join(f"<p>{_e(line)}</p>" for line in _reproducibility_lines(ins)))
    add("</section></body></html>")
    return "\n".join(out)


def _html_notes(ins: Inspection, spaces) -> str:
    return "".join(f"<p class='note'>{_e(space)}: {_e(ins.notes[space])}</p>" for space in spaces if space in ins.notes)
