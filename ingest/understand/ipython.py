"""IPython syntax (``%magic``, ``%%cell_magic``, ``!shell``, ``obj?``) to plain Python, with IPython's own transformer."""

from __future__ import annotations

import ast
import re
import warnings
from contextlib import contextmanager
from functools import lru_cache

# cell magics whose body is Python: the body is analysed as code, not as a string argument
PYTHON_BODY_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug", "python", "python3", "memit", "pypy"})
# line magics whose argument is a Python statement
PYTHON_ARG_LINE_MAGICS = frozenset({"time", "timeit", "prun", "memit"})


@lru_cache(maxsize=1)
def _manager():
    # imported lazily: IPython is heavy and most cells are plain Python
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager()


def to_python(source: str) -> str:
    """Python text of a cell: IPython's TransformerManager turns magics/shell/help into ``get_ipython()`` calls.

    The same steps as ``TransformerManager.transform_cell``, with one shortcut. Its token transforms
    tokenize the whole cell again after each change (the code after special syntax may not tokenize
    until that syntax is rewritten), so a cell with one ``%matplotlib inline`` is tokenized twice,
    the most expensive part of analysing it. When the cell's special lines are plain line magics or
    shell commands at the start of a line (no brackets, quotes, ``?`` or continuation: each one
    complete logical line), and the code between them is plain Python on its own (so IPython finds
    nothing to change in it, and it leaves the next line at the start of a logical line), each such
    line is transformed alone, which gives the text IPython gives for the whole cell.
    """
    manager = _manager()
    if not source.endswith("\n"):
        source += "\n"
    lines = source.splitlines(keepends=True)
    for transform in manager.cleanup_transforms + manager.line_transforms:
        lines = transform(lines)
    escapes = [i for i, line in enumerate(lines) if _lone_escape(line)]
    if not escapes and not _token_marks(lines):  # nothing IPython's token transforms could act on
        return "".join(lines)
    if _plain_between(lines, escapes):  # also: no escapes, and the cleaned cell is Python (a %%magic)
        out: list[str] = []
        done = 0
        for i in escapes:
            out += lines[done:i]
            out += _escape_line(lines[i])
            done = i + 1
        out += lines[done:]
        return "".join(out)
    return "".join(manager.do_token_transforms(lines))


@lru_cache(maxsize=10_000)  # bounded: a worker lives for a whole corpus
def _escape_line(line: str) -> tuple[str, ...]:
    """IPython's text for one lone magic/shell line, remembered: the same few lines (``%matplotlib
    inline``, ``!pip install ...``) open notebook after notebook, and each costs a tokenizer run."""
    return tuple(_manager().do_token_transforms([line]))


def _lone_escape(line: str) -> bool:
    """A line magic or shell command that is one logical line for the tokenizer: no quotes, comment,
    help mark or continuation, and brackets that close in order."""
    if line[:1] not in ("%", "!") or any(c in line for c in "'\"#\\?"):
        return False
    depth = 0
    for c in line:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


_ASSIGNED_ESCAPE = re.compile(r"=[\s\\]*[%!]")


def _token_marks(lines: list[str]) -> bool:
    """Whether IPython's token transforms could find anything: a help mark (?), a logical line that
    opens with an escape (% ! , ; /), or a magic or shell command assigned (``x = %who``, ``y = !ls``)."""
    text = "".join(lines)
    if "?" in text or any(line.lstrip()[:1] in ("%", "!", ",", ";", "/") for line in lines):
        return True
    return ("%" in text or "!" in text) and _ASSIGNED_ESCAPE.search(text) is not None


def _plain_between(lines: list[str], escapes: list[int]) -> bool:
    """Whether the lines between the escape lines each compile as Python on their own."""
    bounds = [-1, *escapes, len(lines)]
    with quiet():
        for a, b in zip(bounds, bounds[1:]):
            if b - a > 1:
                try:
                    compile("".join(lines[a + 1:b]), "<cell>", "exec", dont_inherit=True)
                except (SyntaxError, ValueError):
                    return False
    return True


def parse_cell(source: str) -> tuple[ast.Module | None, str | None, bool]:
    tree, error, used, _ = parse_cell_with_text(source)
    return tree, error, used


