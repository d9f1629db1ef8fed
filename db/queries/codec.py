"""How a notebook (nbformat 4, as ``nbformat.reads`` returns it) maps onto the tables, and back.

Ingest (``ingest.parse``) encodes with these rules and ``db.queries.notebooks`` decodes with them, so
both sides share one definition. Three things make the mapping lossless:

* **Canonical keys and ``extra``.** Each cell and output type has a few keys with real columns
  (``source``, ``execution_count``, ``text``...). A key with an unexpected type, or a key the nbformat
  schema does not know, goes to the row's ``extra`` JSONB under ``"keys"``; a canonical key the file
  lacked is listed under ``"absent"`` (a code cell without ``execution_count`` is rebuilt without it,
  not with ``null``).
* **Images.** PNG/JPEG/GIF base64 strings are decoded and stored once per distinct blob in ``image``;
  ``output_image.b64_layout`` says how the string was written (``None``: one line as
  ``base64.b64encode`` writes it; ``'one_line_nl'``: the same and a final newline, as Jupyter writes
  many PNGs; ``'lines76'``: ``base64.encodebytes``' 76-column lines). A string
  written any other way gets layout ``'raw'`` and is also kept verbatim in ``output.data``. SVG is kept
  as text (``image.svg``).
* **Characters PostgreSQL cannot store.** ``text`` and ``jsonb`` reject NUL (``\\u0000``) and lone
  UTF-16 surrogates; ``jsonb`` rejects NaN/Infinity. When a notebook has any of them, every string of
  it is stored with each such character written as ``ESC + 4 hex digits`` and non-finite numbers as the
  strings ``ESC + 'NaN' | 'Infinity' | '-Infinity'``, where ``ESC`` is a private-use character that
  occurs nowhere in that file, saved in ``notebook.text_escape``. Rebuilding reverses it exactly.
"""

from __future__ import annotations

import binascii
import math
import re
from typing import Any

# outputs carrying one of these count as image outputs; their payloads are the ``image`` table
RASTER_MIMES = ("image/png", "image/jpeg", "image/gif")
SVG_MIME = "image/svg+xml"
IMAGE_MIMES = (*RASTER_MIMES, SVG_MIME)

LAYOUT_ONE_LINE = None
LAYOUT_ONE_LINE_NL = "one_line_nl"
LAYOUT_LINES76 = "lines76"
LAYOUT_RAW = "raw"

# canonical keys per cell type, in nbformat's order (other keys go to ``extra``)
CELL_KEYS = {
    "code": ("id", "metadata", "source", "execution_count", "outputs"),
    "markdown": ("id", "metadata", "source", "attachments"),
    "raw": ("id", "metadata", "source", "attachments"),
}
CELL_KEYS_OTHER = ("id", "metadata", "source")

OUTPUT_KEYS = {
    "execute_result": ("data", "metadata", "execution_count"),
    "display_data": ("data", "metadata"),
    "stream": ("name", "text"),
    "error": ("ename", "evalue", "traceback"),
}

NOTEBOOK_KEYS = ("nbformat", "nbformat_minor", "metadata", "cells")

INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1


def is_int4(value: Any) -> bool:
    return type(value) is int and INT4_MIN <= value <= INT4_MAX


def is_str_list(value: Any) -> bool:
    return type(value) is list and all(type(item) is str for item in value)


def pack_extra(keys: dict[str, Any] | None, absent: list[str] | None) -> dict[str, Any] | None:
    if not keys and not absent:
        return None
    extra: dict[str, Any] = {}
    if keys:
        extra["keys"] = keys
    if absent:
        extra["absent"] = absent
    return extra


def extra_keys(extra: dict[str, Any] | None) -> dict[str, Any]:
    return (extra or {}).get("keys") or {}


def extra_absent(extra: dict[str, Any] | None) -> set[str]:
    return set((extra or {}).get("absent") or ())


# --- base64 layouts -----------------------------------------------------------------------------


