"""Why a run failed: the failure class (and a detail) from the exception a notebook raised.

The class names are a closed vocabulary kept in ``db.vocab`` (the API refuses a filter on an
unknown one); this module decides which one a run gets.
"""

from __future__ import annotations

import ast
import re

from db.vocab import FAILURE_CLASSES

__all__ = ["FAILURE_CLASSES", "classify_failure", "defined_names"]

_PY2_NAMES = {"raw_input", "unicode", "xrange", "basestring", "long", "unichr", "execfile", "file", "reduce", "cmp"}
_PY2_SYNTAX = re.compile(r"^\s*(?:print\s+[^\s(=]|print\s*$|exec\s+[\"']|except\s+[\w.]+\s*,\s*\w+\s*:)|`[^`\n]+`", re.MULTILINE)
_MODULE = re.compile(r"No module named '?([\w.]+)'?")
_CANNOT_IMPORT = re.compile(r"cannot import name '?(\w+)'?(?: from '?([\w.]+)'?)?")
_NAME = re.compile(r"name '(\w+)' is not defined")
_PATH = re.compile(r"""(?:No such file or directory|does not exist|not found)[^'"]*['"]([^'"]+)['"]|['"]([^'"]+)['"][^'"]*(?:does not exist|not found)""")
_NETWORK = re.compile(
    r"Temporary failure in name resolution|Name or service not known|Network is unreachable|"
    r"Failed to establish a new connection|nodename nor servname|getaddrinfo failed|Connection refused|"
    r"No address associated with hostname|urlopen error",
    re.IGNORECASE,
)
_NETWORK_ENAMES = {"ConnectionError", "URLError", "gaierror", "HTTPError", "MaxRetryError", "NewConnectionError",
                   "ConnectTimeout", "ConnectionRefusedError", "ProxyError", "SSLError", "timeout"}
# matplotlib 3.6 renamed the seaborn styles (seaborn-whitegrid -> seaborn-v0_8-whitegrid), 3.8 dropped the old names
_STYLE = re.compile(r"'([^']+)' is not a valid package style")
# subprocess.CalledProcessError: "Command '['ls', '../input/x/']' returned non-zero exit status 2."
# (list form) or "Command 'ls ../input' returned ..." (string form, shell=True)
_COMMAND = re.compile(r"""Command '(.*)' returned non-zero exit status""", re.DOTALL)
# commands that only read files: when they fail, the file (usually ../input/...) is not there
_FILE_COMMANDS = {"ls", "cat", "head", "tail", "wc", "du", "unzip", "find", "file", "stat", "tar", "7z"}


_BINDING = re.compile(
    r"^\s*(?:def|class)\s+(\w+)|^\s*(\w+)\s*=(?!=)|^\s*import\s+(\w+)|^\s*from\s+\S+\s+import\s+(\w+)|^\s*for\s+(\w+)\s+in\b",
    re.MULTILINE,
)


def _strip_magics(source: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!", "?")) else line for line in source.splitlines())


def _called_commands(evalue: str) -> list[list[str]]:
    """The argv of a CalledProcessError's command, from its message: one for the list form, one per
    line for a shell string or a %%sh/%%bash cell's script (reported as bytes)."""
    m = _COMMAND.search(evalue)
    if not m:
        return []
    try:
        value = ast.literal_eval(m.group(1).strip())
    except (ValueError, SyntaxError):
        value = m.group(1)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, (list, tuple)):
        return [[str(a) for a in value]] if value else []
    return [line.split() for line in str(value).splitlines() if line.strip()]


def _is_pip_install(argv: list[str]) -> bool:
    """pip install, pip3 install, python -m pip install, uv pip install, /opt/conda/bin/pip install..."""
    words = [w.rsplit("/", 1)[-1].lstrip("!%") for w in argv]
    return "install" in words and any(re.fullmatch(r"pip[\d.]*", w) for w in words[:words.index("install")])


