"""64-bit perceptual hashes (DCT pHash from ``imagehash``) for near-duplicate plots.

The same plot re-rendered, resized or re-encoded keeps nearly the same low frequencies, so its
hash differs in a few bits; stored as pgvector ``bit(64)`` and compared with ``<~>`` (Hamming).
Transparent images are flattened onto white first, as a notebook shows them.
"""

from __future__ import annotations

import imagehash
from PIL import Image

from db.embed.image import load_rgb
from db.embed.protocol import ImageItem


def phash_of(img: Image.Image) -> str:
    """The 64 bits of the image's pHash as a '0'/'1' string, row by row (pgvector's bit text form)."""
    bits = imagehash.phash(img, hash_size=8).hash.ravel()
    return "".join("1" if b else "0" for b in bits)


def phash_bits(item: ImageItem | bytes, *, max_pixels: int | None = None) -> str | None:
    """pHash of stored image bytes, or None when the image cannot be decoded here (e.g. SVG)."""
    img = load_rgb(item, max_pixels=max_pixels)
    if img is None or img.width < 2 or img.height < 2:
        return None
    return phash_of(img)


def hamming(a: str, b: str) -> int:
    return sum(x != y for x, y in zip(a, b))
