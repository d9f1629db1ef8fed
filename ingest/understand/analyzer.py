"""The per-notebook entry point: code facts per cell, plot kinds per figure output, stages, context.

``analyze_notebook`` takes an nbformat v4 notebook (or plain dicts with the same keys) and returns
``NotebookFacts``: plain data, picklable, ready to be stored. It never raises on bad code: a cell
that does not parse is kept, marked, and classified by a token fallback.

Bump ``ANALYZER_VERSION`` whenever a rule changes what is stored: ``nbatlas analyze`` recomputes
every notebook analysed by an older version.
"""

from __future__ import annotations

import ast
import gc
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ingest.understand.calls import AXES, Call, CellVisitor, Import, Scope, repair_python2, token_calls
from ingest.understand.context import context_for_cells
from ingest.understand.ipython import parse_cell_with_text, quiet
from ingest.understand.plots import KindEvidence, ends_figure, is_plot_call, kinds_for_calls, segments_of, starts_figure
from ingest.understand.stages import stage_of_code

ANALYZER_VERSION = 2  # 2: cells over MAX_ANALYSED_CHARS are analysed from their beginning

IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif", "image/webp")
INTERACTIVE_PREFIXES = ("application/vnd.plotly.v1+json", "application/vnd.bokehjs_exec", "application/vnd.vegalite.",
                        "application/vnd.vega.", "text/vnd.plotly.v1+html")
MAX_CALLS_STORED = 400  # a generated cell can call thousands of things; the first ones are enough
# Past this many characters a cell is generated code (hand-written cells stay far below: 99.9% of the
# real corpus's code cells are under 20,000): only its beginning, cut at a statement, is analysed.
# Parsing alone costs about a millisecond per 1,000 characters, and the analysis of such a cell
# already stops after its first MAX_CALLS_PER_CELL calls.
MAX_ANALYSED_CHARS = 40_000


def interactive_mime(mime: str) -> bool:
    return mime.startswith(INTERACTIVE_PREFIXES)


@dataclass
class CellFacts:
    position: int
    cell_type: str
    parsed: bool = True
    parse_error: str | None = None
    ipython_syntax: bool = False
    imports: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    call_names: list[str] = field(default_factory=list)
    libraries: list[str] = field(default_factory=list)
    stage: str = "other"
    stage_evidence: list[str] = field(default_factory=list)
    is_visualisation: bool = False
    plot_kinds: list[str] = field(default_factory=list)


@dataclass
class PlotFacts:
    """One figure output of a code cell: an image (by mime) or an interactive figure."""

    cell_position: int
    output_position: int
    mime: str
    interactive: bool
    plot_kinds: list[str]
    evidence: list[dict[str, Any]]
    plot_calls: list[str]
    context_before: str | None
    context_after: str | None
    # when several images share a cell, which figure segment of the cell made this one (None: all of them)
    segment: int | None = None


@dataclass
class NotebookFacts:
    analyzer_version: int
    cells: list[CellFacts]
    plots: list[PlotFacts]
    libraries: list[str]
    # why the code was not analysed (a kernel language other than Python), None when it was: the
    # store then writes no stage, plot kind or library for it (NULL, "not analysed"), only its figures
    not_analysed: str | None = None


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _source(cell: Any) -> str:
    src = _get(cell, "source", "")
    return "".join(src) if isinstance(src, list) else (src or "")


def figure_outputs(outputs: list[Any]) -> list[tuple[int, list[str]]]:
    """(output position, plot mimes) of the outputs that show a figure, in order."""
    found = []
    for pos, out in enumerate(outputs or []):
        data = _get(out, "data") or {}
        mimes = [m for m in data if m in IMAGE_MIMES or interactive_mime(m)]
        if mimes:
            found.append((pos, mimes))
    return found


def notebook_language(nb: Any) -> str | None:
    metadata = _get(nb, "metadata", {}) or {}
    kernelspec = metadata.get("kernelspec") or {}
    info = metadata.get("language_info") or {}
    lang = kernelspec.get("language") or info.get("name") or metadata.get("language")
    return lang.lower() if isinstance(lang, str) else None


def analyze_notebook(nb: Any) -> NotebookFacts:
    """Analyse an nbformat v4 notebook (NotebookNode or dict)."""
    return analyze_cells(_get(nb, "cells", []) or [], language=notebook_language(nb))


def analyze_cells(cells: list[Any], *, language: str | None = None) -> NotebookFacts:
    """Analyse cells given in notebook order: dicts/NotebookNodes with cell_type, source, outputs.

    ``language``: the kernel's language; code in another language than Python (Julia, R) is not
    parsed: ``not_analysed`` says so and its cells carry the reason. Its facts keep the shape of an
    analysed notebook's (figures of kind "other", cells of stage "other") for what reads them in
    memory; the store writes none of that (``ingest.understand.store``).
    """
    with without_gc(), quiet():
        return _analyze_cells(cells, language)


