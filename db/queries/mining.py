"""Keyset pages of a mining run's listing and pull ledger, for many runs in one statement each.

A run over the top competitions lists thousands of kernels: the API never reads a whole listing to
show a page of it (``db.queries.kaggle.listings_by_run`` does, for the CLI's reports).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import Row, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import BigInteger, Text

LISTING_COLUMNS = ("id", "run_id", "scope", "rank", "ref", "version", "title", "author", "votes", "language",
                   "kernel_type", "last_run_at", "selected", "seen_at")
PULL_COLUMNS = ("id", "run_id", "ref", "version", "status", "reason", "attempts", "path", "notebook_id", "with_outputs",
                "with_data", "first_at", "updated_at")


def _cols(alias: str, names: Sequence[str]) -> str:
    return ", ".join(f"{alias}.{n}" for n in names)


# one index probe per run, on (run_id, ...) then id order, LIMIT first + 1
_LISTINGS = text(
    f"""
    SELECT {_cols('x', LISTING_COLUMNS)}
    FROM unnest(:ids) AS k(id)
    CROSS JOIN LATERAL (
        SELECT {_cols('l', LISTING_COLUMNS)} FROM mining_listing l
        WHERE l.run_id = k.id AND l.id > :after AND (NOT :selected_only OR l.selected)
        ORDER BY l.id LIMIT :limit
    ) x
    """
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))

_PULLS = text(
    f"""
    SELECT {_cols('x', PULL_COLUMNS)}
    FROM unnest(:ids) AS k(id)
    CROSS JOIN LATERAL (
        SELECT {_cols('p', PULL_COLUMNS)} FROM kaggle_pull p
        WHERE p.run_id = k.id AND p.id > :after AND (CAST(:statuses AS text[]) IS NULL OR p.status = ANY(:statuses))
        ORDER BY p.id LIMIT :limit
    ) x
    """
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)), bindparam("statuses", type_=ARRAY(Text)))


def _grouped(rows) -> dict[int, list[Row]]:
    out: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        out[row.run_id].append(row)
    return out


def listings_of_runs(
    *, session, ids: Sequence[int], first: int, after: int | None = None, selected_only: bool = False
) -> dict[int, list[Row]]:
    """Up to ``first + 1`` listing rows of each run, in the order they were listed, after row id ``after``."""
    params = {"ids": list(ids), "after": after or 0, "limit": first + 1, "selected_only": selected_only}
    return _grouped(session.execute(_LISTINGS, params))


def pulls_of_runs(
    *, session, ids: Sequence[int], first: int, after: int | None = None, statuses: Sequence[str] | None = None
) -> dict[int, list[Row]]:
    """Up to ``first + 1`` ledger rows last worked on by each run, in the order first attempted."""
    params = {"ids": list(ids), "after": after or 0, "limit": first + 1,
              "statuses": list(statuses) if statuses else None}
    return _grouped(session.execute(_PULLS, params))


def count_runs(*, session) -> int:
    return int(session.execute(text("SELECT count(*) FROM mining_run")).scalar_one())
