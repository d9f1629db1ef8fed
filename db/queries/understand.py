"""SQL for the code-understanding tables: storing analysis rows, finding stale notebooks, and the
batch reads / facets the API exposes (libraries, calls, stages of cells; plot kinds, producing cell
and context of images).

Writers take plain tuples (``db`` never imports ``ingest``); readers are batch functions
``f(*, session, ids)`` returning dicts keyed by the ids asked for, for DataLoaders.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import text
from sqlmodel import Session

from db.copy_text import copy_escape

NOTEBOOK_ANALYSIS_COLUMNS = ("notebook_id", "analyzer_version", "libraries", "n_code_cells", "n_unparsed_cells",
                             "n_visualisation_cells")
CELL_ANALYSIS_COLUMNS = ("cell_id", "notebook_id", "analyzer_version", "parsed", "parse_error", "ipython_syntax",
                         "imports", "calls", "call_names", "libraries", "stage", "stage_evidence", "is_visualisation",
                         "plot_kinds")
# rows before the output id is known: the output is found by (cell_id, output position)
PLOT_LOAD_COLUMNS = ("cell_id", "output_position", "mime", "notebook_id", "interactive", "analyzer_version",
                     "plot_kinds", "evidence", "plot_calls", "segment", "context_before", "context_after")
_JSON_CELL = {"imports", "calls", "stage_evidence"}
_JSON_PLOT = {"evidence"}


def _pg_text(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; notebooks sometimes do (binary pasted into a cell)
    return value.replace("\x00", "\ufffd") if isinstance(value, str) and "\x00" in value else value


def _json(value: Any) -> str | None:
    if value is None:
        return None
    try:
        text = orjson.dumps(value, default=str).decode()
    except orjson.JSONEncodeError:  # a lone surrogate in the cell text: it becomes "?" when encoded
        import json

        text = json.dumps(value, default=str, ensure_ascii=False)
    # jsonb refuses the \u0000 escape orjson writes for a NUL inside a string
    return text.replace("\\u0000", "\\ufffd") if "\\u0000" in text else _pg_text(text)


# ---- COPY text rendering (done where the analysis runs: in the ingest's parse workers) -------------

# the rendered cell line: cell position, then these columns (cell_id and notebook_id are put in front
# by the loader, which alone knows them)
CELL_RENDER_COLUMNS = CELL_ANALYSIS_COLUMNS[2:]
# the rendered plot line: cell position, then these columns
PLOT_RENDER_COLUMNS = tuple(c for c in PLOT_LOAD_COLUMNS if c not in ("cell_id", "notebook_id"))


def _copy_text(text: str) -> str:
    # NUL cannot be stored in text at all; analysis text is derived, so a replacement character is fine
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return copy_escape(text)


def copy_field(value: Any) -> str:
    """One value in COPY text format: None, bool, int, str, or a list of str (a text[])."""
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if type(value) is int:
        return str(value)
    if type(value) is list:  # text[]: every element quoted
        if not value:
            return "{}"
        if "\\" in (chars := "".join(value)) or '"' in chars:
            return _copy_text("{" + ",".join(['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value]) + "}")
        # names, libraries, kinds: nothing to escape inside the quotes, the common case
        return _copy_text('{"' + '","'.join(value) + '"}')
    return _copy_text(value)


def render_cell_rows(rows: Iterable[tuple]) -> bytes:
    """``(cell position, *CELL_RENDER_COLUMNS)`` rows as COPY text lines (JSON columns as Python values)."""
    return _render(rows, _CELL_JSON_AT)


_CELL_JSON_AT = [i + 1 for i, c in enumerate(CELL_RENDER_COLUMNS) if c in _JSON_CELL]


def render_plain_cell_row(position: int, analyzer_version: int, stage: str, stage_evidence: list[str]) -> str:
    """The line ``render_cell_rows`` makes for a cell without code facts (markdown, raw: parsed, no
    imports, calls or libraries, not a visualisation), without its per-value dispatch: half the
    rows of a notebook are such cells."""
    return (f"{position}\t{analyzer_version}\tt\t\\N\tf\t\\N\t\\N\t{{}}\t{{}}\t{_copy_text(stage)}\t"
            f"{_copy_text(_json(stage_evidence))}\tf\t{{}}\n")


def render_code_cell_row(position: int, analyzer_version: int, parsed: bool, parse_error: str | None, ipython_syntax: bool,
                         imports: list | None, calls: list | None, call_names: list[str], libraries: list[str], stage: str,
                         stage_evidence: list[str], is_visualisation: bool, plot_kinds: list[str]) -> str:
    """The line ``render_cell_rows`` makes for one code cell, as text, without its per-value dispatch
    (one call per code cell of every notebook ingested)."""
    return (f"{position}\t{analyzer_version}\t{'t' if parsed else 'f'}\t{copy_field(parse_error)}\t"
            f"{'t' if ipython_syntax else 'f'}\t{copy_field(_json(imports))}\t{copy_field(_json(calls))}\t"
            f"{copy_field(call_names)}\t{copy_field(libraries)}\t{copy_field(stage)}\t{copy_field(_json(stage_evidence))}\t"
            f"{'t' if is_visualisation else 'f'}\t{copy_field(plot_kinds)}\n")


def render_plot_rows(rows: Iterable[tuple]) -> bytes:
    """``(cell position, *PLOT_RENDER_COLUMNS)`` rows as COPY text lines."""
    json_at = [i + 1 for i, c in enumerate(PLOT_RENDER_COLUMNS) if c in _JSON_PLOT]
    return _render(rows, json_at)


def _render(rows: Iterable[tuple], json_at: list[int]) -> bytes:
    lines = []
    for row in rows:
        row = list(row)
        for i in json_at:
            row[i] = _json(row[i])
        lines.append("\t".join([copy_field(v) for v in row]))
    # a lone surrogate (broken JSON escapes in the notebook) cannot be UTF-8: it becomes "?"
    return "".join([line + "\n" for line in lines]).encode("utf-8", "replace")


def with_ids(rendered: bytes, notebook_id: int, cell_ids: Sequence[int]) -> bytes:
    """Rendered lines (cell position first) with the position replaced by ``cell_id, notebook_id``.

    A line whose cell the loader did not store (no id at that position) is left out.
    """
    out = []
    n = len(cell_ids)
    for line in rendered.split(b"\n")[:-1]:  # every line ends with a newline
        position, rest = line.split(b"\t", 1)
        pos = int(position)
        if pos < n:
            out.append(b"%d\t%d\t%s\n" % (cell_ids[pos], notebook_id, rest))
    return b"".join(out)


def store_analysis(
    *,
    connection: Any,
    notebooks: Sequence[tuple],
    cells: Sequence[tuple],
    plots: Sequence[tuple],
) -> None:
    """Replace the analysis of the given notebooks (rows as tuples in the *_COLUMNS orders), with COPY.

    ``connection`` is a raw psycopg connection inside the caller's transaction (the ingest batch, or
    the analyze job's), so analysis lands atomically with whatever the caller writes.
    """
    # rendered with a dummy position 0 ("0\t"), which the ids replace
    cell_lines = render_cell_rows([(0, *row[2:]) for row in cells]).split(b"\n")
    by_notebook_cells = b"".join(b"%d\t%d\t%s\n" % (row[0], row[1], line[2:]) for row, line in zip(cells, cell_lines))
    keep = [i for i, c in enumerate(PLOT_LOAD_COLUMNS) if c not in ("cell_id", "notebook_id")]
    plot_lines = render_plot_rows([(0, *(row[i] for i in keep)) for row in plots]).split(b"\n")
    by_notebook_plots = b"".join(b"%d\t%d\t%s\n" % (row[0], row[3], line[2:]) for row, line in zip(plots, plot_lines))
    store_rendered(connection=connection, notebooks=notebooks, cells=by_notebook_cells, plots=by_notebook_plots, replace=True)


def store_rendered(*, connection: Any, notebooks: Sequence[tuple], cells: bytes, plots: bytes, replace: bool = True) -> None:
    """Store analysis rows: ``notebooks`` as tuples in NOTEBOOK_ANALYSIS_COLUMNS order; ``cells`` and
    ``plots`` as COPY text lines of ``cell_id, notebook_id, *CELL_RENDER_COLUMNS`` /
    ``cell_id, notebook_id, *PLOT_RENDER_COLUMNS`` (``render_*_rows`` then ``with_ids``).

    ``replace=False`` skips deleting earlier analysis: for notebooks the caller has just inserted.
    """
    ids = [row[0] for row in notebooks]
    if not ids:
        return
    with connection.cursor() as cur:
        if replace:
            cur.execute("DELETE FROM output_plot WHERE notebook_id = ANY(%s)", (ids,))
            cur.execute("DELETE FROM cell_analysis WHERE notebook_id = ANY(%s)", (ids,))
            cur.execute("DELETE FROM notebook_analysis WHERE notebook_id = ANY(%s)", (ids,))
        with cur.copy(f"COPY notebook_analysis ({', '.join(NOTEBOOK_ANALYSIS_COLUMNS)}, analyzed_at) FROM STDIN") as copy:
            for row in notebooks:
                # libraries None: the code was not analysed (another kernel language), NULL as the API says
                libraries = None if row[2] is None else [_pg_text(x) for x in row[2]]
                copy.write_row((*row[:2], libraries, *row[3:], "now"))
        if cells:
            with cur.copy(f"COPY cell_analysis (cell_id, notebook_id, {', '.join(CELL_RENDER_COLUMNS)}) FROM STDIN") as copy:
                copy.write(cells)
        if plots:
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS nbatlas_plot_load ("
                "cell_id bigint, output_position int, mime text, notebook_id bigint, interactive boolean, "
                "analyzer_version int, plot_kinds text[], evidence jsonb, plot_calls text[], segment int, "
                "context_before text, context_after text) ON COMMIT DELETE ROWS"
            )
            with cur.copy(f"COPY nbatlas_plot_load (cell_id, notebook_id, {', '.join(PLOT_RENDER_COLUMNS)}) FROM STDIN") as copy:
                copy.write(plots)
            cur.execute(
                "INSERT INTO output_plot (output_id, mime, cell_id, notebook_id, image_sha256, interactive, "
                "analyzer_version, plot_kinds, evidence, plot_calls, segment, context_before, context_after, analyzed_at) "
                "SELECT o.id, p.mime, p.cell_id, p.notebook_id, oi.image_sha256, p.interactive, p.analyzer_version, "
                "p.plot_kinds, p.evidence, p.plot_calls, p.segment, p.context_before, p.context_after, now() "
                "FROM nbatlas_plot_load p "
                "JOIN output o ON o.cell_id = p.cell_id AND o.position = p.output_position "
                "LEFT JOIN output_image oi ON oi.output_id = o.id AND oi.mime = p.mime "
                # an image the loader could not store (kept as text) has no image row: keep the plot, not the link
                "WHERE p.interactive OR oi.image_sha256 IS NOT NULL "
                "ON CONFLICT (output_id, mime) DO NOTHING"
            )
            cur.execute("DELETE FROM nbatlas_plot_load")


# ---- re-analysis -------------------------------------------------------------------------------

def notebooks_to_analyze(*, session: Session, analyzer_version: int, rerun: bool = False) -> list[int]:
    """Ids of notebooks never analysed or analysed by another analyser version (all of them with ``rerun``)."""
    if rerun:
        sql = "SELECT id FROM notebook ORDER BY id"
        return list(session.connection().execute(text(sql)).scalars())
    sql = (
        "SELECT n.id FROM notebook n LEFT JOIN notebook_analysis a ON a.notebook_id = n.id "
        "WHERE a.notebook_id IS NULL OR a.analyzer_version <> :v ORDER BY n.id"
    )
    return list(session.connection().execute(text(sql), {"v": analyzer_version}).scalars())


def cells_for_analysis(*, session: Session, notebook_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """What the analyser needs of stored notebooks: cells in order, each with its outputs' mime types.

    The analyser looks at which outputs show a figure, never at the image bytes, so those are not read.
    """
    if not notebook_ids:
        return {}
    rows = session.connection().execute(
        text(
            "SELECT c.notebook_id, c.id, c.position, c.cell_type, c.source, "
            "COALESCE((SELECT array_agg(o.mime_types::text ORDER BY o.position) FROM output o WHERE o.cell_id = c.id), '{}') "
            "AS outs, "
            "COALESCE((SELECT array_agg(o.position ORDER BY o.position) FROM output o WHERE o.cell_id = c.id), '{}') AS pos "
            "FROM cell c WHERE c.notebook_id = ANY(:ids) ORDER BY c.notebook_id, c.position"
        ),
        {"ids": list(notebook_ids)},
    )
    out: dict[int, list[dict[str, Any]]] = {nid: [] for nid in notebook_ids}
    for notebook_id, cell_id, position, cell_type, source, outs, positions in rows:
        outputs: list[dict[str, Any]] = []
        for pos, mimes_text in zip(positions, outs):
            while len(outputs) < pos:  # keep output positions aligned with the stored ones
                outputs.append({"data": {}})
            mimes = _parse_pg_array(mimes_text)
            outputs.append({"data": {m: None for m in mimes}})
        out[notebook_id].append({"id": cell_id, "position": position, "cell_type": cell_type, "source": source, "outputs": outputs})
    return out


def _parse_pg_array(value: str) -> list[str]:
    """A text[] rendered as text ({a,"b c"}) back to a list (mime types have no quotes or commas inside)."""
    inner = value.strip()[1:-1]
    return [part.strip('"') for part in inner.split(",") if part]


# ---- reads for the API ---------------------------------------------------------------------------

def analysis_for_cells(*, session: Session, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """cell id -> {libraries, calls, call_names, imports, stage, stage_evidence, is_visualisation, plot_kinds, parsed, parse_error}."""
    if not ids:
        return {}
    rows = session.connection().execute(
        text(
            "SELECT cell_id, libraries, calls, call_names, imports, stage, stage_evidence, is_visualisation, "
            "plot_kinds, parsed, parse_error, ipython_syntax, analyzer_version FROM cell_analysis WHERE cell_id = ANY(:ids)"
        ),
        {"ids": list(ids)},
    ).mappings()
    return {r["cell_id"]: dict(r) for r in rows}


def libraries_for_cells(*, session: Session, ids: Sequence[int]) -> dict[int, list[str]]:
    return {k: v["libraries"] for k, v in analysis_for_cells(session=session, ids=ids).items()}


def stages_for_cells(*, session: Session, ids: Sequence[int]) -> dict[int, str]:
    return {k: v["stage"] for k, v in analysis_for_cells(session=session, ids=ids).items()}


def plots_for_images(*, session: Session, shas: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """image sha256 -> every place it was drawn: [{output_id, mime, cell_id, notebook_id, plot_kinds, evidence,
    plot_calls, context_before, context_after}] (an identical image drawn by two notebooks has two entries)."""
    if not shas:
        return {}
    rows = session.connection().execute(
        text(
            "SELECT image_sha256, output_id, mime, cell_id, notebook_id, plot_kinds, evidence, plot_calls, segment, "
            "context_before, context_after FROM output_plot WHERE image_sha256 = ANY(:shas) ORDER BY output_id, mime"
        ),
        {"shas": list(shas)},
    ).mappings()
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in shas}
    for r in rows:
        out[r["image_sha256"].strip()].append(dict(r))
    return out


def plot_kinds_for_images(*, session: Session, shas: Sequence[str]) -> dict[str, list[str]]:
    """image sha256 -> plot kinds (union over the places it was drawn, in vocabulary order of first seen)."""
    out: dict[str, list[str]] = {}
    for sha, places in plots_for_images(session=session, shas=shas).items():
        kinds: list[str] = []
        for place in places:
            kinds.extend(k for k in place["plot_kinds"] if k not in kinds)
        out[sha] = kinds
    return out


def context_for_images(*, session: Session, shas: Sequence[str]) -> dict[str, dict[str, str | None]]:
    """image sha256 -> {context_before, context_after, cell_id} of the first place it was drawn."""
    out: dict[str, dict[str, str | None]] = {}
    for sha, places in plots_for_images(session=session, shas=shas).items():
        if places:
            p = places[0]
            out[sha] = {"context_before": p["context_before"], "context_after": p["context_after"], "cell_id": p["cell_id"]}
    return out


def plots_for_outputs(*, session: Session, ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """output id -> its figure rows (one per mime)."""
    if not ids:
        return {}
    rows = session.connection().execute(
        text("SELECT * FROM output_plot WHERE output_id = ANY(:ids) ORDER BY output_id, mime"), {"ids": list(ids)}
    ).mappings()
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for r in rows:
        out[r["output_id"]].append(dict(r))
    return out


def libraries_for_notebooks(*, session: Session, ids: Sequence[int]) -> dict[int, list[str]]:
    """Libraries of each analysed notebook; a notebook never analysed, or whose code was not (NULL: another
    kernel language), is missing."""
    if not ids:
        return {}
    rows = session.connection().execute(
        text("SELECT notebook_id, libraries FROM notebook_analysis WHERE notebook_id = ANY(:ids) AND libraries IS NOT NULL"),
        {"ids": list(ids)},
    )
    return {nid: libs for nid, libs in rows}


def _filters(plot_kind: str | None, library: str | None, stage: str | None, notebook_library: str | None) -> tuple[str, dict]:
    where, params = [], {}
    if plot_kind:
        where.append(":kind = ANY(p.plot_kinds)")
        params["kind"] = plot_kind
    if library:
        where.append(":lib = ANY(ca.libraries)")
        params["lib"] = library
    if stage:
        where.append("ca.stage = :stage")
        params["stage"] = stage
    if notebook_library:
        where.append(":nlib = ANY(na.libraries)")
        params["nlib"] = notebook_library
    return (" WHERE " + " AND ".join(where)) if where else "", params


def image_plots(
    *,
    session: Session,
    plot_kind: str | None = None,
    library: str | None = None,
    stage: str | None = None,
    notebook_library: str | None = None,
    after: tuple[int, str] | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Figure rows filtered by plot kind, cell library, cell stage and notebook library, keyset-paged on
    (output_id, mime). Example: plot_kind='roc_curve', notebook_library='xgboost'."""
    where, params = _filters(plot_kind, library, stage, notebook_library)
    if after is not None:
        where += (" AND " if where else " WHERE ") + "(p.output_id, p.mime) > (:a_id, :a_mime)"
        params.update(a_id=after[0], a_mime=after[1])
    params["limit"] = limit
    rows = session.connection().execute(
        text(
            "SELECT p.output_id, p.mime, p.image_sha256, p.cell_id, p.notebook_id, p.plot_kinds, p.evidence, "
            "p.plot_calls, p.context_before, p.context_after, ca.stage, ca.libraries "
            "FROM output_plot p JOIN cell_analysis ca ON ca.cell_id = p.cell_id "
            "LEFT JOIN notebook_analysis na ON na.notebook_id = p.notebook_id"
            + where + " ORDER BY p.output_id, p.mime LIMIT :limit"
        ),
        params,
    ).mappings()
    return [dict(r) for r in rows]


