"""The default code embedder: token and identifier n-grams, feature-hashed, offline, no model.

What it ignores, on purpose, so that "the same code" lands in the same place:

* the names of the variables a cell binds (assignment targets, loop targets, function arguments,
  ``with ... as``, functions and classes it defines): they all become one placeholder, so
  ``clf = RandomForestClassifier()`` and ``model = RandomForestClassifier()`` are one thing;
* comments, blank lines, indentation and line breaks inside brackets (reformatting);
* quote style and the exact value of numbers (kept only as a weak hint);
* IPython magics and shell escapes (their words stay as weak features).

What it keeps: keywords and operators as token n-grams (the shape of the code), and every name
the cell did *not* bind (``plt``, ``sns.heatmap``, ``confusion_matrix``, ``X_train`` from an
earlier cell) split into words, which say what the code is about. Cells that are not Python
(or not valid Python: Python 2, Julia, R) go through a tolerant regex tokenizer with the same
canonicalisation, binding found by ``name =`` / ``for name in`` patterns.
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
import warnings
from collections.abc import Iterator, Sequence

import numpy as np

from db.embed._hashing import hash_features
from db.embed.protocol import l2_normalise

VAR = "_v_"
NUM = "_n_"
STR = "_s_"

_MAGIC = re.compile(r"^\s*(%%?|!|\?)")
_WORDS = re.compile(r"[A-Za-z][a-z]+|[A-Z]+(?![a-z])|[a-z]+|\d+")
_FALLBACK_TOKEN = re.compile(
    r"""(?P<comment>\#[^\n]*)
      | (?P<string>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')
      | (?P<name>[^\W\d]\w*)
      | (?P<number>\d[\w.]*)
      | (?P<op>==|!=|<=|>=|->|\*\*|//|[+\-*/%&|^]=|:=|\S)""",
    re.VERBOSE,
)
_FALLBACK_BINDING = re.compile(
    r"""^\s*(?:for\s+)?(?P<targets>[^\W\d]\w*(?:\s*,\s*[^\W\d]\w*)*)\s*(?:=(?!=)|\s+in\b)""",
    re.MULTILINE,
)

# class weights: the idf-like prior (see _hashing). Version 2 moved weight from the long token
# n-grams (nearly unique per cell, so every two unrelated cells were orthogonal) to single tokens
# and the names a cell uses: unrelated cells now differ by degrees (same library, same idioms),
# which is what an HNSW graph walk needs to find its way (tests/benchmarks/vectors.py: recall@10
# at 20,000 vectors, m=16, ef_search=100, went from 0.54 to 0.65), and renamed-variable copies
# still find their original (tests/test_embed.py).
_W_NGRAM = {1: 1.5, 2: 0.5, 3: 0.25, 4: 0.15}
_W_IDENT = 2.5
_W_IDENT_WORD = 2.0
_W_STRING_WORD = 0.5
_W_NUMBER = 0.25
_W_MAGIC = 0.5


def _split_words(identifier: str) -> list[str]:
    return [w.lower() for w in _WORDS.findall(identifier)]


class _Binder(ast.NodeVisitor):
    """Names the cell itself binds. Import aliases are not in it: ``np`` is a convention, not a variable."""

    def __init__(self) -> None:
        self.bound: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self.bound.add(node.id)

    def visit_arg(self, node: ast.arg) -> None:
        self.bound.add(node.arg)
        self.generic_visit(node)

    def _define(self, node) -> None:
        self.bound.add(node.name)
        self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _define

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.bound.add(node.name)
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.bound.update(node.names)

    visit_Nonlocal = visit_Global


def _strip_magics(source: str) -> tuple[str, list[str]]:
    kept, magic_words = [], []
    for line in source.splitlines():
        if _MAGIC.match(line):
            magic_words.extend(_split_words(line))
            kept.append("")
        else:
            kept.append(line)
    return "\n".join(kept), magic_words


def _python_tokens(source: str) -> Iterator[tuple[str, str]] | None:
    """(kind, text) for a valid Python source, or None if tokenize gives up."""
    try:
        raw = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    out = []
    for tok in raw:
        if tok.type == tokenize.NAME:
            out.append(("name", tok.string))
        elif tok.type == tokenize.NUMBER:
            out.append(("number", tok.string))
        elif tok.type == tokenize.STRING:
            out.append(("string", tok.string))
        elif tok.type == tokenize.OP:
            out.append(("op", tok.string))
        elif tok.type == tokenize.ERRORTOKEN and tok.string.strip():
            out.append(("op", tok.string))
    return iter(out)


def _fallback_tokens(source: str) -> Iterator[tuple[str, str]]:
    for m in _FALLBACK_TOKEN.finditer(source):
        kind = m.lastgroup
        if kind != "comment":
            yield kind, m.group()


def _fallback_bound(source: str) -> set[str]:
    bound: set[str] = set()
    for m in _FALLBACK_BINDING.finditer(source):
        bound.update(t.strip() for t in m.group("targets").split(","))
    return bound - set(keyword.kwlist)


def code_features(source: str) -> list[tuple[str, float]]:
    """The weighted features of one code cell (exposed for tests and for explaining a match)."""
    cleaned, magic_words = _strip_magics(source)
    tokens = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "invalid escape sequence" and the like: not our business
            tree = ast.parse(cleaned)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        tree = None
    if tree is not None:
        binder = _Binder()
        binder.visit(tree)
        bound = binder.bound
        tokens = _python_tokens(cleaned)
    if tokens is None:
        bound = _fallback_bound(cleaned)
        tokens = _fallback_tokens(cleaned)

    features: list[tuple[str, float]] = [("m:" + w, _W_MAGIC) for w in magic_words]
    stream: list[str] = []
    previous = ""
    for kind, text in tokens:
        if kind == "name":
            if keyword.iskeyword(text):
                stream.append(text)
            elif text in bound and previous != ".":
                stream.append(VAR)
            else:
                stream.append(text)
                features.append(("i:" + text, _W_IDENT))
                features.extend(("w:" + w, _W_IDENT_WORD) for w in _split_words(text))
        elif kind == "number":
            stream.append(NUM)
            features.append(("n:" + text.lower().replace("_", ""), _W_NUMBER))
        elif kind == "string":
            stream.append(STR)
            body = re.sub(r"^[A-Za-z]*('''|\"\"\"|'|\")|('''|\"\"\"|'|\")$", "", text)
            features.extend(("s:" + w, _W_STRING_WORD) for w in _split_words(body))
        else:
            stream.append(text)
        previous = text

    for n, weight in _W_NGRAM.items():
        for i in range(len(stream) - n + 1):
            gram = stream[i : i + n]
            # an n-gram of nothing but punctuation and placeholders says little
            w = weight if any(t[0].isalpha() and t not in (VAR, NUM, STR) for t in gram) else weight * 0.5
            features.append(("t:" + " ".join(gram), w))
    return features


class CodeEmbedder:
    """Hashed token/identifier n-grams of code cells (default for the ``code`` space)."""

    name = "code-ngrams"
    version = "2"
    space = "code"

    def __init__(self, dimension: int = 1024) -> None:
        self.dimension = dimension

    def embed(self, batch: Sequence[str]) -> np.ndarray:
        rows = np.zeros((len(batch), self.dimension), dtype=np.float32)
        for i, source in enumerate(batch):
            rows[i] = hash_features(code_features(source or ""), self.dimension)
        return l2_normalise(rows)
