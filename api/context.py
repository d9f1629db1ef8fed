"""Per-request context: the database, the page-size cap, and fresh DataLoaders.

Loaders live for one request only, so nothing is cached across requests (or users). Each batches
every ``load(key)`` made in one tick of the event loop into one ``db.queries`` call: a page of 100
notebooks with their cells, outputs and images is four statements, whatever the page size.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext

from api import types as t
from api.database import Database, UserError
from api.ids import decode_cursor, encode_cursor
from db.queries import browse


def _by_key(db: Database, fn: Callable, mapper: Callable) -> DataLoader:
    """Loader of one object per key (None when missing)."""

    async def load(keys: Sequence[Hashable]) -> list[Any]:
        rows = await db.read(fn, ids=list(keys))
        return [mapper(rows[k]) if k in rows else None for k in keys]

    return DataLoader(load_fn=load)


def _children(db: Database, fn: Callable, mapper: Callable, arg_names: tuple[str, ...] = ()) -> DataLoader:
    """Loader of a list of children per parent. Keys are a parent id, or ``(parent id, *args)`` when
    the list takes arguments (page size, cursor): one query per distinct set of arguments."""

    async def load(keys: Sequence[Hashable]) -> list[list[Any]]:
        groups: dict[tuple, list] = defaultdict(list)
        for key in keys:
            parent, args = (key[0], key[1:]) if arg_names else (key, ())
            groups[args].append(parent)
        found: dict[tuple, list[Any]] = {}
        for args, parents in groups.items():
            rows = await db.read(fn, ids=list(dict.fromkeys(parents)), **dict(zip(arg_names, args)))
            for parent in parents:
                found[(parent, *args)] = [mapper(r) for r in rows.get(parent, ())]
        return [found[key if arg_names else (key,)] for key in keys]

    return DataLoader(load_fn=load)


class Loaders:
    def __init__(self, db: Database) -> None:
        self.notebook = _by_key(db, browse.notebooks_by_id, t.Notebook.from_row)
        self.cell = _by_key(db, browse.cells_by_id, t.Cell.from_row)
        self.output = _by_key(db, browse.outputs_by_id, t.Output.from_row)
        self.source = _by_key(db, browse.sources_by_id, t.Source.from_row)
        self.image = _by_key(db, browse.images_by_sha256, t.Image.from_row)
        self.cells_of_notebook = _children(
            db, browse.cells_of_notebooks, t.Cell.from_row, ("first", "after_position", "cell_types")
        )
        self.outputs_of_cell = _children(db, browse.outputs_of_cells, t.Output.from_row)
        self.images_of_output = _children(db, browse.images_of_outputs, t.Image.from_row)
        self.sources_of_notebook = _children(db, browse.sources_of_notebooks, t.Source.from_row)
        self.images_of_notebook = _children(db, browse.images_of_notebooks, t.Image.from_row, ("first",))
        self.outputs_of_image = _children(db, browse.outputs_of_images, t.Output.from_row, ("first",))


class Context(BaseContext):
    def __init__(self, db: Database, *, max_page_size: int, default_page_size: int = 20) -> None:
        super().__init__()
        self.db = db
        self.max_page_size = max_page_size
        self.default_page_size = min(default_page_size, max_page_size)
        self.loaders = Loaders(db)

    def page_size(self, first: int | None, *, default: int | None = None) -> int:
        if first is None:
            return default if default is not None else self.default_page_size
        if not 1 <= first <= self.max_page_size:
            raise UserError(
                f"first must be between 1 and {self.max_page_size} (this server's page size limit), not {first}: "
                "page through the rest with `after: pageInfo.endCursor`, or use /export for whole tables"
            )
        return first

    @staticmethod
    def cursor(after: str | None, kind: str, types: tuple[type, ...]) -> tuple | None:
        return decode_cursor(after, kind, types)

    @staticmethod
    def encode_cursor(kind: str, *key: object) -> str:
        return encode_cursor(kind, *key)
