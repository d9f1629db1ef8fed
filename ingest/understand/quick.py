"""Regular expressions behind a substring test.

The plot-kind and stage rules search long texts (the arguments of every call of a cell, the first
20,000 characters of a cell) with alternations of words, most of them case-insensitive. Python's
``re`` tries every branch at every position of such a text, and with ``re.I`` it folds the case of
each character as it goes: those searches were about a third of the analysis time, and most of them
find nothing. ``Quick`` first asks whether the text holds at least one of a few literal *needles*
(``in`` runs at C speed), and runs the expression only when it does, so its result is the
expression's own: the same match, the same span and group.

The needles must be literals that every match contains: tests/test_understand.py checks each
pattern against texts that match through each of its branches.
"""

from __future__ import annotations

import functools
import re


# one text is often searched by several expressions in a row (a figure's context by the ROC,
# precision-recall, learning-curve... rules): lower-cased once
_lower = functools.lru_cache(maxsize=1)(str.lower)


class Quick:
    """``re.compile(regex, flags)`` whose ``search`` first checks for one of ``needles``."""

    __slots__ = ("pattern", "needles", "fold")

    def __init__(self, regex: str, flags: int = 0, *, needles: tuple[str, ...]):
        self.pattern = re.compile(regex, flags)
        # with re.I, an ASCII text is lower-cased and searched for lower-cased needles
        self.fold = bool(flags & re.I)
        self.needles = tuple(n.lower() for n in needles) if self.fold else needles

    def search(self, text: str) -> re.Match[str] | None:
        if self.fold:
            # re.I matches three letters to ASCII ones that lower() leaves apart (ſ -> s, ı -> i,
            # İ -> i): with one of them the needles say nothing. Every other letter re.I matches to an
            # ASCII one (K, the Kelvin sign, -> k) lower() turns into that very letter.
            if not text.isascii() and ("\u017f" in text or "\u0131" in text or "\u0130" in text):
                return self.pattern.search(text)
            hay = _lower(text)
        else:
            hay = text
        for needle in self.needles:
            if needle in hay:
                return self.pattern.search(text)
        return None

    def __repr__(self) -> str:
        return f"Quick({self.pattern.pattern!r}, needles={self.needles!r})"
