"""Reproductions in SQL: requests, the one-result-per-(request, notebook) writer, and batch reads.

Writers are used by the reproduce jobs (``ingest.reproduce.jobs``); readers are batch functions
``f(*, session, ids)`` for the API's DataLoaders and keyset pages (``WHERE id > :after ORDER BY id
LIMIT first + 1``), plus the facets and the Pimentel et al. summary. Nothing here knows about
GraphQL, Docker or Procrastinate's Python API (only its tables, in the ``procrastinate`` schema).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Row, bindparam, func, insert, or_, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.types import BigInteger
from sqlmodel import Session

from db import vocab
from db.models import Image, Notebook, Run, RunCell, RunOutput, RunOutputImage, RunRequest
from db.queries.filters import NotebookFilter, _Filter

run_t = Run.__table__
run_cell_t = RunCell.__table__
run_output_t = RunOutput.__table__
run_output_image_t = RunOutputImage.__table__
request_t = RunRequest.__table__
image_t = Image.__table__
notebook_t = Notebook.__table__

_IDS = bindparam("ids", type_=ARRAY(BigInteger))
PROCRASTINATE = "procrastinate"  # the schema migration 0005_reproduce puts Procrastinate's tables in
QUEUE = "reproduce"

RUN_COLUMNS = tuple(c.name for c in run_t.columns)
RUN_LIST_COLUMNS = tuple(c for c in RUN_COLUMNS if c not in ("traceback", "log_tail", "environment"))
RUN_CELL_COLUMNS = tuple(c.name for c in run_cell_t.columns)
RUN_OUTPUT_COLUMNS = tuple(c.name for c in run_output_t.columns)


def _grouped(rows: Iterable[Row], key: str) -> dict[Any, list[Row]]:
    out: dict[Any, list[Row]] = defaultdict(list)
    for row in rows:
        out[getattr(row, key)].append(row)
    return out


# --- requests and selection -------------------------------------------------------------------------

def select_notebook_ids(
    *,
    session: Session,
    filter: NotebookFilter | None = None,
    limit: int | None = None,
    sample_seed: int | None = None,
    python_only: bool = True,
) -> list[int]:
    """The notebooks a reproduce request covers: the filter's matches in id order, or a seeded
    random sample of them (the same seed on the same corpus gives the same notebooks).
    ``python_only``: notebooks whose language is Python or unknown (old notebooks often say nothing)."""
    q = select(notebook_t.c.id).where(*(filter.where() if filter else []))
    if python_only:
        q = q.where(or_(notebook_t.c.language.is_(None), func.lower(notebook_t.c.language).like("python%")))
    if sample_seed is not None:
        q = q.order_by(func.md5(func.concat(notebook_t.c.sha256, str(sample_seed))))
    else:
        q = q.order_by(notebook_t.c.id)
    if limit is not None:
        q = q.limit(limit)
    return list(session.execute(q).scalars())


def create_request(
    *,
    session: Session,
    backend: str,
    image: str,
    timeout_s: float,
    limits: dict[str, Any],
    data_dir: str | None,
    selection: dict[str, Any],
    n_notebooks: int,
    note: str | None = None,
) -> int:
    row = session.execute(
        insert(request_t).values(
            created_at=datetime.now(timezone.utc), backend=backend, image=image, timeout_s=timeout_s,
            limits=limits, data_dir=data_dir, selection=selection, n_notebooks=n_notebooks, note=note,
        ).returning(request_t.c.id)
    ).one()
    return int(row[0])


def request(*, session: Session, id: int) -> Row | None:
    return session.execute(select(request_t).where(request_t.c.id == id)).first()


def latest_request_id(*, session: Session) -> int | None:
    return session.execute(select(func.max(request_t.c.id))).scalar()


def run_exists(*, session: Session, request_id: int, notebook_id: int) -> bool:
    q = select(run_t.c.id).where(run_t.c.request_id == request_id, run_t.c.notebook_id == notebook_id)
    return session.execute(q).first() is not None


def notebook_facts(*, session: Session, id: int) -> Row | None:
    """What a run needs to know about a notebook before rebuilding it: hash, language, a file name."""
    return session.execute(
        text(
            """
            SELECT n.id, n.sha256, n.language, n.kernel_name,
                   (SELECT s.location || CASE WHEN s.member <> '' THEN '/' || s.member ELSE '' END
                      FROM source s WHERE s.notebook_id = n.id ORDER BY s.id LIMIT 1) AS place
            FROM notebook n WHERE n.id = :id
            """
        ),
        {"id": id},
    ).first()


def cell_ids_by_position(*, session: Session, notebook_id: int) -> dict[int, int]:
    rows = session.execute(text("SELECT position, id FROM cell WHERE notebook_id = :nb"), {"nb": notebook_id})
    return {position: id_ for position, id_ in rows}


# --- the writer -------------------------------------------------------------------------------------

@dataclass
class RunRecord:
    """Everything one run stores; built by ``ingest.reproduce.record`` from a backend's outcome."""

    run: dict[str, Any]  # run columns except id/request_id/notebook_id/created_at
    cells: list[dict[str, Any]]  # run_cell columns except id/run_id
    # (cell position, position, output_type, mime_types, data, metadata, execution_count, name, text,
    #  ename, evalue, traceback, extra): ``ingest.parse``'s output rows, JSON values as JSON text
    outputs: list[tuple]
    images: list[tuple]  # (sha256, mime, data, svg, size_bytes, width, height)
    output_images: list[tuple]  # (index into outputs, mime, image sha256, b64 layout)


