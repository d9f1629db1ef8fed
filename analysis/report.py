"""Run every study of ``analysis.studies`` against an nbatlas API and write ``report.md`` and a
self-contained ``report.html`` (figures embedded as data: URIs) beside the CSVs and PNGs.

    python -m analysis.report --server http://127.0.0.1:8000 --out results/
"""

from __future__ import annotations

import argparse
import base64
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from markdown_it import MarkdownIt

from analysis.client import NbatlasClient
from analysis.studies import STUDIES, Section

_CSS = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
img{max-width:100%;display:block;margin:1rem 0}code{background:#f3f3f3;padding:0 .2rem}"""


def build_report(
    api: NbatlasClient, out: Path, *, on_step: Callable[[str], None] | None = None
) -> list[Section]:
    """Run every study into ``out``; write report.md and report.html there. ``on_step(name)`` is
    called after each study (for a progress bar)."""
    out.mkdir(parents=True, exist_ok=True)
    stats = api.query("{ stats { notebooks cells images } }")["stats"]
    sections = []
    for label, study in STUDIES:
        sections.append(study(api, out))
        if on_step:
            on_step(label)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    intro = (
        f"# nbatlas report\n\nCorpus at {api.base_url}: {stats['notebooks']} notebooks, {stats['cells']} cells, "
        f"{stats['images']} distinct images. Built {when}.\n"
    )
    md_parts = [intro]
    html_parts = [intro]
    for s in sections:
        body = f"## {s.title}\n\n{s.markdown}\n"
        files = [f"`{p.name}`" for p in ([s.csv] if s.csv else []) + s.more_tables + s.figures]
        data = f"\nData: {', '.join(files)}\n" if files else ""
        md_parts.append(body + "".join(f"\n![{s.title}]({p.name})\n" for p in s.figures) + data)
        html_parts.append(
            body + "".join(f"\n![{s.title}](data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()})\n" for p in s.figures) + data
        )
    (out / "report.md").write_text("\n".join(md_parts), encoding="utf-8")
    # markdown-it escapes raw HTML by default ("commonmark" with html off): section text cannot inject markup
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>nbatlas report</title>"
        f"<style>{_CSS}</style></head><body>\n{md.render(chr(10).join(html_parts))}</body></html>\n"
    )
    (out / "report.html").write_text(page, encoding="utf-8")
    return sections


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    with NbatlasClient(args.server) as api:
        build_report(api, args.out, on_step=lambda name: print(f"done: {name}"))
    print(args.out / "report.html")


if __name__ == "__main__":
    main()