def _lines76(one_line: str) -> str:
    # what base64.encodebytes writes, without its Python loop over 57-byte chunks
    if not one_line:
        return ""
    return "\n".join([one_line[i : i + 76] for i in range(0, len(one_line), 76)]) + "\n"


def encode_b64(data: bytes, layout: str | None) -> str:
    one_line = binascii.b2a_base64(data, newline=False).decode("ascii")
    if layout == LAYOUT_ONE_LINE_NL:
        return one_line + "\n"
    return _lines76(one_line) if layout == LAYOUT_LINES76 else one_line


def b64_layout_of(text: str, data: bytes) -> str | None:
    """The layout that re-encodes ``data`` to exactly ``text`` (``'raw'`` when none does)."""
    one_line = binascii.b2a_base64(data, newline=False).decode("ascii")
    if "\n" not in text:
        return LAYOUT_ONE_LINE if one_line == text else LAYOUT_RAW
    if len(text) == len(one_line) + 1 and text[-1] == "\n" and text.startswith(one_line):
        return LAYOUT_ONE_LINE_NL
    # lines76 without building it: the right length, a newline at every 77th place and at the end,
    # and the same characters once the newlines are gone (then there is no other newline)
    n = len(one_line)
    lines = -(-n // 76)
    if len(text) != n + lines or text[-1] != "\n":
        return LAYOUT_RAW
    breaks = text[76::77]
    if breaks.count("\n") != len(breaks) or text.replace("\n", "") != one_line:
        return LAYOUT_RAW
    return LAYOUT_LINES76


# --- characters PostgreSQL cannot store --------------------------------------------------------

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# JSON spellings that may produce such characters; a cheap pre-check on the raw file bytes
MAYBE_UNSTORABLE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_FLOAT_TAGS = ("NaN", "Infinity", "-Infinity")


def has_unstorable(obj: Any) -> bool:
    """Whether any string (or key) in the tree has NUL / a lone surrogate, or a number is not finite."""
    if isinstance(obj, str):
        return UNSTORABLE.search(obj) is not None
    if isinstance(obj, dict):
        return any(has_unstorable(k) or has_unstorable(v) for k, v in obj.items())
    if isinstance(obj, list):
        return any(has_unstorable(v) for v in obj)
    if isinstance(obj, float):
        return not math.isfinite(obj)
    return False


def choose_escape(raw: bytes) -> str:
    """A private-use character that occurs nowhere in the file (neither literally nor as a ``\\u`` escape)."""
    lowered = raw.lower()
    for code in range(0xE000, 0xF900):
        char = chr(code)
        if char.encode("utf-8") not in raw and f"\\u{code:04x}".encode("ascii") not in lowered:
            return char
    raise ValueError("no free escape character: the file uses every private-use character")


def escape_tree(obj: Any, esc: str) -> Any:
    if isinstance(obj, str):
        if UNSTORABLE.search(obj) is None:
            return obj
        return UNSTORABLE.sub(lambda m: f"{esc}{ord(m.group()):04x}", obj)
    if isinstance(obj, dict):
        return {escape_tree(k, esc): escape_tree(v, esc) for k, v in obj.items()}
    if isinstance(obj, list):
        return [escape_tree(v, esc) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return esc + ("NaN" if obj != obj else ("Infinity" if obj > 0 else "-Infinity"))
    return obj


def unescape_tree(obj: Any, esc: str) -> Any:
    if isinstance(obj, str):
        if esc not in obj:
            return obj
        if obj.startswith(esc) and obj[1:] in _FLOAT_TAGS:
            return float(obj[1:].replace("Infinity", "inf"))
        return re.sub(re.escape(esc) + "([0-9a-f]{4})", lambda m: chr(int(m.group(1), 16)), obj)
    if isinstance(obj, dict):
        return {unescape_tree(k, esc): unescape_tree(v, esc) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unescape_tree(v, esc) for v in obj]
    return obj