@contextmanager
def without_gc():
    """Syntax trees and rows are many small acyclic objects that reference counting frees: the cyclic
    collector would only rescan the whole heap (the notebook being parsed) again and again, up to half
    the analysis time on big generated cells."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _analyze_cells(cells: list[Any], language: str | None) -> NotebookFacts:
    foreign = language is not None and language not in ("python", "python2", "python3", "ipython", "ipython3")
    not_analysed = f"not analysed: the kernel language is {language}" if foreign else None
    scope = Scope()
    facts: list[CellFacts] = []
    plots: list[PlotFacts] = []
    kinds_by_cell: dict[int, tuple[list[str], list[KindEvidence], list[list[Call]]]] = {}
    sources = [_source(c) for c in cells]
    types = [_get(c, "cell_type", "code") for c in cells]
    contexts = context_for_cells(types, sources)
    notebook_libraries: set[str] = set()

    for position, cell in enumerate(cells):
        ctype = types[position]
        cf = CellFacts(position=position, cell_type=ctype)
        facts.append(cf)
        if ctype != "code":
            continue
        source = sources[position]
        if foreign:
            cf.parsed, cf.parse_error = False, not_analysed
            calls, imports, assigned, parsed, visitor = [], [], [], False, None
        else:
            calls, imports, assigned, parsed, visitor = _analyse_code(source, scope, cf)
        cf.imports = [i.as_json() for i in imports]
        cf.calls = [c.as_json() for c in calls[:MAX_CALLS_STORED]]
        # a cell calls the same few things many times: the rules below look at each name once
        names = {c.name for c in calls if c.resolved and not c.name.startswith("<")}
        cf.call_names = sorted(names)[:MAX_CALLS_STORED]
        cf.libraries = _libraries(imports, names, scope, visitor.tail_names if visitor else None)
        notebook_libraries.update(cf.libraries)

        # plot kinds: per figure segment, then matched to the figure outputs
        segments = segments_of(calls)
        outs = figure_outputs(_get(cell, "outputs", []) or [])
        all_kinds, all_evidence = kinds_for_calls([c for seg in segments for c in seg]) if segments else ([], [])
        # each segment's own kinds matter only when the segments can be matched to the figure outputs
        per_segment = len(segments) == len(outs) and len(segments) > 1
        seg_kinds = [kinds_for_calls(seg) for seg in segments] if per_segment else [(all_kinds, all_evidence)] * len(segments)
        cf.is_visualisation = bool(outs) or bool(segments)
        cf.plot_kinds = all_kinds or (["other"] if outs else [])
        kinds_by_cell[position] = (all_kinds, all_evidence, segments)

        before, after = contexts[position]
        for index, (out_pos, mimes) in enumerate(outs):
            if segments and len(segments) == len(outs):
                kinds, evidence = seg_kinds[index]
                seg_calls, seg_index = segments[index], index
            else:
                kinds, evidence = all_kinds, all_evidence
                seg_calls, seg_index = [c for s in segments for c in s], None
            if not kinds:
                kinds = ["other"]
                evidence = [KindEvidence("other", "", 0, "figure output without a recognised plotting call")]
            for mime in mimes:
                plots.append(PlotFacts(
                    cell_position=position,
                    output_position=out_pos,
                    mime=mime,
                    interactive=interactive_mime(mime),
                    plot_kinds=list(kinds),
                    evidence=[e.as_json() for e in evidence],
                    plot_calls=sorted({c.name for c in seg_calls if is_plot_call(c)}),
                    context_before=before,
                    context_after=after,
                    segment=seg_index,
                ))
        if foreign:
            cf.stage, cf.stage_evidence = "other", [cf.parse_error]
            continue
        result = stage_of_code(source=source, calls=calls, imports=len(imports), plot_kinds=cf.plot_kinds if (outs or segments) else [],
                               assigned_columns=assigned, parsed=parsed, defines=visitor.defines if visitor else None,
                               bases=visitor.bases if visitor else None, deletes=visitor.deletes if visitor else 0)
        cf.stage, cf.stage_evidence = result.stage, result.evidence

    # markdown (and raw) cells take the stage of the code they introduce
    next_stage: tuple[str, int] | None = None
    for cf in reversed(facts):
        if cf.cell_type == "code":
            next_stage = (cf.stage, cf.position)
        elif next_stage is not None:
            cf.stage = next_stage[0]
            cf.stage_evidence = [f"introduces code cell {next_stage[1]}"]
        else:
            cf.stage, cf.stage_evidence = "other", ["no code cell follows"]
    return NotebookFacts(ANALYZER_VERSION, facts, plots, sorted(notebook_libraries), not_analysed)


def parse_code(source: str) -> tuple[ast.Module | None, str | None, bool, str, str | None]:
    """The syntax tree the analysis reads for one code cell: (tree, error, ipython_syntax, parsed text, head).

    IPython's transformer then ``ast``; only the ``head`` of a very long (generated) cell when it parses
    on its own; Python 2 prints rewritten when nothing else parses. Also what the ingest benchmark
    times as the analysis's parsing floor."""
    head = head_of(source, MAX_ANALYSED_CHARS) if len(source) > MAX_ANALYSED_CHARS else None
    if head is not None:
        tree, error, used_ipython, text = parse_cell_with_text(head, warnings_off=True)
        if tree is None or error is not None:  # the cut fell inside a string or brackets: the whole cell, then
            head = None
    if head is None:
        tree, error, used_ipython, text = parse_cell_with_text(source, warnings_off=True)
    ipython_syntax = used_ipython and tree is not None
    if tree is None:
        repaired = repair_python2(source)
        if repaired is not None:
            tree, _, used, text = parse_cell_with_text(repaired, warnings_off=True)
            ipython_syntax = ipython_syntax or used
    return tree, error, ipython_syntax, text, head


