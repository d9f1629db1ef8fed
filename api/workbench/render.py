"""Turning untrusted notebook content into inert HTML.

* Markdown (cells, context text, text/markdown outputs) goes through markdown-it-py, raw HTML
  allowed (notebooks use <br>, <img>, tables), and the result through nh3 (ammonia): only an
  allow-list of tags and attributes survives, no script, no event handler, no style, and URLs only
  with http, https or mailto (plus in-page #anchors and the cell's own attachments).
* Code is highlighted by pygments, which escapes everything it emits.
* Stream, error and plain-text outputs are escaped text (ANSI colours removed).
* HTML outputs are never put in the page: they go in a sandboxed iframe from a separate route
  (see ``FRAME_CSP``), and SVG images only ever in <img>, where a browser runs no script.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from typing import Any

import nh3
from markupsafe import Markup

MAX_HIGHLIGHT = 200_000  # characters; longer cells are shown as plain text
URL_SCHEMES = {"http", "https", "mailto", "attachment"}
ATTACHMENT_MIMES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]+$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_ATTACHMENT_SRC = re.compile(r'src="attachment:([^"]*)"')

# the page that shows an HTML output: no script, no plugin, no request anywhere (inline styles
# and data: images only), an opaque origin (sandbox), and only framed by this site
FRAME_CSP = (
    "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)


@lru_cache(maxsize=1)
def _markdown():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False}).enable(
        ["table", "strikethrough"]
    )


def _attribute_filter(element: str, attribute: str, value: str) -> str | None:
    if attribute in ("href", "src"):
        v = value.strip()
        if v.startswith("#"):
            return v if element == "a" else None
        # relative URLs would point into this site; a notebook has no business doing that
        scheme = v.split(":", 1)[0].lower() if ":" in v else ""
        if scheme not in URL_SCHEMES:
            return None
        if scheme == "attachment" and element != "img":
            return None
    return value


def sanitize(html_text: str) -> str:
    """Untrusted HTML reduced to an inert allow-list (tags, attributes, URL schemes)."""
    return nh3.clean(
        html_text,
        url_schemes=URL_SCHEMES,
        attribute_filter=_attribute_filter,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def _attachment_data(attachments: dict[str, Any] | None, name: str) -> str | None:
    bundle = (attachments or {}).get(html.unescape(name))
    if not isinstance(bundle, dict):
        return None
    for mime in ATTACHMENT_MIMES:
        data = bundle.get(mime)
        if isinstance(data, list):
            data = "".join(data)
        if isinstance(data, str) and _BASE64.match(data):
            return f"data:{mime};base64," + re.sub(r"\s", "", data)
    return None


def markdown(source: str | None, attachments: dict[str, Any] | None = None) -> Markup:
    """Markdown rendered and sanitised; the cell's raster attachments inlined as data: images."""
    if not source:
        return Markup("")
    clean = sanitize(_markdown().render(source))
    if attachments and "attachment:" in clean:
        # after sanitising: the data URI is built here from base64 only, never from the cell's HTML
        def inline(m: re.Match) -> str:
            data = _attachment_data(attachments, m.group(1))
            return f'src="{data}"' if data else 'alt="(attachment not shown)"'

        clean = _ATTACHMENT_SRC.sub(inline, clean)
    return Markup(clean)


def strip_ansi(value: str | None) -> str:
    return _ANSI.sub("", value or "")


@lru_cache(maxsize=16)
def _lexer(language: str | None):
    from pygments.lexers import PythonLexer, TextLexer, get_lexer_by_name
    from pygments.util import ClassNotFound

    if not language or language.lower() in ("python", "python3", "ipython", "ipython3"):
        return PythonLexer()
    try:
        return get_lexer_by_name(language.lower())
    except ClassNotFound:
        return TextLexer()


def code(source: str | None, language: str | None = "python") -> Markup:
    """A code cell highlighted (pygments escapes the text it wraps)."""
    source = source or ""
    if len(source) > MAX_HIGHLIGHT:
        return Markup('<div class="hl"><pre>') + source + Markup("</pre></div>")
    from pygments import highlight
    from pygments.formatters import HtmlFormatter

    return Markup(highlight(source, _lexer(language), HtmlFormatter(cssclass="hl")))


def frame_document(fragment: str) -> str:
    """An HTML output as the whole document of its sandboxed frame."""
    return (
        '<!doctype html><html><head><meta charset="utf-8"><style>body{font:13px system-ui,sans-serif;margin:6px}'
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 6px}</style></head><body>"
        + fragment
        + "</body></html>"
    )


def frame_height(fragment: str) -> int:
    """A guess of the frame's height in pixels (a script-less frame cannot say how tall it is):
    by table rows, else by lines of text, between 60 and 600."""
    rows = fragment.count("<tr")
    if rows:
        return max(60, min(600, 40 + 27 * rows))
    lines = fragment.count("<br") + fragment.count("<p") + fragment.count("\n") // 2
    return max(60, min(600, 40 + 20 * lines))


def output_text(data: dict[str, Any] | None, mime: str) -> str:
    value = (data or {}).get(mime)
    if isinstance(value, list):
        value = "".join(value)
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value, indent=1)[:20_000]
    return value if isinstance(value, str) else ""