def cells_filtered(
    *,
    session: Session,
    library: str | None = None,
    stage: str | None = None,
    plot_kind: str | None = None,
    call: str | None = None,
    after: int | None = None,
    limit: int = 50,
) -> list[int]:
    """Cell ids (keyset on cell_id) filtered by library, stage, plot kind and resolved call name."""
    where, params = [], {"limit": limit}
    if library:
        where.append(":lib = ANY(libraries)")
        params["lib"] = library
    if stage:
        where.append("stage = :stage")
        params["stage"] = stage
    if plot_kind:
        where.append(":kind = ANY(plot_kinds)")
        params["kind"] = plot_kind
    if call:
        where.append(":call = ANY(call_names)")
        params["call"] = call
    if after is not None:
        where.append("cell_id > :after")
        params["after"] = after
    sql = "SELECT cell_id FROM cell_analysis" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY cell_id LIMIT :limit"
    return list(session.connection().execute(text(sql), params).scalars())


# ---- facets ---------------------------------------------------------------------------------------

def plot_kind_counts(
    *, session: Session, library: str | None = None, stage: str | None = None, notebook_library: str | None = None
) -> list[tuple[str, int]]:
    """(plot kind, number of figures) for figures matching the filters, most frequent first."""
    where, params = _filters(None, library, stage, notebook_library)
    rows = session.connection().execute(
        text(
            "SELECT k, count(*) FROM output_plot p JOIN cell_analysis ca ON ca.cell_id = p.cell_id "
            "LEFT JOIN notebook_analysis na ON na.notebook_id = p.notebook_id, unnest(p.plot_kinds) AS k"
            + where + " GROUP BY k ORDER BY count(*) DESC, k"
        ),
        params,
    )
    return [(k, n) for k, n in rows]