def parse_cell_with_text(source: str, *, warnings_off: bool = False) -> tuple[ast.Module | None, str | None, bool, str]:
    """Like ``parse_cell``, plus the text the tree's line/column positions refer to.

    ``warnings_off``: the caller already ignores warnings (the analyser does, once per notebook).
    """
    if warnings_off:
        tree, error, used = _parse_cell(source)
    else:
        with quiet():
            tree, error, used = _parse_cell(source)
    if tree is None or not used:
        return tree, error, used, source
    # transformed text: same lines as the source except magic lines; an expanded %%magic body is
    # positioned on the original source (see _expand_magics)
    return tree, error, used, source if getattr(tree, "_nbatlas_cell_magic", False) else _last_text.get("text", source)


_last_text: dict[str, str] = {}


@contextmanager
def quiet():
    """Notebook code is full of '\\d' in plain strings: its SyntaxWarnings are the author's, not ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _parse_cell(source: str) -> tuple[ast.Module | None, str | None, bool]:
    """Parse a cell. Returns (tree, error, used_ipython_transform).

    Plain Python parses as is (most cells, and the cheap path); only cells that do not parse go
    through IPython's transformer, which leaves valid Python unchanged anyway.
    """
    try:
        return _expand_magics(ast.parse(source)), None, False
    except (SyntaxError, ValueError) as exc:
        if not may_hold_ipython_syntax(source):  # IPython would hand it back unchanged: same error
            return None, _error_text(exc), True
    try:
        text = to_python(source)
    except Exception as exc:  # IPython's transformer itself can choke on broken input
        return None, f"IPython transform failed: {exc}", True
    _last_text["text"] = text
    try:
        return _expand_magics(ast.parse(text)), None, True
    except (SyntaxError, ValueError) as exc:
        return None, _error_text(exc), True


def _error_text(exc: Exception) -> str:
    line = getattr(exc, "lineno", None)
    return f"{type(exc).__name__}: {getattr(exc, 'msg', exc)}" + (f" (line {line})" if line else "")


# what IPython's TransformerManager acts on: magics/shell/help (%, !, ?), pasted prompts, and
# autocall escapes (, ; /) opening a line
_IPYTHON_MARKS = ("%", "!", "?", ">>>", "In [", "...:")


def may_hold_ipython_syntax(source: str) -> bool:
    """False when IPython's transformer has nothing to change in ``source`` but whitespace.

    Checked before running it on a cell that does not parse (Python 2 prints, broken code): the
    transformer tokenizes the whole cell at least twice, and is most of the cost of such cells.
    """
    if source[:1].isspace():  # leading blank lines or indentation: IPython removes them
        return True
    if any(mark in source for mark in _IPYTHON_MARKS):
        return True
    return any(line.lstrip()[:1] in (",", ";", "/") for line in source.splitlines())


def _magic_call(node: ast.AST) -> tuple[str, str, str | None] | None:
    """('cell'|'line', magic name, python body) when ``node`` is get_ipython().run_*_magic(...)."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    recv = node.func.value
    if not (isinstance(recv, ast.Call) and isinstance(recv.func, ast.Name) and recv.func.id == "get_ipython"):
        return None
    args = [a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None for a in node.args]
    if node.func.attr == "run_cell_magic" and len(args) >= 3 and args[0] in PYTHON_BODY_CELL_MAGICS:
        return "cell", args[0], args[2]
    if node.func.attr == "run_line_magic" and len(args) >= 2 and args[0] in PYTHON_ARG_LINE_MAGICS:
        return "line", args[0], args[1]
    return None


def _expand_magics(tree: ast.Module) -> ast.Module:
    """Replace ``%%time``-style magics by the Python they run, so their calls are seen."""
    body: list[ast.stmt] = []
    changed = False
    for stmt in tree.body:
        magic = _magic_call(stmt.value) if isinstance(stmt, ast.Expr) else None
        if magic and magic[2]:
            try:
                inner = ast.parse(magic[2] if magic[0] == "cell" else to_python(magic[2]))
            except (SyntaxError, ValueError):
                try:
                    inner = ast.parse(to_python(magic[2]))
                except Exception:
                    body.append(stmt)
                    continue
            offset = stmt.lineno  # body lines start after the %%magic line
            for node in ast.walk(inner):
                if hasattr(node, "lineno"):
                    node.lineno += offset if magic[0] == "cell" else offset - 1
                    if getattr(node, "end_lineno", None) is not None:
                        node.end_lineno += offset if magic[0] == "cell" else offset - 1
            body.extend(_expand_magics(inner).body)
            changed = True
            if magic[0] == "cell":
                tree._nbatlas_cell_magic = True  # type: ignore[attr-defined]
        else:
            body.append(stmt)
    if changed:
        tree.body = body
    return tree
