"""Feature hashing shared by the code and text embedders.

A feature is a string (a token n-gram, an identifier word...). It lands in one of ``dimension``
buckets chosen by CRC-32, with a sign from another bit of the same hash so colliding features
cancel out on average instead of piling up. Term frequency is damped (1 + log tf) and scaled by
the feature's class weight, an idf-like prior that says how informative that kind of feature is
(punctuation n-grams little, library identifiers a lot).
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1 << 18)
def _bucket(feature: str, mask: int) -> tuple[int, float]:
    h = zlib.crc32(feature.encode("utf-8", "surrogatepass"))
    return h & mask, (1.0 if (h >> 31) & 1 else -1.0)


def hash_features(weighted: Iterable[tuple[str, float]], dimension: int) -> np.ndarray:
    """One row: sum over distinct features of sign * weight * (1 + log tf), not normalised."""
    if dimension & (dimension - 1):
        raise ValueError("dimension must be a power of two")
    mask = dimension - 1
    tf: Counter[str] = Counter()
    weight: dict[str, float] = {}
    for feature, w in weighted:
        tf[feature] += 1
        weight[feature] = w
    row = np.zeros(dimension, dtype=np.float32)
    for feature, count in tf.items():
        index, sign = _bucket(feature, mask)
        row[index] += sign * weight[feature] * (1.0 + math.log(count))
    return row