def plot_kind_counts_by_stage(*, session: Session, notebook_library: str | None = None) -> list[tuple[str, str, int]]:
    """(stage, plot kind, number of figures): "count of plot kinds per stage"."""
    where, params = _filters(None, None, None, notebook_library)
    rows = session.connection().execute(
        text(
            "SELECT ca.stage, k, count(*) FROM output_plot p JOIN cell_analysis ca ON ca.cell_id = p.cell_id "
            "LEFT JOIN notebook_analysis na ON na.notebook_id = p.notebook_id, unnest(p.plot_kinds) AS k"
            + where + " GROUP BY ca.stage, k ORDER BY ca.stage, count(*) DESC, k"
        ),
        params,
    )
    return [(s, k, n) for s, k, n in rows]


def library_counts(*, session: Session, stage: str | None = None, plot_kind: str | None = None, per: str = "notebook") -> list[tuple[str, int]]:
    """(library, number of notebooks) — or of cells with ``per='cell'`` (then ``stage``/``plot_kind`` filter cells)."""
    if per == "notebook" and not stage and not plot_kind:
        rows = session.connection().execute(
            text("SELECT lib, count(*) FROM notebook_analysis, unnest(libraries) AS lib GROUP BY lib ORDER BY count(*) DESC, lib")
        )
        return [(k, n) for k, n in rows]
    where, params = [], {}
    if stage:
        where.append("stage = :stage")
        params["stage"] = stage
    if plot_kind:
        where.append(":kind = ANY(plot_kinds)")
        params["kind"] = plot_kind
    counted = "count(DISTINCT notebook_id)" if per == "notebook" else "count(*)"
    rows = session.connection().execute(
        text(f"SELECT lib, {counted} FROM cell_analysis, unnest(libraries) AS lib"
             + (" WHERE " + " AND ".join(where) if where else "") + " GROUP BY lib ORDER BY 2 DESC, lib"),
        params,
    )
    return [(k, n) for k, n in rows]