def store_run(*, session: Session, request_id: int, notebook_id: int, record: RunRecord) -> int | None:
    """Insert one run with its cells, outputs and images. Returns the run id, or None when this
    (request, notebook) already has a result: the first result stays, a retried job adds nothing.
    Call inside a transaction; the caller commits."""
    now = datetime.now(timezone.utc)
    run_id = session.execute(
        pg_insert(run_t)
        .values(request_id=request_id, notebook_id=notebook_id, created_at=now, **record.run)
        .on_conflict_do_nothing(constraint="uq_run_request_notebook")
        .returning(run_t.c.id)
    ).scalar()
    if run_id is None:
        return None
    cell_ids: dict[int, int] = {}
    if record.cells:
        rows = session.execute(
            insert(run_cell_t).returning(run_cell_t.c.id, run_cell_t.c.position, sort_by_parameter_order=True),
            [{**cell, "run_id": run_id} for cell in record.cells],
        )
        cell_ids = {position: id_ for id_, position in rows}
    if record.images:
        session.execute(
            pg_insert(image_t).on_conflict_do_nothing(index_elements=["sha256"]),
            [
                {"sha256": sha, "mime": mime, "data": data, "svg": svg, "size_bytes": size, "width": w, "height": h,
                 "created_at": now}
                for sha, mime, data, svg, size, w, h in record.images
            ],
        )
    output_ids: list[int] = []
    outputs = [o for o in record.outputs if o[0] in cell_ids]
    if outputs:
        rows = session.execute(
            insert(run_output_t).returning(run_output_t.c.id, sort_by_parameter_order=True),
            [
                {
                    "run_cell_id": cell_ids[cell_pos], "run_id": run_id, "position": pos, "output_type": kind,
                    "mime_types": mimes, "data": _json(data), "metadata": _json(meta), "execution_count": count,
                    "name": name, "text": text_, "ename": ename, "evalue": evalue, "traceback": tb, "extra": _json(extra),
                }
                for cell_pos, pos, kind, mimes, data, meta, count, name, text_, ename, evalue, tb, extra in outputs
            ],
        )
        output_ids = [r[0] for r in rows]
    index_map = {}
    kept = 0
    for index, o in enumerate(record.outputs):
        if o[0] in cell_ids:
            index_map[index] = output_ids[kept]
            kept += 1
    links = [
        {"run_output_id": index_map[index], "mime": mime, "image_sha256": sha, "b64_layout": layout}
        for index, mime, sha, layout in record.output_images
        if index in index_map
    ]
    if links:
        session.execute(insert(run_output_image_t), links)
    return int(run_id)


