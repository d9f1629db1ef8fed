"""What an embedder is: a named, versioned function from a batch of items to unit vectors.

Three spaces: ``code`` (code cells), ``text`` (markdown cells), ``image`` (images). Every stored
vector records the embedder's name and version, so several embedders (or two versions of one)
coexist in the same table and changing one only adds rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

Space = Literal["code", "text", "image"]
SPACES: tuple[Space, ...] = ("code", "text", "image")


@dataclass(frozen=True)
class ImageItem:
    """An image as stored: raster bytes (``data``) or SVG text (``svg``)."""

    mime: str
    data: bytes | None = None
    svg: str | None = None


@runtime_checkable
class Embedder(Protocol):
    """The contract every embedder keeps.

    ``embed`` returns a float32 array of shape ``(len(batch), dimension)`` whose rows are
    L2-normalised (cosine distance is what the indexes use), or a row of NaN for an item that
    holds nothing to embed (an empty cell, an image that cannot be decoded): such items are
    recorded with no vector, so they are not retried on every run.
    """

    name: str
    version: str
    dimension: int
    space: Space

    def embed(self, batch: Sequence) -> np.ndarray: ...


class EmbedderUnavailable(RuntimeError):
    """The embedder cannot be built here (an optional extra is missing, weights are absent)."""


def l2_normalise(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows become NaN rows ("nothing to embed")."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = matrix / norms
    out[(norms[:, 0] == 0)] = np.nan
    return out