def defined_names(source: str) -> set[str]:
    """Names a cell binds (assignments, defs, classes, imports, loop targets)."""
    try:
        tree = ast.parse(_strip_magics(source))
    except SyntaxError:  # Python 2 cells, for one: fall back to the obvious binding forms
        found: set[str] = set()
        for m in _BINDING.finditer(source):
            found.update(g for g in m.groups() if g)
        return found
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
    return names


def classify_failure(
    status: str,
    ename: str | None,
    evalue: str | None,
    *,
    sources: list[str] | None = None,
    failing_cell: int | None = None,
    detail: str | None = None,
) -> tuple[str | None, str | None]:
    """(failure class, detail) for a run, or (None, None) when it ran without error.

    ``sources`` are the notebook's code-cell sources by cell position ('' for other cells), used to
    tell a NameError caused by running cells in another order than the author (the name is bound
    by a *later* cell) from a plain one.
    """
    if status == "ok":
        return None, None
    if status == "timeout":
        return "timeout", None
    if status == "oom" or ename == "MemoryError":
        return "memory", None
    if status == "killed":
        return "killed", evalue or detail
    if status == "infrastructure_error":
        if ename == "UnsupportedLanguage":
            return "unsupported_language", evalue
        return "infrastructure", (detail or evalue or "")[:500] or None
    ename = ename or ""
    evalue = evalue or ""
    sources = sources or []
    if ename in ("ModuleNotFoundError", "ImportError"):
        if m := _MODULE.search(evalue):
            return "missing_module", m.group(1).split(".")[0]
        if m := _CANNOT_IMPORT.search(evalue):
            return "library_api_change", ".".join(p for p in (m.group(2), m.group(1)) if p)
        return "missing_module", evalue[:200] or None
    if ename == "OSError" and (m := _STYLE.search(evalue)) and m.group(1).startswith("seaborn"):
        return "library_api_change", f"matplotlib style {m.group(1)!r} (renamed seaborn-v0_8-* in matplotlib 3.6)"
    if ename == "CalledProcessError" and (commands := _called_commands(evalue)):
        # the sandbox has no network: installing from an index cannot work there
        if pip := next((c for c in commands if _is_pip_install(c)), None):
            return "network", " ".join(pip)[:200]
        if len(commands) == 1 and commands[0][0].rsplit("/", 1)[-1] in _FILE_COMMANDS:
            paths = [a for a in commands[0][1:] if not a.startswith("-")]
            return "missing_data_file", (paths[-1] if paths else " ".join(commands[0]))[:200]
    if ename in ("FileNotFoundError", "IOError", "OSError") and ("No such file" in evalue or "does not exist" in evalue or ename == "FileNotFoundError"):
        m = _PATH.search(evalue)
        return "missing_data_file", (m.group(1) or m.group(2)) if m else evalue[:200] or None
    if ename in _NETWORK_ENAMES or _NETWORK.search(evalue):
        return "network", evalue[:200] or None
    if ename == "NameError":
        m = _NAME.search(evalue)
        name = m.group(1) if m else None
        if name and failing_cell is not None:
            later = set().union(*(defined_names(s) for s in sources[failing_cell + 1:] if s)) if sources else set()
            if name in later:
                return "out_of_order", name
        if name in _PY2_NAMES:
            return "python2", name
        return "name_error", name
    if ename in ("SyntaxError", "IndentationError", "TabError"):
        cell = sources[failing_cell] if failing_cell is not None and failing_cell < len(sources) else ""
        if "Missing parentheses in call to 'print'" in evalue or _PY2_SYNTAX.search(_strip_magics(cell)):
            return "python2", None
        return "syntax_error", evalue[:200] or None
    if ename == "AttributeError" and re.search(r"module '[\w.]+' has no attribute|has no attribute '\w+'", evalue):
        if "module" in evalue:
            return "library_api_change", evalue[:200]
    if ename == "TypeError" and "unexpected keyword argument" in evalue:
        return "library_api_change", evalue[:200]
    if ename == "DeadKernelError":
        return "killed", evalue
    return "exception", ename or None