def _json(value: str | None) -> Any:
    # the parser hands JSON text (for COPY); through the ORM the columns want the value
    return None if value is None else json.loads(value)


# --- readers for the API: by id, by parent, pages ----------------------------------------------------

def _select(table, names: Sequence[str]):
    return select(*(table.c[n] for n in names))


def requests_by_id(*, session: Session, ids: Sequence[int]) -> dict[int, Row]:
    rows = session.execute(select(request_t).where(request_t.c.id.in_(list(ids))))
    return {row.id: row for row in rows}


def runs_by_id(*, session: Session, ids: Sequence[int]) -> dict[int, Row]:
    rows = session.execute(_select(run_t, RUN_COLUMNS).where(run_t.c.id.in_(list(ids))))
    return {row.id: row for row in rows}


def runs_of_notebooks(*, session: Session, ids: Sequence[int], request_id: int | None = None) -> dict[int, list[Row]]:
    """Each notebook's runs, newest request first."""
    q = _select(run_t, RUN_LIST_COLUMNS).where(run_t.c.notebook_id.in_(list(ids)))
    if request_id is not None:
        q = q.where(run_t.c.request_id == request_id)
    return _grouped(session.execute(q.order_by(run_t.c.notebook_id, run_t.c.request_id.desc())), "notebook_id")


def runs_of_requests(*, session: Session, ids: Sequence[int], first: int, after: int | None = None) -> dict[int, list[Row]]:
    """Up to ``first + 1`` runs of each request in id order (keyset: ``after`` a run id)."""
    rows = session.execute(
        text(
            f"""
            SELECT r.* FROM unnest(:ids) AS k(id)
            CROSS JOIN LATERAL (
                SELECT {', '.join(RUN_LIST_COLUMNS)} FROM run
                WHERE run.request_id = k.id AND run.id > :after ORDER BY run.id LIMIT :limit
            ) r
            """
        ).bindparams(_IDS),
        {"ids": list(ids), "after": after or 0, "limit": first + 1},
    )
    return _grouped(rows, "request_id")


def cells_of_runs(*, session: Session, ids: Sequence[int]) -> dict[int, list[Row]]:
    rows = session.execute(
        _select(run_cell_t, RUN_CELL_COLUMNS).where(run_cell_t.c.run_id.in_(list(ids)))
        .order_by(run_cell_t.c.run_id, run_cell_t.c.position)
    )
    return _grouped(rows, "run_id")


def run_cells_of_cells(*, session: Session, ids: Sequence[int], request_id: int | None = None) -> dict[int, list[Row]]:
    """The reproductions of original cells (by original cell id), newest first: the cell-by-cell link."""
    q = _select(run_cell_t, RUN_CELL_COLUMNS).where(run_cell_t.c.cell_id.in_(list(ids)))
    if request_id is not None:
        q = q.where(run_cell_t.c.run_id.in_(select(run_t.c.id).where(run_t.c.request_id == request_id)))
    return _grouped(session.execute(q.order_by(run_cell_t.c.cell_id, run_cell_t.c.id.desc())), "cell_id")


def outputs_of_run_cells(*, session: Session, ids: Sequence[int]) -> dict[int, list[Row]]:
    rows = session.execute(
        _select(run_output_t, RUN_OUTPUT_COLUMNS).where(run_output_t.c.run_cell_id.in_(list(ids)))
        .order_by(run_output_t.c.run_cell_id, run_output_t.c.position)
    )
    return _grouped(rows, "run_cell_id")