def _analyse_code(source: str, scope: Scope, cf: CellFacts) -> tuple[list[Call], list[Import], list, bool, CellVisitor | None]:
    tree, error, cf.ipython_syntax, text, head = parse_code(source)
    if tree is not None and error is None:
        visitor = CellVisitor(scope, text)
        visitor.visit(tree)
        if head is not None:
            cf.parse_error = (f"analysed its first {head.count(chr(10))} of {source.count(chr(10)) + 1} lines "
                              f"({len(head)} of {len(source)} characters: generated code)")
            _scan_tail(source[len(head):], visitor)
        return visitor.calls, visitor.imports, visitor.assigned_columns, True, visitor
    cf.parsed = False
    cf.parse_error = error or "does not parse"
    if tree is not None:  # parsed after repairing Python 2 prints: full analysis, still marked
        cf.parse_error = (error or "") + " (analysed after rewriting Python 2 print statements)"
        visitor = CellVisitor(scope, text)
        visitor.visit(tree)
        return visitor.calls, visitor.imports, visitor.assigned_columns, True, visitor
    # token fallback: imports line by line, calls from the token stream
    visitor = CellVisitor(scope)
    _scan_imports(source, visitor)
    imports = visitor.imports
    calls = token_calls(source, scope)
    segment, has_plot = 0, False
    for call in calls:
        if starts_figure(call) and has_plot:
            segment, has_plot = segment + 1, False
        call.segment = segment
        has_plot = has_plot or is_plot_call(call)
        if ends_figure(call) and has_plot:
            segment, has_plot = segment + 1, False
    return calls, imports, [], False, None


_NAME_BEFORE_DOT = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\.")


def _scan_tail(tail: str, visitor: CellVisitor) -> None:
    """What the unanalysed rest of a long cell still tells cheaply: its imports (recorded, and in scope
    for the following cells) and the libraries its names refer to (``pl.col`` -> polars)."""
    _scan_imports(tail, visitor)
    visitor.tail_names = set(_NAME_BEFORE_DOT.findall(tail))


def _scan_imports(source: str, visitor: CellVisitor) -> None:
    """Imports line by line, for code that does not parse as a whole (or is not parsed whole)."""
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith(("import ", "from ")):
            try:
                visitor.visit(ast.parse(stripped))
            except SyntaxError:
                continue


_NOT_A_STATEMENT = tuple("#)]},.+-*/%&|^<>=!\"'\\@")


def head_of(source: str, limit: int) -> str | None:
    """The beginning of a long cell, at most ``limit`` characters, ending before a line that starts a
    statement at the least indentation found in the second half of that beginning (so that the head
    is a whole program: a run of top-level statements, or of statements of one function body).

    None when no such line is found. The cut is a guess: the caller parses the head and falls back to
    the whole cell when the guess lands inside brackets or a string.
    """
    end = source.rfind("\n", 0, limit)
    if end <= 0:
        return None
    lines = source[: end + 1].splitlines(keepends=True)
    best: tuple[int, int] | None = None
    for i in range(len(lines) - 1, len(lines) // 2, -1):
        line = lines[i]
        stripped = line.lstrip()
        if not stripped.strip() or stripped.startswith(_NOT_A_STATEMENT):
            continue
        before = lines[i - 1].rstrip()
        if not before or before.endswith((":", "\\", ",", "(", "[", "{")) or before.lstrip().startswith("@"):
            continue
        indent = len(line) - len(stripped)
        if best is None or indent < best[1]:
            best = (i, indent)
            if indent == 0:
                break
    if best is None:
        return None
    return "".join(lines[: best[0]])


_MATPLOTLIB_OBJECTS = (AXES, "matplotlib.figure")  # methods of what pyplot returns


def _libraries(imports: list[Import], call_names: set[str], scope: Scope, tail_names: set[str] | None = None) -> list[str]:
    """Top-level libraries of a cell: what it imports, and the roots of the resolved ``call_names``
    (``<receiver>`` names excluded) that are modules of the notebook's scope."""
    libs = {i.library for i in imports if i.module and not i.module.startswith(".") and i.library != "__future__"}
    module_roots = scope.module_roots()
    for name in tail_names or ():
        if name in scope.names and name not in scope.functions:
            libs.add(scope.names[name].split(".")[0])
    for name in call_names:
        if name.startswith(_MATPLOTLIB_OBJECTS):
            libs.add("matplotlib")
        else:
            root = name.partition(".")[0]
            if root in module_roots and root not in scope.functions:
                libs.add(root)
    return sorted(l for l in libs if l)
