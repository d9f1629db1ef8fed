"""Global ids (``node(id:)``) and opaque keyset cursors.

A global id is base64("Type:key"), as Relay servers write them. A cursor is base64url of a small
JSON list ``[kind, *sort key]``: opaque to clients, but checked on the way back in so a cursor from
one list cannot be replayed against another.
"""

from __future__ import annotations

import base64
import binascii

import orjson

from api.database import UserError

NODE_TYPES = ("Notebook", "Cell", "Output", "Image", "Source", "Run", "RunRequest")


def global_id(type_name: str, key: object) -> str:
    return base64.b64encode(f"{type_name}:{key}".encode()).decode("ascii")


def parse_global_id(value: str, *, expect: str | None = None) -> tuple[str, str]:
    try:
        type_name, key = base64.b64decode(value.encode("ascii"), validate=True).decode().split(":", 1)
    except (ValueError, UnicodeError, binascii.Error):
        raise UserError(f"{value!r} is not an nbatlas id (ids come from the id field of an object)") from None
    if type_name not in NODE_TYPES:
        raise UserError(f"{value!r} is not an nbatlas id")
    if expect is not None and type_name != expect:
        raise UserError(f"{value!r} is the id of a {type_name}, not of a {expect}")
    return type_name, key


def db_id(value: str, expect: str) -> int:
    """The row id behind a global id of type ``expect``; a bare number is accepted too."""
    if value.isdigit():
        return int(value)
    _, key = parse_global_id(value, expect=expect)
    if not key.isdigit():
        raise UserError(f"{value!r} is not a valid {expect} id")
    return int(key)


def encode_cursor(kind: str, *key: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([kind, *key])).decode("ascii")


def decode_cursor(cursor: str | None, kind: str, types: tuple[type, ...]) -> tuple | None:
    if cursor is None:
        return None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error, orjson.JSONDecodeError):
        data = None
    if (
        not isinstance(data, list)
        or len(data) != len(types) + 1
        or data[0] != kind
        or not all(isinstance(v, t) and not isinstance(v, bool) for v, t in zip(data[1:], types))
    ):
        raise UserError(f"invalid cursor {cursor!r}: pass the endCursor (or an edge's cursor) of this same list")
    return tuple(data[1:])