def images_of_run_outputs(*, session: Session, ids: Sequence[int]) -> dict[int, list[Row]]:
    rows = session.execute(
        text(
            """
            SELECT oi.run_output_id, oi.mime AS output_mime, i.sha256, i.mime, i.size_bytes, i.width, i.height
            FROM run_output_image oi JOIN image i ON i.sha256 = oi.image_sha256
            WHERE oi.run_output_id = ANY(:ids) ORDER BY oi.run_output_id, oi.mime
            """
        ).bindparams(_IDS),
        {"ids": list(ids)},
    )
    return _grouped(rows, "run_output_id")


@dataclass(frozen=True)
class RunFilter(_Filter):
    """Criteria over runs, combined with AND (lists match any of their values)."""

    request_id: tuple[int, ...] | None = None
    status: tuple[str, ...] | None = None
    failure_class: tuple[str, ...] | None = field(default=None, metadata={"vocabulary": vocab.FAILURE_CLASSES})
    backend: tuple[str, ...] | None = None
    ran_without_error: bool | None = None
    same_results: bool | None = None
    same_results_ignoring_images: bool | None = None
    same_plots: bool | None = None
    notebook: NotebookFilter | None = None

    def where(self, r=run_t) -> list:
        conds = []
        for name in ("request_id", "status", "failure_class", "backend"):
            value = getattr(self, name)
            if value is not None:
                conds.append(r.c[name].in_(list(value)))
        for name in ("ran_without_error", "same_results", "same_results_ignoring_images", "same_plots"):
            value = getattr(self, name)
            if value is not None:
                conds.append(r.c[name].is_(value))
        if self.notebook is not None and not self.notebook.is_empty():
            conds.append(r.c.notebook_id.in_(self.notebook.notebook_ids()))
        return conds


def run_page(*, session: Session, filter: RunFilter | None = None, first: int, after: int | None = None) -> list[Row]:
    q = _select(run_t, RUN_LIST_COLUMNS).where(*(filter.where() if filter else []))
    if after is not None:
        q = q.where(run_t.c.id > after)
    return list(session.execute(q.order_by(run_t.c.id).limit(first + 1)))


def request_page(*, session: Session, first: int, after: int | None = None) -> list[Row]:
    q = select(request_t)
    if after is not None:
        q = q.where(request_t.c.id > after)
    return list(session.execute(q.order_by(request_t.c.id).limit(first + 1)))


# --- facets and summaries ----------------------------------------------------------------------------

FACETS = ("status", "failure_class", "backend", "same_results", "same_results_ignoring_images", "same_plots",
          "failure_detail")


def run_facets(*, session: Session, filter: RunFilter | None = None, fields: Sequence[str] = FACETS[:-1],
               top: int = 50) -> dict[str, list[tuple[Any, int]]]:
    """Counts of runs per value of each field (``failure_detail`` gives e.g. the missing modules)."""
    out: dict[str, list[tuple[Any, int]]] = {}
    conds = filter.where() if filter else []
    for name in fields:
        if name not in FACETS:
            raise ValueError(f"unknown run facet {name!r}; known: {', '.join(FACETS)}")
        col = run_t.c[name]
        q = select(col, func.count()).where(*conds).group_by(col).order_by(func.count().desc(), col).limit(top)
        out[name] = [(value, int(n)) for value, n in session.execute(q)]
    return out


