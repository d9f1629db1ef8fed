"""Load parsed notebooks into PostgreSQL in batches with ``COPY``, in the main process over the
ingest's session or in each parse worker over its own connection (``parse_and_load``).

One batch is one transaction: a notebook lands with all its cells, outputs and images, or not at all.
Ids come from the tables' own identity sequences (reserved in one round trip), so cells, outputs and
new images are copied straight into the real tables (images in binary format). Sources and problems
are sent as arrays to one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`` each: a
place or problem seen before is simply not added again.

A concurrent ingest that commits the same notebook first makes our ``COPY`` fail with a unique
violation: the batch is rolled back and retried, and that notebook is then found present. Any other
database error is isolated by loading the batch's notebooks one by one; the one that fails becomes a
``load`` problem and the others land.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
import psycopg
from sqlmodel import Session

from db.queries.codec import UNSTORABLE
from ingest.parse import FileProblem, ParsedNotebook

log = logging.getLogger(__name__)

NOTEBOOK_COLUMNS = (
    "id, sha256, size_bytes, nbformat, nbformat_minor, original_nbformat, kernel_name, language, metadata, "
    "n_cells, n_outputs, n_image_outputs, extra, text_escape, run_id, ingested_at"
)
CELL_COLUMNS = "id, notebook_id, position, cell_type, cell_key, source, execution_count, metadata, attachments, extra"
OUTPUT_COLUMNS = (
    "id, cell_id, notebook_id, position, output_type, mime_types, data, metadata, execution_count, "
    "name, text, ename, evalue, traceback, extra"
)

# Sources and problems are a few rows per batch: sent as arrays and unnested, where temporary tables
# (ON COMMIT DELETE ROWS) cost a catalog look-up per batch and a truncation per commit
_INSERT_SOURCES = (
    "INSERT INTO source (notebook_id, kind, location, member, fetched_at, run_id) "
    "SELECT n.id, s.kind, s.location, s.member, %s, %s "
    "FROM unnest(%s::char(64)[], %s::text[], %s::text[], %s::text[]) AS s (sha256, kind, location, member) "
    "JOIN notebook n ON n.sha256 = s.sha256 "
    "ON CONFLICT ON CONSTRAINT uq_source_place DO NOTHING"
)
_INSERT_PROBLEMS = (
    "INSERT INTO problem (run_id, location, member, file_sha256, notebook_id, stage, severity, reason, details, found_at) "
    "SELECT %s, p.location, p.member, p.file_sha256, n.id, p.stage, p.severity, p.reason, p.details::jsonb, %s "
    "FROM unnest(%s::text[], %s::text[], %s::char(64)[], %s::text[], %s::text[], %s::text[], %s::text[]) "
    "AS p (location, member, file_sha256, stage, severity, reason, details) "
    "LEFT JOIN notebook n ON p.severity = 'warning' AND n.sha256 = p.file_sha256 "
    "ON CONFLICT DO NOTHING"
)


# what a concurrent ingest of the same files can make a batch fail with; the batch is simply retried
_RACES = (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


@dataclass(frozen=True, slots=True)
class SourceRow:
    sha256: str
    kind: str
    location: str
    member: str


@dataclass
class LoadResult:
    added: list[str] = field(default_factory=list)  # sha256 of notebooks inserted
    present: list[str] = field(default_factory=list)  # sha256 found already there (a concurrent ingest)
    sources_added: int = 0
    failed: list[FileProblem] = field(default_factory=list)  # notebooks the database refused


class _Direct:
    """A worker's own psycopg connection, with the two session methods the loader uses."""

    def __init__(self, connection: psycopg.Connection):
        self.connection = connection

    def commit(self) -> None:
        self.connection.commit()

    def rollback(self) -> None:
        self.connection.rollback()


def _clean(text: str | None) -> str | None:
    return None if text is None else UNSTORABLE.sub("\ufffd", text)


