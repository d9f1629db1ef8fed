"""Bulk export of a whole table (or a filtered part of it) as Parquet record batches or NDJSON lines.

GraphQL is the wrong tool for a million rows. Both formats stream ``COPY ... TO STDOUT``, so memory
stays flat whatever the size and Python does nothing per row. NDJSON: PostgreSQL writes each row as
JSON (``row_to_json``) and the lines go out as they come. Parquet: the ADBC PostgreSQL driver reads
``COPY ... (FORMAT binary)`` straight into Arrow columns, which pyarrow writes. JSON columns
(metadata, output data) are JSON text in Parquet, where a column needs one type, and nested JSON in
NDJSON. Lists (mime types, tracebacks, image hashes) are Parquet lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import threading
from contextlib import contextmanager
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
    hiding_folders,
    image_t,
    notebook_t,
    output_image_t,
    output_t,
    shown_location,
    source_t,
)

FORMATS = ("parquet", "ndjson")


@dataclass(frozen=True)
class Column:
    name: str
    sql: Any  # a column expression
    arrow: str  # int32 | int64 | string | strings (a list) | timestamp | binary
    json: bool = False  # JSONB: text in Parquet, nested in NDJSON
    public_sql: Any = None  # what the public server shows instead, when that differs (no folders)


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
            Column("locations", _agg_sources(source_t.c.location), "strings",
                   public_sql=_agg_sources(shown_location(source_t))),
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


def export_select(
    table: str, filter: Any = None, *, fmt: str = "ndjson", with_data: bool = False, hide_folders: bool = False
) -> Select:
    """The rows of an export, in key order, shaped for one way of reading them.

    * ``ndjson``: one JSON text per row (``row_to_json``): JSON columns nested, bytes in base64.
    * ``columns``: the plain columns (bytes, lists and JSON as they are), for Parquet through ADBC
      and for the benchmark's baseline.

    ``hide_folders`` (the public server): locations are file names and Kaggle refs, and the filter
    matches them as such (``filters.shown_location``).
    """
    spec = TABLES[table]
    if filter is not None and not isinstance(filter, spec.filter_class):
        raise TypeError(f"{table} takes a {spec.filter_class.__name__}, not {type(filter).__name__}")
    if fmt not in ("ndjson", "columns"):
        raise ValueError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if hide_folders:
        filter = hiding_folders(filter)
    conds: list[ColumnElement[bool]] = filter.where() if filter is not None else []
    exprs = []
    for c in _columns(spec, with_data):
        sql = c.public_sql if hide_folders and c.public_sql is not None else c.sql
        if fmt == "ndjson" and c.arrow == "binary":  # JSON has no bytes: base64 on one line
            b64 = func.encode(sql, literal_column("'base64'"))
            exprs.append(func.translate(b64, literal_column("E'\\n'"), "").label(c.name))
        else:
            exprs.append(sql.label(c.name))
    rows = select(*exprs).select_from(spec.table).where(*conds).order_by(spec.key)
    if fmt != "ndjson":
        return rows
    inner = rows.subquery("r")
    line = cast(func.row_to_json(literal_column("r")), Text) + literal_column("E'\\n'")
    return select(line.label("line")).select_from(inner)


def _copy_blocks(session: Session, stmt: Select, options: str = "", rows: Callable | None = None) -> Iterator[bytes]:
    """``COPY (stmt) TO STDOUT [options]``, as the blocks arrive, read ahead by a thread.

    COPY streams as fast as PostgreSQL writes. It takes no parameters: psycopg merges them into the
    statement on the client side, quoted. ``rows`` maps the messages (libpq hands over one row per
    message) before they are joined into ~1 MB blocks."""
    connection = session.connection()
    compiled = stmt.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
    dbapi = connection.connection.dbapi_connection
    sql, params = f"COPY ({compiled}) TO STDOUT {options}", compiled.params

    def read() -> Iterator[bytes]:
        with dbapi.cursor() as cursor, cursor.copy(sql, params) as copy:
            pending: list = []
            size = 0
            for block in (copy if rows is None else rows(copy)):
                pending.append(block)  # a fresh buffer per message: the join below is its only copy
                size += len(block)
                if size >= 1 << 20:
                    yield b"".join(pending)
                    pending, size = [], 0
            if pending:
                yield b"".join(pending)

    yield from _read_ahead(read(), depth=4)


_BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def _text_of_binary_rows(messages) -> Iterator:
    """The one (never null) column of each row of ``COPY ... (FORMAT binary)``: each message is a row
    (a 2-byte field count, a 4-byte length, the bytes), the first one behind the file header, then
    a 2-byte trailer. Binary COPY spares PostgreSQL the per-character escaping the text and CSV
    formats do, which is most of its cost on JSON lines."""
    started = False
    for message in messages:
        if not started:
            if bytes(message[:11]) != _BINARY_SIGNATURE:
                raise RuntimeError("export: COPY did not start with the binary header")
            message = message[19 + int.from_bytes(message[15:19], "big"):]
            started = True
            if not message:
                continue
        if len(message) == 2:  # the trailer
            continue
        if int.from_bytes(message[2:6], "big") != len(message) - 6:
            raise RuntimeError("export: a COPY message was not one row of one column")
        yield message[6:]


def _copy_lines(session: Session, stmt: Select) -> Iterator[bytes]:
    """COPY of a one-column SELECT of JSON text lines, ~1 MB at a time (cut anywhere: the bytes are
    what count)."""
    yield from _copy_blocks(session, stmt, "(FORMAT binary)", rows=_text_of_binary_rows)


def _read_ahead(chunks: Iterator[bytes], depth: int) -> Iterator[bytes]:
    """Run ``chunks`` in a thread, up to ``depth`` chunks ahead of the consumer (socket reads and
    Arrow release the GIL, so reading, parsing and sending overlap)."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        q.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)
        finally:
            chunks.close()

    thread = threading.Thread(target=produce, name="nbatlas-export", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


# idle ADBC connections by connection string (which holds the role and the startup options): a
# new PostgreSQL connection costs more than a small table's whole export
_IDLE_ADBC: dict[str, list] = {}
_IDLE_ADBC_LOCK = threading.Lock()
_IDLE_ADBC_MAX = 4


def _adbc_conninfo(session: Session) -> str:
    """The session's server, role and database, with its statement timeout and read-only-ness
    (public mode) as startup options."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    dbapi = session.connection().connection.dbapi_connection
    timeout, read_only = session.execute(
        select(func.current_setting("statement_timeout"), func.current_setting("transaction_read_only"))
    ).one()
    params = conninfo_to_dict(dbapi.info.dsn)
    if dbapi.info.password:
        params["password"] = dbapi.info.password
    params["options"] = f"-c statement_timeout={timeout}" + (
        " -c default_transaction_read_only=on" if read_only == "on" else ""
    )
    return make_conninfo(**params)


@contextmanager
def _adbc_connection(session: Session) -> Iterator:
    """An ADBC connection as the session's, from the idle ones when there is one; it goes back only
    when the export read everything (one left in the middle of a COPY is closed)."""
    import adbc_driver_postgresql.dbapi as adbc

    conninfo = _adbc_conninfo(session)
    with _IDLE_ADBC_LOCK:
        idle = _IDLE_ADBC.get(conninfo)
        conn = idle.pop() if idle else None
    if conn is None:
        conn = adbc.connect(conninfo, autocommit=True)
    finished = False
    try:
        yield conn
        finished = True
    finally:
        with _IDLE_ADBC_LOCK:
            idle = _IDLE_ADBC.setdefault(conninfo, [])
            keep = finished and len(idle) < _IDLE_ADBC_MAX
            if keep:
                idle.append(conn)
        if not keep:
            conn.close()


def close_idle_connections() -> None:
    """Close the idle ADBC connections (when the server's engine is disposed)."""
    with _IDLE_ADBC_LOCK:
        conns = [c for idle in _IDLE_ADBC.values() for c in idle]
        _IDLE_ADBC.clear()
    for conn in conns:
        conn.close()


def _literal_sql(session: Session, stmt: Select) -> str:
    """``stmt`` with its parameters merged in, quoted by psycopg (ADBC's COPY takes none)."""
    import psycopg

    connection = session.connection()
    compiled = stmt.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
    return psycopg.ClientCursor(connection.connection.dbapi_connection).mogrify(str(compiled), compiled.params)


def record_batches(
    *, session: Session, table: str, filter: Any = None, with_data: bool = False, hide_folders: bool = False
) -> Iterator:
    """The export as Arrow record batches (none when nothing matches).

    The ADBC PostgreSQL driver runs the SELECT as ``COPY ... TO STDOUT (FORMAT binary)`` and decodes
    it into Arrow columns in C++: typed columns, lists as lists, bytes as bytes, and nothing per row
    in Python. JSON columns arrive as Arrow's JSON extension type and are stored as their text."""
    import pyarrow as pa

    schema = arrow_schema(table, with_data=with_data)
    stmt = export_select(table, filter, fmt="columns", with_data=with_data, hide_folders=hide_folders)
    sql = _literal_sql(session, stmt)
    with _adbc_connection(session) as conn, conn.cursor() as cursor:
        cursor.execute(sql)
        reader = cursor.fetch_record_batch()
        try:
            for batch in reader:
                if batch.num_rows == 0:
                    continue
                columns = []
                for field in schema:
                    column = batch.column(field.name)
                    if isinstance(column.type, pa.ExtensionType):  # arrow.json: the JSON text
                        column = column.storage
                    columns.append(column if column.type == field.type else column.cast(field.type))
                yield pa.RecordBatch.from_arrays(columns, schema=schema)
        finally:
            reader.close()


def ndjson_chunks(
    *, session: Session, table: str, filter: Any = None, with_data: bool = False, hide_folders: bool = False
) -> Iterator[bytes]:
    """The export as NDJSON, one object per line, in chunks of about 1 MB (not cut at line ends)."""
    stmt = export_select(table, filter, fmt="ndjson", with_data=with_data, hide_folders=hide_folders)
    yield from _copy_lines(session, stmt)


# columns with few distinct values: dictionary-encoded. Elsewhere (sources, output data) building
# the dictionary costs several times the rest of the write and saves nothing
DICTIONARY_COLUMNS = ("cell_type", "output_type", "language", "kernel_name", "mime", "name", "source_kinds", "mime_types")
# min/max statistics where readers filter (DuckDB, polars and pyarrow skip row groups with them);
# on long texts they cost time and help no one
STATISTICS_COLUMNS = ("id", "notebook_id", "cell_id", "position", "sha256", "cell_type", "output_type", "mime",
                      "size_bytes", "width", "height", "n_cells", "language")


def parquet_writer(sink: Any, schema):
    import pyarrow.parquet as pq

    names = set(schema.names)
    return pq.ParquetWriter(
        sink, schema, compression="snappy",
        use_dictionary=[c for c in DICTIONARY_COLUMNS if c in names],
        write_statistics=[c for c in STATISTICS_COLUMNS if c in names],
    )


def allow_long_statements(*, session: Session, ms: int) -> None:
    """Raise this transaction's statement timeout: an export is one long COPY, not many short queries."""
    session.execute(select(func.set_config("statement_timeout", str(int(ms)), True)))


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

        with parquet_writer(sink, arrow_schema(table, with_data=with_data)) as writer:
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
    stmt = export_select(table, filter, fmt="columns")
    return str(stmt.compile(dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True}))


__all__ = ["FORMATS", "TABLES", "arrow_schema", "export_select", "ndjson_chunks", "record_batches", "write_file"]