def stage_counts(*, session: Session, library: str | None = None, cell_type: str | None = "code") -> list[tuple[str, int]]:
    """(stage, number of cells), code cells by default."""
    where, params = [], {}
    if library:
        where.append(":lib = ANY(ca.libraries)")
        params["lib"] = library
    if cell_type:
        where.append("c.cell_type = :ct")
        params["ct"] = cell_type
    rows = session.connection().execute(
        text("SELECT ca.stage, count(*) FROM cell_analysis ca JOIN cell c ON c.id = ca.cell_id"
             + (" WHERE " + " AND ".join(where) if where else "") + " GROUP BY ca.stage ORDER BY count(*) DESC, ca.stage"),
        params,
    )
    return [(k, n) for k, n in rows]


def analysis_status(*, session: Session, analyzer_version: int) -> dict[str, int]:
    """How many notebooks are analysed by this version, by another, or not at all."""
    row = session.connection().execute(
        text(
            "SELECT count(*) FILTER (WHERE a.analyzer_version = :v), "
            "count(*) FILTER (WHERE a.analyzer_version <> :v), count(*) FILTER (WHERE a.notebook_id IS NULL) "
            "FROM notebook n LEFT JOIN notebook_analysis a ON a.notebook_id = n.id"
        ),
        {"v": analyzer_version},
    ).one()
    return {"current": row[0], "stale": row[1], "missing": row[2]}


def iter_chunks(items: Sequence[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


def languages_for_notebooks(*, session: Session, ids: Sequence[int]) -> dict[int, str | None]:
    if not ids:
        return {}
    rows = session.connection().execute(text("SELECT id, language FROM notebook WHERE id = ANY(:ids)"), {"ids": list(ids)})
    return {nid: lang for nid, lang in rows}
