"""The text around a plot: the nearest markdown before its cell and the markdown right after it."""

from __future__ import annotations

MAX_CONTEXT = 4000  # characters; a long essay cell is cut, the beginning is what introduces the plot


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_CONTEXT else text[: MAX_CONTEXT - 1] + "…"


def context_for_cells(cell_types: list[str], sources: list[str]) -> list[tuple[str | None, str | None]]:
    """For every cell: (nearest non-empty markdown before it, markdown cell right after it).

    "Before" looks back past other code cells (a notebook often explains, then runs three cells);
    "after" is only the next cell, and only when it is markdown (the comment on what was drawn).
    """
    out: list[tuple[str | None, str | None]] = []
    last_markdown: str | None = None
    for i, ctype in enumerate(cell_types):
        after = None
        if i + 1 < len(cell_types) and cell_types[i + 1] == "markdown" and sources[i + 1].strip():
            after = _clip(sources[i + 1])
        out.append((last_markdown, after))
        if ctype == "markdown" and sources[i].strip():
            last_markdown = _clip(sources[i])
    return out
