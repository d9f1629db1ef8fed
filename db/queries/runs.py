"""Reads over reproduction runs that the API needs beyond ``db.queries.reproduce``: counts for a
connection's ``totalCount`` and a run request's page of runs by keyset.

The writer, the batch loaders, ``RunFilter`` and the run facets are in ``db.queries.reproduce``.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlmodel import Session

from db.queries.reproduce import RunFilter, request_t, run_t


def count_runs(*, session: Session, filter: RunFilter | None = None) -> int:
    q = select(func.count()).select_from(run_t).where(*(filter.where() if filter else []))
    return int(session.execute(q).scalar_one())


def count_requests(*, session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(request_t)).scalar_one())