class BatchLoader:
    """Loads batches over the ingest's session (main process) or over a worker's own connection."""

    def __init__(self, session: Session | psycopg.Connection, run_id: int, analyzer: Any = None, retries: int = 3):
        self.session = session if isinstance(session, Session) else _Direct(session)
        self.run_id = run_id
        self.load_analysis = getattr(analyzer, "load", None)
        self.retries = retries
        self.images_known: set[str] = set()  # committed by this loader: never sent twice
        self.sequences: dict[str, int] = {}  # table -> oid of its id sequence

    def _raw(self) -> psycopg.Connection:
        if isinstance(self.session, _Direct):
            return self.session.connection
        return self.session.connection().connection.driver_connection

    def existing(self, shas: list[str]) -> set[str]:
        if not shas:
            return set()
        with self._raw().cursor() as cur:
            cur.execute("SELECT sha256 FROM notebook WHERE sha256 = ANY(%s)", (shas,))
            return {row[0] for row in cur}

    def update_run(self, **counters: Any) -> None:
        sets = ", ".join(f"{name} = %({name})s" for name in counters)
        with self._raw().cursor() as cur:
            cur.execute(f"UPDATE ingest_run SET {sets} WHERE id = %(run_id)s", {**counters, "run_id": self.run_id})

    def load(self, notebooks: list[ParsedNotebook], sources: list[SourceRow], problems: list[FileProblem], counters: dict[str, Any] | None = None) -> LoadResult:
        """Load one batch and commit it."""
        for attempt in range(self.retries):
            try:
                result, images = self._load_once(notebooks, sources, problems, counters)
                self.session.commit()
                self.images_known |= images
                return result
            except _RACES:
                self.session.rollback()
                log.info("a concurrent ingest added some of these notebooks; retrying the batch (%d)", attempt + 1)
            except psycopg.Error:
                self.session.rollback()
                if len(notebooks) <= 1:
                    break
                return self._load_one_by_one(notebooks, sources, problems, counters)
        return self._load_one_by_one(notebooks, sources, problems, counters)

    def _load_one_by_one(self, notebooks, sources, problems, counters) -> LoadResult:
        total = LoadResult()
        for nb in notebooks:
            for attempt in range(self.retries):
                try:
                    result, images = self._load_once([nb], [], nb.warnings, None)
                    self.session.commit()
                    self.images_known |= images
                    total.added += result.added
                    total.present += result.present
                    break
                except _RACES:
                    self.session.rollback()  # lost a race: the retry finds the notebook present
                except psycopg.Error as exc:
                    self.session.rollback()
                    reason = f"the database refused this notebook: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    total.failed.append(FileProblem(nb.location, nb.member, "load", reason, nb.sha256))
                    break
        own = {id(w) for nb in notebooks for w in nb.warnings}
        rest = [p for p in problems if id(p) not in own] + total.failed
        result, _ = self._load_once([], sources, rest, counters)
        self.session.commit()
        total.sources_added = result.sources_added
        return total

    def _load_once(self, notebooks, sources, problems, counters) -> tuple[LoadResult, set[str]]:
        result = LoadResult()
        raw = self._raw()
        now = datetime.now(timezone.utc)
        images_sent: set[str] = set()
        with raw.cursor() as cur:
            unique: dict[str, ParsedNotebook] = {}
            for nb in notebooks:
                unique.setdefault(nb.sha256, nb)
            present = set()
            if unique:
                cur.execute("SELECT sha256 FROM notebook WHERE sha256 = ANY(%s)", (list(unique),))
                present = {row[0] for row in cur}
            # in hash order, so two ingests of the same files take their locks in the same order
            new = [unique[sha] for sha in sorted(unique) if sha not in present]
            result.present = sorted(present)
            result.added = [nb.sha256 for nb in new]
            if new:
                images_sent = self._copy_notebooks(cur, new, now)
            if sources:
                cur.execute(
                    _INSERT_SOURCES,
                    (
                        now,
                        self.run_id,
                        [s.sha256 for s in sources],
                        [s.kind for s in sources],
                        [_clean(s.location) for s in sources],
                        [_clean(s.member) for s in sources],
                    ),
                )
                result.sources_added = cur.rowcount
            if problems:
                details = [
                    None if p.details is None else _clean(orjson.dumps(p.details, default=str).decode("utf-8"))
                    for p in problems
                ]
                cur.execute(
                    _INSERT_PROBLEMS,
                    (
                        self.run_id,
                        now,
                        [_clean(p.location) for p in problems],
                        [_clean(p.member) for p in problems],
                        [p.file_sha256 for p in problems],
                        [p.stage for p in problems],
                        [p.severity for p in problems],
                        [_clean(p.reason) for p in problems],
                        details,
                    ),
                )
            if counters:
                sets = ", ".join(f"{name} = %({name})s" for name in counters)
                cur.execute(f"UPDATE ingest_run SET {sets} WHERE id = %(run_id)s", {**counters, "run_id": self.run_id})
        return result, images_sent

    def _ids(self, cur, table: str, n: int) -> list[int]:
        if n == 0:
            return []
        sequence = self.sequences.get(table)
        if sequence is None:
            # looked up once: pg_get_serial_sequence in the query below would run (a pg_depend scan)
            # once per id, a few percent of the server's time of an ingest
            cur.execute("SELECT pg_get_serial_sequence(%s, 'id')::regclass::oid", (table,))
            sequence = self.sequences[table] = cur.fetchone()[0]
        cur.execute("SELECT array_agg(nextval(%s::oid)) FROM generate_series(1, %s)", (sequence, n))
        return cur.fetchone()[0]

    def _copy_notebooks(self, cur, new: list[ParsedNotebook], now: datetime) -> set[str]:
        # notebook row: ..., n_cells (6), n_outputs (7), ...
        notebook_ids = self._ids(cur, "notebook", len(new))
        cell_ids = iter(self._ids(cur, "cell", sum(nb.notebook[6] for nb in new)))
        output_ids = iter(self._ids(cur, "output", sum(nb.notebook[7] for nb in new)))
        run_id = self.run_id
        analysis_items = []
        known: set[str] = set()
        output_images: list[tuple] = []
        images: dict[str, tuple] = {}
        with cur.copy(f"COPY notebook ({NOTEBOOK_COLUMNS}) FROM STDIN") as copy:
            for nid, nb in zip(notebook_ids, new):
                copy.write_row((nid, nb.sha256, nb.size_bytes, *nb.notebook, run_id, now))
        per_notebook_cells: list[list[int]] = []
        with cur.copy(f"COPY cell ({CELL_COLUMNS}) FROM STDIN") as copy:
            for nid, nb in zip(notebook_ids, new):
                ids = [next(cell_ids) for _ in range(nb.notebook[6])]
                per_notebook_cells.append(ids)
                if ids:  # the worker rendered the rows; only the ids go in front
                    copy.write(b"".join([b"%d\t%d\t%s\n" % (cid, nid, row) for cid, row in zip(ids, nb.cells.split(b"\n"))]))
        with cur.copy(f"COPY output ({OUTPUT_COLUMNS}) FROM STDIN") as copy:
            for nid, nb, cids in zip(notebook_ids, new, per_notebook_cells):
                oids = [next(output_ids) for _ in range(nb.notebook[7])]
                if oids:
                    rows = []
                    for oid, row in zip(oids, nb.outputs.split(b"\n")):
                        cell_position, rest = row.split(b"\t", 1)
                        rows.append(b"%d\t%d\t%d\t%s\n" % (oid, cids[int(cell_position)], nid, rest))
                    copy.write(b"".join(rows))
                for index, mime, sha, layout in nb.output_images:
                    output_images.append((oids[index], mime, sha, layout))
                for image in nb.images:
                    if image[0] not in self.images_known:
                        images.setdefault(image[0], image)
                if self.load_analysis is not None and nb.analysis is not None:
                    analysis_items.append((nid, cids, nb.analysis))
        if images:
            # new images only, copied straight into the table in binary (no hex round trip of the bytes);
            # an image a concurrent ingest adds meanwhile fails the COPY and the batch is retried
            cur.execute("SELECT sha256 FROM image WHERE sha256 = ANY(%s)", (list(images),))
            known = {row[0] for row in cur.fetchall()}
            for sha in known:
                images.pop(sha, None)
        if images:
            images = dict(sorted(images.items()))
            with cur.copy(
                "COPY image (sha256, mime, data, svg, size_bytes, width, height, created_at) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["text", "text", "bytea", "text", "int4", "int4", "int4", "timestamptz"])
                for image in images.values():
                    copy.write_row((*image, now))
        if output_images:
            with cur.copy("COPY output_image (output_id, mime, image_sha256, b64_layout) FROM STDIN") as copy:
                for row in output_images:
                    copy.write_row(row)
        if analysis_items:
            self.load_analysis(connection=cur.connection, items=analysis_items)
        return set(images) | known


# --- loading in the parse workers ----------------------------------------------------------------------
#
# When the ingest's session has committed its run (so other connections see it), each parse worker
# also loads what it parsed, over its own connection: the database work of an ingest (COPY parsing,
# the full-text vectors, index updates) then runs on as many backends as there are workers instead
# of one, and the parsed rows (image bytes included) never travel back to the main process. One task
# of a few files is one transaction, so a killed ingest still loses at most the tasks in flight; a
# notebook another worker or another ingest commits first is found present on the batch's retry.


@dataclass(slots=True)
class TaskResult:
    """What one worker task did, for the main process's report (no rows: those are in the database)."""

    files: int = 0
    bytes_read: int = 0
    added: int = 0
    present: int = 0  # places whose notebook was in the database already (or earlier in this task)
    sources_added: int = 0
    problems: list[tuple[str, str, str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str, str, str]] = field(default_factory=list)


_conninfo: str | None = None
_run_id: int | None = None
_worker_loader: BatchLoader | None = None


def init_loading_worker(limits: Any, analyzer: Any, conninfo: str, run_id: int) -> None:
    global _conninfo, _run_id, _worker_loader
    from ingest import parse

    parse.init_worker(limits, analyzer)
    _conninfo, _run_id, _worker_loader = conninfo, run_id, None


def _loader() -> BatchLoader:
    global _worker_loader
    if _worker_loader is None:
        from multiprocessing import util

        from ingest import parse

        assert _conninfo is not None and _run_id is not None, "init_loading_worker was not called"
        connection = psycopg.connect(_conninfo)
        # pool workers leave through os._exit: say goodbye to the server instead of dropping the socket
        util.Finalize(connection, connection.close, exitpriority=10)
        _worker_loader = BatchLoader(connection, _run_id, parse._analyzer)
    return _worker_loader


def parse_and_load(places: list[Any]) -> TaskResult:
    """One task of a loading worker: read, hash, skip what the database has, parse the rest, load it all."""
    import hashlib

    from ingest import parse

    loader = _loader()
    limits, analyzer = parse._limits, parse._analyzer
    assert limits is not None
    out = TaskResult(files=len(places))
    problems: list[FileProblem] = []
    ready = []
    for place in places:
        if place.data is None:
            try:
                place.data = parse.read_file(place.path, limits.max_file_bytes)
            except parse.NotANotebook as exc:
                problems.append(FileProblem(place.location, place.member, exc.stage, exc.reason, details=exc.details))
                continue
            except OSError as exc:
                problems.append(FileProblem(place.location, place.member, "read", f"cannot read the file: {exc.strerror or exc}"))
                continue
        out.bytes_read += len(place.data)
        if not place.sha256:
            place.sha256 = hashlib.sha256(place.data).hexdigest()
        ready.append(place)
    present = loader.existing(list({place.sha256 for place in ready}))
    loader.session.rollback()  # no transaction left open between tasks
    results: dict[str, ParsedNotebook | FileProblem] = {}
    notebooks: list[ParsedNotebook] = []
    sources: list[SourceRow] = []
    for place in ready:
        sha = place.sha256
        if sha in present:
            out.present += 1
            sources.append(SourceRow(sha, place.kind, place.location, place.member))
            continue
        result = results.get(sha)
        if result is None:
            result = results[sha] = parse.parse_place(place, limits, analyzer)
            if isinstance(result, ParsedNotebook):
                notebooks.append(result)
                problems.extend(result.warnings)
            else:
                problems.append(result)
        elif isinstance(result, ParsedNotebook):
            out.present += 1  # the same bytes earlier in this task
        else:  # the same bytes failed earlier in this task: the same problem, at this place too
            problems.append(FileProblem(place.location, place.member, result.stage, result.reason, sha, details=result.details))
        place.data = None
        if isinstance(result, ParsedNotebook):
            sources.append(SourceRow(sha, place.kind, place.location, place.member))
    loaded = loader.load(notebooks, sources, problems)
    out.added = len(loaded.added)
    out.present += len(loaded.present)
    out.sources_added = loaded.sources_added
    for p in problems + loaded.failed:
        (out.problems if p.severity == "error" else out.warnings).append((p.location, p.member, p.stage, p.reason))
    return out
