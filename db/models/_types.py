from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Identity
from sqlalchemy.dialects.postgresql import JSONB


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def id_column() -> Column:
    return Column(BigInteger, Identity(always=False), primary_key=True)


def fk_column(target: str, *, nullable: bool = False, index: bool = True, ondelete: str = "CASCADE") -> Column:
    return Column(BigInteger, ForeignKey(target, ondelete=ondelete), nullable=nullable, index=index)


def jsonb_column(*, nullable: bool = True) -> Column:
    return Column(JSONB, nullable=nullable)


def timestamp_column(*, nullable: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=nullable, default=utcnow)
