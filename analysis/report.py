"""Run every study of ``analysis.studies`` against an nbatlas API and write ``report.md`` and a
self-contained ``report.html`` (figures embedded as data: URIs) beside the CSVs and PNGs.

    python -m analysis.report --server http://127.0.0.1:8000 --out results/ --filter competition=titanic

``--filter key=value`` (repeatable) restricts every analysis to the notebooks a ``NotebookFilter`` of
the API selects: the keys are that input's fields, read from the server's schema, so the report
accepts exactly the filters the API does (``minVotes=10``, ``library=xgboost``, ``competition=a,b``,
``reproduction.status=error``).
"""

from __future__ import annotations

import argparse
import base64
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import NoReturn

import httpx
from markdown_it import MarkdownIt

from analysis.client import NbatlasClient, NbatlasError
from analysis.studies import STUDIES, Section

_TYPE = """query($name: String!) { __type(name: $name) { name kind enumValues { name }
  inputFields { name type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }"""


class FilterError(ValueError):
    """A ``--filter`` the API's NotebookFilter cannot take (unknown key, bad value)."""


def _unwrap(t: dict) -> tuple[str, str, bool]:
    """(kind, name, is a list) of an input field's type, through NON_NULL and LIST wrappers."""
    is_list = False
    while t["kind"] in ("NON_NULL", "LIST"):
        is_list = is_list or t["kind"] == "LIST"
        t = t["ofType"]
    return t["kind"], t["name"], is_list


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def notebook_filter(api: NbatlasClient, pairs: list[str], type_name: str = "NotebookFilter") -> dict | None:
    """``["competition=titanic", "minVotes=10"]`` as a ``NotebookFilter`` input, typed from the server's
    schema. A list field takes comma-separated values and may be repeated; a dotted key reaches a nested
    filter (``reproduction.status=error``); snake_case keys are accepted (``min_votes``)."""
    if not pairs:
        return None
    types: dict[str, dict] = {}

    def fields_of(name: str) -> dict[str, tuple[str, str, bool]]:
        if name not in types:
            t = api.query(_TYPE, {"name": name})["__type"]
            if not t:
                raise FilterError(f"the server has no {name} input: is it an nbatlas API?")
            types[name] = t
        return {f["name"]: _unwrap(f["type"]) for f in types[name]["inputFields"] or []}

    result: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise FilterError(f"--filter {pair!r}: write it as key=value (e.g. competition=titanic)")
        target, type_ = result, type_name
        parts = [_camel(k) for k in key.split(".")]
        for depth, part in enumerate(parts):
            fields = fields_of(type_)
            if part not in fields:
                known = ", ".join(sorted(fields))
                raise FilterError(f"--filter {pair!r}: unknown key {'.'.join(parts[:depth + 1])!r}; {type_} accepts: {known}")
            kind, base, is_list = fields[part]
            if depth < len(parts) - 1:
                if kind != "INPUT_OBJECT":
                    raise FilterError(f"--filter {pair!r}: {part!r} is a {base}, not a nested filter")
                target, type_ = target.setdefault(part, {}), base
                continue
            if kind == "INPUT_OBJECT":
                nested = ", ".join(f"{part}.{f}" for f in sorted(fields_of(base)))
                raise FilterError(f"--filter {pair!r}: {part!r} is a nested filter: use one of {nested}")
            if kind == "ENUM":
                fields_of(base)
                allowed = [e["name"] for e in types[base]["enumValues"] or []]
            else:
                allowed = []
            values = [_value(pair, base, v.strip(), allowed) for v in (raw.split(",") if is_list else [raw])]
            if is_list:
                target.setdefault(part, []).extend(values)
            elif part in target:
                raise FilterError(f"--filter {pair!r}: {part!r} takes one value and was given twice")
            else:
                target[part] = values[0]
    return result


def _value(pair: str, base: str, raw: str, allowed: list[str]) -> object:
    if allowed:  # an enum: the schema's names are upper case, researchers type them either way
        if raw.upper() not in allowed:
            raise FilterError(f"--filter {pair!r}: {raw!r} is not one of {', '.join(v.lower() for v in allowed)}")
        return raw.upper()
    if base == "Int":
        try:
            return int(raw)
        except ValueError:
            raise FilterError(f"--filter {pair!r}: {raw!r} is not a whole number") from None
    if base == "Boolean":
        if raw.lower() in ("true", "yes", "1"):
            return True
        if raw.lower() in ("false", "no", "0"):
            return False
        raise FilterError(f"--filter {pair!r}: {raw!r} is not true or false")
    if not raw:
        raise FilterError(f"--filter {pair!r}: empty value")
    return raw

_CSS = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
img{max-width:100%;display:block;margin:1rem 0}code{background:#f3f3f3;padding:0 .2rem}"""


def build_report(
    api: NbatlasClient,
    out: Path,
    *,
    notebook_filter: dict | None = None,
    filter_text: list[str] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> list[Section]:
    """Run every study into ``out`` over the notebooks ``notebook_filter`` (a NotebookFilter input)
    selects, or all; write report.md and report.html there. ``on_step(name)`` is called after each
    study (for a progress bar)."""
    out.mkdir(parents=True, exist_ok=True)
    stats = api.query("{ stats { notebooks cells images } }")["stats"]
    selected = None
    if notebook_filter:
        selected = api.query("query($f: NotebookFilter) { notebooks(first: 1, filter: $f) { totalCount } }",
                             {"f": notebook_filter})["notebooks"]["totalCount"]
    sections = []
    for label, study in STUDIES:
        sections.append(study(api, out, notebook_filter))
        if on_step:
            on_step(label)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    intro = (
        f"# nbatlas report\n\nCorpus at {api.base_url}: {stats['notebooks']} notebooks, {stats['cells']} cells, "
        f"{stats['images']} distinct images. Built {when}.\n"
    )
    if notebook_filter:
        shown = ", ".join(f"`{p}`" for p in filter_text) if filter_text else f"`{notebook_filter}`"
        intro += f"\nFiltered: {shown} selects {selected} of the {stats['notebooks']} notebooks; every section counts only those.\n"
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
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="a NotebookFilter field (repeatable): competition=titanic, minVotes=10, library=shap")
    args = parser.parse_args(argv)
    with NbatlasClient(args.server) as api:
        try:
            flt = notebook_filter(api, args.filter)
        except FilterError as exc:
            parser.error(str(exc))
        except (NbatlasError, httpx.HTTPError) as exc:
            _fail(args.server, exc)
        try:
            build_report(api, args.out, notebook_filter=flt, filter_text=args.filter,
                         on_step=lambda name: print(f"done: {name}"))
        except (NbatlasError, httpx.HTTPError) as exc:
            _fail(args.server, exc)
    print(args.out / "report.html")


def _fail(server: str, exc: Exception) -> NoReturn:
    """One line on stderr and exit status 1, as `nbatlas report` ends: no traceback for a refusal."""
    if isinstance(exc, httpx.HTTPError):
        reason = f"cannot reach it ({type(exc).__name__}: {exc})"
    else:
        reason = f"it refused a query: {exc}"
    print(f"error: the API at {server}: {reason}", file=sys.stderr)
    raise SystemExit(1)


if __name__ == "__main__":
    main()
