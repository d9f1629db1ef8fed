"""Bulk export of a whole table (or a filtered part of it) as Parquet record batches or NDJSON lines.

GraphQL is the wrong tool for a million rows. Export reads through a server-side cursor, so memory
stays flat whatever the size, and hands out Arrow record batches (for Parquet) or ready-made JSON
lines (PostgreSQL writes the JSON itself with ``row_to_json``: one text value per row to move through
Python). JSON columns (metadata, output data) are JSON text in Parquet, where a column needs one type,
and nested JSON in NDJSON. Lists (mime types, tracebacks, image hashes) are Parquet lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, cast, func, literal_column, select
from sqlalchemy.types import Text
from sqlmodel import Session

from db.queries.filters import (
    CellFilter,
    ImageFilter,
    NotebookFilter,
    OutputFilter,
    cell_t,
    image_t,
    notebook_t,
    output_image_t,
    output_t,
    source_t,
)

FORMATS = ("parquet", "ndjson")


@dataclass(frozen=True)
class Column:
    name: str
    sql: Any  # a column expression
    arrow: str  # int32 | int64 | string | strings (a list) | timestamp | binary
    json: bool = False  # JSONB: text in Parquet, nested in NDJSON


def _arrow_type(name: str):
    import pyarrow as pa  # imported on first export only: the API starts faster without it

    return {
        "int32": pa.int32(), "int64": pa.int64(), "string": pa.string(), "strings": pa.list_(pa.string()),
        "timestamp": pa.timestamp("us", tz="UTC"), "binary": pa.binary(),
    }[name]


@dataclass(frozen=True)
class ExportTable:
    name: str
    table: Any
    key: Any  # the order of the rows
    columns: tuple[Column, ...]
    filter_class: type
    data_column: Column | None = None  # bulky bytes, only on request


def _agg_sources(field):
    return (
        select(func.array_agg(field).filter(field.isnot(None)))  # never NULL inside
        .where(source_t.c.notebook_id == notebook_t.c.id)
        .scalar_subquery()
    )


TABLES: dict[str, ExportTable] = {
    "notebooks": ExportTable(
        "notebooks",
        notebook_t,
        notebook_t.c.id,
        (
            Column("id", notebook_t.c.id, "int64"),
            Column("sha256", notebook_t.c.sha256, "string"),
            Column("size_bytes", notebook_t.c.size_bytes, "int64"),
            Column("nbformat", notebook_t.c.nbformat, "int32"),
            Column("nbformat_minor", notebook_t.c.nbformat_minor, "int32"),
            Column("original_nbformat", notebook_t.c.original_nbformat, "int32"),
            Column("kernel_name", notebook_t.c.kernel_name, "string"),
            Column("language", notebook_t.c.language, "string"),
            Column("n_cells", notebook_t.c.n_cells, "int32"),
            Column("n_outputs", notebook_t.c.n_outputs, "int32"),
            Column("n_image_outputs", notebook_t.c.n_image_outputs, "int32"),
            Column("source_kinds", _agg_sources(source_t.c.kind), "strings"),
            Column("locations", _agg_sources(source_t.c.location), "strings"),
            Column("ingested_at", notebook_t.c.ingested_at, "timestamp"),
            Column("metadata", notebook_t.c.metadata, "string", json=True),
        ),
        NotebookFilter,
    ),
    "cells": ExportTable(
        "cells",
        cell_t,
        cell_t.c.id,
        (
            Column("id", cell_t.c.id, "int64"),
            Column("notebook_id", cell_t.c.notebook_id, "int64"),
            Column("position", cell_t.c.position, "int32"),
            Column("cell_type", cell_t.c.cell_type, "string"),
            Column("cell_key", cell_t.c.cell_key, "string"),
            Column("execution_count", cell_t.c.execution_count, "int32"),
            Column("source", cell_t.c.source, "string"),
            Column("metadata", cell_t.c.metadata, "string", json=True),
        ),
        CellFilter,
    ),
    "outputs": ExportTable(
        "outputs",
        output_t,
        output_t.c.id,
        (
            Column("id", output_t.c.id, "int64"),
            Column("cell_id", output_t.c.cell_id, "int64"),
            Column("notebook_id", output_t.c.notebook_id, "int64"),
            Column("position", output_t.c.position, "int32"),
            Column("output_type", output_t.c.output_type, "string"),
            Column("mime_types", output_t.c.mime_types, "strings"),
            Column(
                "image_sha256s",
                select(func.array_agg(cast(output_image_t.c.image_sha256, Text)))
                .where(output_image_t.c.output_id == output_t.c.id)
                .scalar_subquery(),
                "strings",
            ),
            Column("execution_count", output_t.c.execution_count, "int32"),
            Column("name", output_t.c.name, "string"),
            Column("text", output_t.c.text, "string"),
            Column("ename", output_t.c.ename, "string"),
            Column("evalue", output_t.c.evalue, "string"),
            Column("traceback", output_t.c.traceback, "strings"),
            Column("data", output_t.c.data, "string", json=True),
            Column("metadata", output_t.c.metadata, "string", json=True),
        ),
        OutputFilter,
    ),
    "images": ExportTable(
        "images",
        image_t,
        image_t.c.sha256,
        (
            Column("sha256", cast(image_t.c.sha256, Text), "string"),
            Column("mime", image_t.c.mime, "string"),
            Column("size_bytes", image_t.c.size_bytes, "int64"),
            Column("width", image_t.c.width, "int32"),
            Column("height", image_t.c.height, "int32"),
            Column(
                "n_outputs",
                select(func.count()).where(output_image_t.c.image_sha256 == image_t.c.sha256).scalar_subquery(),
                "int64",
            ),
        ),
        ImageFilter,
        # the bytes the SHA-256 is computed over (an SVG's UTF-8 text)
        data_column=Column(
            "data",
            func.coalesce(image_t.c.data, func.convert_to(image_t.c.svg, literal_column("'UTF8'"))),
            "binary",
        ),
    ),
}


def _columns(table: ExportTable, with_data: bool) -> tuple[Column, ...]:
    if with_data and table.data_column is not None:
        return (*table.columns, table.data_column)
    return table.columns


def arrow_schema(table: str, *, with_data: bool = False):
    """The Arrow (Parquet) schema of an export."""
    import pyarrow as pa

    return pa.schema([pa.field(c.name, _arrow_type(c.arrow)) for c in _columns(TABLES[table], with_data)])


def export_select(table: str, filter: Any = None, *, fmt: str = "parquet", with_data: bool = False) -> Select:
    """The rows of an export, in key order. Parquet: one column per field; NDJSON: one JSON text per row."""
    spec = TABLES[table]
    if filter is not None and not isinstance(filter, spec.filter_class):
        raise TypeError(f"{table} takes a {spec.filter_class.__name__}, not {type(filter).__name__}")
    conds: list[ColumnElement[bool]] = filter.where() if filter is not None else []
    columns = _columns(spec, with_data)
    if fmt == "parquet":
        exprs = [(cast(c.sql, Text) if c.json else c.sql).label(c.name) for c in columns]
        return select(*exprs).select_from(spec.table).where(*conds).order_by(spec.key)
    if fmt == "ndjson":
        exprs = []
        for c in columns:
            if c.arrow == "binary":  # JSON has no bytes: base64 on one line
                exprs.append(func.translate(func.encode(c.sql, literal_column("'base64'")), literal_column("E'\\n'"), "").label(c.name))
            else:
                exprs.append(c.sql.label(c.name))
        inner = select(*exprs).select_from(spec.table).where(*conds).order_by(spec.key).subquery("r")
        return select(cast(func.row_to_json(literal_column("r")), Text).label("line")).select_from(inner)
    raise ValueError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")


def _stream(session: Session, stmt: Select, batch_rows: int):
    result = session.execute(stmt, execution_options={"stream_results": True, "yield_per": batch_rows})
    try:
        yield from result.partitions(batch_rows)
    finally:
        result.close()


def record_batches(
    *, session: Session, table: str, filter: Any = None, with_data: bool = False, batch_rows: int = 5000
) -> Iterator:
    """The export as Arrow record batches of at most ``batch_rows`` rows (none when nothing matches)."""
    import pyarrow as pa

    schema = arrow_schema(table, with_data=with_data)
    stmt = export_select(table, filter, fmt="parquet", with_data=with_data)
    for rows in _stream(session, stmt, batch_rows):
        columns = list(zip(*rows))
        yield pa.RecordBatch.from_arrays(
            [pa.array(col, type=field.type) for col, field in zip(columns, schema)], schema=schema
        )


def ndjson_chunks(
    *, session: Session, table: str, filter: Any = None, with_data: bool = False, batch_rows: int = 5000
) -> Iterator[bytes]:
    """The export as NDJSON, one object per line, in chunks of at most ``batch_rows`` lines."""
    stmt = export_select(table, filter, fmt="ndjson", with_data=with_data)
    for rows in _stream(session, stmt, batch_rows):
        yield ("\n".join(row[0] for row in rows) + "\n").encode("utf-8")


def count_rows(*, session: Session, table: str, filter: Any = None) -> int:
    """How many rows the export of ``table`` with ``filter`` has (for a progress bar's total)."""
    spec = TABLES[table]
    q = select(func.count()).select_from(spec.table).where(*(filter.where() if filter is not None else []))
    return int(session.execute(q).scalar_one())


def write_file(
    *,
    session: Session,
    table: str,
    sink: Any,
    fmt: str = "parquet",
    filter: Any = None,
    with_data: bool = False,
    on_rows: Callable[[int], None] | None = None,
) -> int:
    """Write the export to ``sink`` (a path, or a binary file for NDJSON); returns the row count.
    ``on_rows(n)`` is called after each batch (progress bars)."""
    rows = 0
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetWriter(sink, arrow_schema(table, with_data=with_data), compression="snappy") as writer:
            for batch in record_batches(session=session, table=table, filter=filter, with_data=with_data):
                writer.write_batch(batch)
                rows += batch.num_rows
                if on_rows:
                    on_rows(batch.num_rows)
        return rows
    if fmt != "ndjson":
        raise ValueError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    own = isinstance(sink, str | Path)
    f = open(sink, "wb") if own else sink
    try:
        for chunk in ndjson_chunks(session=session, table=table, filter=filter, with_data=with_data):
            f.write(chunk)
            n = chunk.count(b"\n")
            rows += n
            if on_rows:
                on_rows(n)
    finally:
        if own:
            f.close()
    return rows


def copy_baseline_sql(session: Session, table: str, filter: Any = None) -> str:
    """The export's Parquet SELECT as literal SQL, for ``COPY (...) TO STDOUT`` (benchmarks only)."""
    stmt = export_select(table, filter, fmt="parquet")
    return str(stmt.compile(dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True}))


__all__ = ["FORMATS", "TABLES", "arrow_schema", "export_select", "ndjson_chunks", "record_batches", "write_file"]
