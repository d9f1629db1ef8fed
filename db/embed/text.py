"""The default text embedder for markdown cells: stemmed words and word pairs, feature-hashed.

Markdown and HTML markup, links, LaTeX commands and inline images are removed; words are
case- and accent-folded and stemmed with the Snowball English stemmer, so "curves", "Curve" and
"curved" meet. Features: stems (the topic), pairs of neighbouring content stems (the phrase),
and character trigrams of each word (weak: they survive typos and unknown inflections). Common
English function words carry no weight of their own.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import snowballstemmer

from db.embed._hashing import hash_features
from db.embed.protocol import l2_normalise

_STOP = frozenset(
    """a about above after again all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers him his how i if in into is it its itself just let me more most my no nor
    not now of off on once only or other our ours out over own same she should so some such than that
    the their them then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours""".split()
)
_DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")
_URL = re.compile(r"(?:https?|ftp)://\S+|www\.\S+")
_ATTACHMENT = re.compile(r"attachment:\S+")
_HTML_TAG = re.compile(r"<[^>]{0,500}>")
_HTML_ENTITY = re.compile(r"&#?\w+;")
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)

_W_STEM = 1.0
_W_HEADING_STEM = 1.5
_W_PAIR = 0.7
_W_TRIGRAM = 0.15

_stemmer = snowballstemmer.stemmer("english")


@lru_cache(maxsize=1 << 17)
def _stem(word: str) -> str:
    return _stemmer.stemWord(word)


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).lower()


def plain_words(markdown: str) -> list[tuple[str, bool]]:
    """(folded word, in a heading) for every word of a markdown cell, markup removed."""
    text = _DATA_URI.sub(" ", markdown)
    text = _URL.sub(" ", text)
    text = _ATTACHMENT.sub(" ", text)
    text = _HTML_TAG.sub(" ", text)
    text = _HTML_ENTITY.sub(" ", text)
    text = _LATEX_COMMAND.sub(" ", text)
    out: list[tuple[str, bool]] = []
    for line in text.splitlines():
        heading = line.lstrip().startswith("#")
        out.extend((w, heading) for w in _WORD.findall(_fold(line)))
    return out


def text_features(markdown: str) -> list[tuple[str, float]]:
    features: list[tuple[str, float]] = []
    content: list[str] = []
    for word, heading in plain_words(markdown):
        if word in _STOP:
            continue
        stem = _stem(word)
        content.append(stem)
        features.append(("s:" + stem, _W_HEADING_STEM if heading else _W_STEM))
        padded = f"<{word}>"
        features.extend(("c:" + padded[i : i + 3], _W_TRIGRAM) for i in range(len(padded) - 2))
    features.extend(("p:" + a + " " + b, _W_PAIR) for a, b in zip(content, content[1:]))
    return features


class TextEmbedder:
    """Hashed stems, stem pairs and character trigrams of markdown (default for the ``text`` space)."""

    name = "text-words"
    version = "2"
    space = "text"

    def __init__(self, dimension: int = 1024) -> None:
        self.dimension = dimension

    def embed(self, batch: Sequence[str]) -> np.ndarray:
        rows = np.zeros((len(batch), self.dimension), dtype=np.float32)
        for i, markdown in enumerate(batch):
            rows[i] = hash_features(text_features(markdown or ""), self.dimension)
        return l2_normalise(rows)