def reproducibility_summary(*, session: Session, request_ids: Sequence[int] | None = None) -> dict[int, dict[str, Any]]:
    """Per request: notebooks asked, results so far, and the Pimentel et al. rates over the results.

    ``no_code`` counts the runs of notebooks with no code cell to run (their status is ``ok``);
    ``ok_with_code`` / ``ok_rate_with_code`` leave them out."""
    rows = session.execute(
        text(
            """
            SELECT q.id AS request_id, q.n_notebooks,
                   count(r.id) AS n_runs,
                   count(*) FILTER (WHERE r.status = 'ok') AS ok,
                   count(*) FILTER (WHERE r.status = 'error') AS error,
                   count(*) FILTER (WHERE r.status = 'timeout') AS timeout,
                   count(*) FILTER (WHERE r.status = 'oom') AS oom,
                   count(*) FILTER (WHERE r.status = 'killed') AS killed,
                   count(*) FILTER (WHERE r.status = 'infrastructure_error') AS infrastructure_error,
                   count(*) FILTER (WHERE r.n_code_cells = 0) AS no_code,
                   count(*) FILTER (WHERE r.n_code_cells > 0) AS runs_with_code,
                   count(*) FILTER (WHERE r.status = 'ok' AND r.n_code_cells > 0) AS ok_with_code,
                   count(*) FILTER (WHERE r.same_results) AS same_results,
                   count(*) FILTER (WHERE r.same_results_ignoring_images) AS same_results_ignoring_images,
                   count(*) FILTER (WHERE r.same_plots) AS same_plots,
                   count(*) FILTER (WHERE r.same_plots IS NOT NULL) AS with_plots,
                   avg(r.run_s) AS mean_run_s, avg(r.overhead_s) AS mean_overhead_s
            FROM run_request q LEFT JOIN run r ON r.request_id = q.id
            WHERE CAST(:ids AS bigint[]) IS NULL OR q.id = ANY(:ids)
            GROUP BY q.id ORDER BY q.id
            """
        ).bindparams(_IDS),
        {"ids": list(request_ids) if request_ids is not None else None},
    )
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        d = dict(row._mapping)
        n = d["n_runs"] or 0
        for key in ("ok", "same_results", "same_results_ignoring_images"):
            d[f"{key}_rate"] = round(d[key] / n, 4) if n else None
        d["same_plots_rate"] = round(d["same_plots"] / d["with_plots"], 4) if d["with_plots"] else None
        # a notebook with no code (markdown only, or empty code cells) "runs without error" trivially:
        # the rate a study quotes is over the notebooks that have code to run
        d["ok_rate_with_code"] = round(d["ok_with_code"] / d["runs_with_code"], 4) if d["runs_with_code"] else None
        out[d["request_id"]] = d
    return out


def job_counts(*, session: Session) -> dict[int | None, dict[str, int]]:
    """Procrastinate's jobs of the reproduce queue, per request and status (todo, doing, failed...)."""
    rows = session.execute(
        text(
            f"""
            SELECT (args->>'request_id')::bigint AS request_id, status::text AS status, count(*) AS n
            FROM {PROCRASTINATE}.procrastinate_jobs WHERE queue_name = :queue
            GROUP BY 1, 2
            """
        ),
        {"queue": QUEUE},
    )
    out: dict[int | None, dict[str, int]] = defaultdict(dict)
    for request_id, status, n in rows:
        out[request_id][status] = int(n)
    return dict(out)


def workers(*, session: Session) -> list[Row]:
    """Procrastinate workers with their heartbeat age and how many jobs each is doing."""
    return list(
        session.execute(
            text(
                f"""
                SELECT w.id, w.last_heartbeat, extract(epoch FROM now() - w.last_heartbeat) AS heartbeat_age_s,
                       (SELECT count(*) FROM {PROCRASTINATE}.procrastinate_jobs j
                         WHERE j.worker_id = w.id AND j.status = 'doing') AS doing
                FROM {PROCRASTINATE}.procrastinate_workers w ORDER BY w.id
                """
            )
        )
    )


def open_jobs(*, session: Session, request_id: int | None = None) -> int:
    """Jobs of the reproduce queue still to do or being done (for one request, or all)."""
    return int(
        session.execute(
            text(
                f"""
                SELECT count(*) FROM {PROCRASTINATE}.procrastinate_jobs
                WHERE queue_name = :queue AND status IN ('todo', 'doing')
                  AND (CAST(:rid AS bigint) IS NULL OR (args->>'request_id')::bigint = :rid)
                """
            ),
            {"queue": QUEUE, "rid": request_id},
        ).scalar()
    )
