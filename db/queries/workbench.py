"""What the workbench pages need beyond the API's loaders: the plot gallery (filtered, keyset-paged),
the values its filters offer, and a few per-notebook facts (title, latest reproduction).

The gallery shows each distinct image once, at the first output that showed it (the tile links to
that place). Its filters are a :class:`PlotFilter`, also used to draw samples of plots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import BigInteger
from sqlmodel import Session

from db.models.search_indexes import FTS_CONFIG
from db.queries.filters import _Filter

NO_KIND = "(none)"  # the plot-kind filter value for figures no rule recognised
_IDS = bindparam("ids", type_=ARRAY(BigInteger))


def _matches(alias: str, kind: str, param: str) -> str:
    # cell.search_vector holds each cell's tsvector (db.models.search_indexes), GIN-indexed per cell type
    return f"{alias}.search_vector @@ websearch_to_tsquery('{FTS_CONFIG[kind]}'::regconfig, :{param})"


@dataclass(frozen=True)
class PlotFilter(_Filter):
    """Criteria on figures, combined with AND (a list matches any of its values)."""

    plot_kind: tuple[str, ...] | None = None  # '(none)': figures with no recognised kind
    library: tuple[str, ...] | None = None  # a library the drawing cell uses
    stage: tuple[str, ...] | None = None  # the pipeline stage of the drawing cell
    competition: tuple[str, ...] | None = None  # Kaggle competition of the notebook
    min_votes: int | None = None  # Kaggle votes of the notebook
    max_votes: int | None = None
    run_status: tuple[str, ...] | None = None  # status of the notebook's latest reproduction (newest request)
    text: str | None = None  # full text: the drawing cell's code, or the markdown just before it
    mime: tuple[str, ...] | None = None  # image format
    notebook_id: tuple[int, ...] | None = None

    def sql(self, *, o: str = "o", p: str = "p", ca: str = "ca", i: str = "i") -> tuple[list[str], dict[str, Any]]:
        """SQL conditions over output ``o``, output_plot ``p`` (left-joined), cell_analysis ``ca``
        (left-joined) and image ``i``, with their bound parameters (user text is never SQL)."""
        where: list[str] = []
        params: dict[str, Any] = {}
        if self.plot_kind:
            kinds = [k for k in self.plot_kind if k != NO_KIND]
            parts = []
            if kinds:
                parts.append(f"{p}.plot_kinds && CAST(:f_kinds AS text[])")
                params["f_kinds"] = kinds
            if NO_KIND in self.plot_kind:
                parts.append(f"coalesce(cardinality({p}.plot_kinds), 0) = 0")
            where.append("(" + " OR ".join(parts) + ")")
        if self.library:
            where.append(f"{ca}.libraries && CAST(:f_libs AS text[])")
            params["f_libs"] = list(self.library)
        if self.stage:
            where.append(f"{ca}.stage = ANY(CAST(:f_stages AS text[]))")
            params["f_stages"] = list(self.stage)
        if self.mime:
            where.append(f"{i}.mime = ANY(CAST(:f_mimes AS text[]))")
            params["f_mimes"] = list(self.mime)
        if self.notebook_id:
            where.append(f"{o}.notebook_id = ANY(CAST(:f_nbs AS bigint[]))")
            params["f_nbs"] = list(self.notebook_id)
        kernel = []
        if self.competition:
            kernel.append("k.competition_sources && CAST(:f_comps AS text[])")
            params["f_comps"] = list(self.competition)
        if self.min_votes is not None:
            kernel.append("k.votes >= :f_min_votes")
            params["f_min_votes"] = self.min_votes
        if self.max_votes is not None:
            kernel.append("k.votes <= :f_max_votes")
            params["f_max_votes"] = self.max_votes
        if kernel:
            where.append(
                f"EXISTS (SELECT 1 FROM kaggle_kernel k WHERE k.notebook_id = {o}.notebook_id AND "
                + " AND ".join(kernel) + ")"
            )
        if self.run_status:
            where.append(
                f"(SELECT r.status FROM run r WHERE r.notebook_id = {o}.notebook_id ORDER BY r.request_id DESC, r.id DESC LIMIT 1)"
                " = ANY(CAST(:f_status AS text[]))"
            )
            params["f_status"] = list(self.run_status)
        if self.text and self.text.strip():
            # cells found through the full-text indexes first, then matched by id: a scan of every
            # figure's text would cost a tsvector per row
            where.append(
                f"""{o}.cell_id IN (
                    SELECT c.id FROM cell c
                    WHERE c.cell_type = 'code' AND {_matches('c', 'code', 'f_text')}
                    UNION
                    SELECT c.id FROM cell m
                    JOIN cell c ON c.notebook_id = m.notebook_id AND c.position > m.position AND c.cell_type = 'code'
                     AND c.position < coalesce((SELECT min(b.position) FROM cell b WHERE b.notebook_id = m.notebook_id
                                               AND b.cell_type = 'markdown' AND b.position > m.position), 2147483647)
                    WHERE m.cell_type = 'markdown' AND {_matches('m', 'markdown', 'f_text')}
                )"""
            )
            params["f_text"] = self.text.strip()
        return where, params


def _gallery_from(after: bool = False) -> str:
    # after a cursor, the same lower bound on every table joined by output id: the planner then
    # starts each ordered scan at the cursor instead of merging from the first row
    bound_o = " AND o.id >= :a_output" if after else ""
    bound_p = " AND p.output_id >= :a_output" if after else ""
    # image, output_plot and cell_analysis are left joins on their keys: PostgreSQL leaves out the
    # ones no filter uses (an output_image always has its image)
    return f"""
    FROM output_image oi
    JOIN output o ON o.id = oi.output_id{bound_o}
    LEFT JOIN image i ON i.sha256 = oi.image_sha256
    LEFT JOIN output_plot p ON p.output_id = oi.output_id AND p.mime = oi.mime{bound_p}
    LEFT JOIN cell_analysis ca ON ca.cell_id = o.cell_id
    WHERE NOT EXISTS (
        SELECT 1 FROM output_image e
        WHERE e.image_sha256 = oi.image_sha256 AND (e.output_id, e.mime) < (oi.output_id, oi.mime)
    )
"""


_GALLERY_FROM = _gallery_from()


def gallery_page(
    *, session: Session, filter: PlotFilter | None = None, first: int = 48, after: tuple[int, str] | None = None
) -> list[dict[str, Any]]:
    """Up to ``first + 1`` distinct images matching ``filter``, in the order they were ingested
    (keyset on (output id, mime) of the image's first showing)."""
    where, params = (filter or PlotFilter()).sql()
    if after is not None:
        where.append("(oi.output_id, oi.mime) > (:a_output, :a_mime)")
        params.update(a_output=after[0], a_mime=after[1])
    params["limit"] = first + 1
    # the page's rows first, their details after: a broad filter then joins details for one page only
    sql = (
        "SELECT g.output_id, g.mime, g.image_sha256 AS sha256, g.cell_id, g.notebook_id, i.mime AS image_mime, "
        "i.width, i.height, coalesce(p.plot_kinds, '{}') AS plot_kinds, ca.stage, coalesce(ca.libraries, '{}') AS libraries "
        "FROM (SELECT oi.output_id, oi.mime, oi.image_sha256, o.cell_id, o.notebook_id"
        + _gallery_from(after is not None) + "".join(f" AND {w}" for w in where)
        + " ORDER BY oi.output_id, oi.mime LIMIT :limit) g "
        "JOIN image i ON i.sha256 = g.image_sha256 "
        "LEFT JOIN output_plot p ON p.output_id = g.output_id AND p.mime = g.mime "
        "LEFT JOIN cell_analysis ca ON ca.cell_id = g.cell_id "
        "ORDER BY g.output_id, g.mime"
    )
    rows = session.connection().execute(text(sql), params).mappings()
    return [{**r, "sha256": r["sha256"].strip()} for r in rows]


def gallery_count(*, session: Session, filter: PlotFilter | None = None, limit: int = 10_000) -> int:
    """How many images match, counted up to ``limit`` (the page then says "1,000+")."""
    where, params = (filter or PlotFilter()).sql()
    params["limit"] = limit
    sql = (
        "SELECT count(*) FROM (SELECT 1" + _GALLERY_FROM + "".join(f" AND {w}" for w in where)
        + " LIMIT :limit) x"
    )
    return int(session.connection().execute(text(sql), params).scalar_one())


def gallery_filter_values(*, session: Session) -> dict[str, list[tuple[str, int]]]:
    """The values each gallery filter offers, with how many figures (or notebooks) have them."""
    from db.queries.kaggle import kaggle_facet_counts
    from db.queries.reproduce import run_facets
    from db.queries.understand import plot_kind_counts_by_stage

    # one pass over the figures gives both the kinds' and the stages' counts
    stages: dict[str, int] = {}
    kinds: dict[str, int] = {}
    for stage, kind, n in plot_kind_counts_by_stage(session=session):
        stages[stage] = stages.get(stage, 0) + n
        kinds[kind] = kinds.get(kind, 0) + n
    libraries = session.connection().execute(
        text(
            "SELECT lib, count(*) FROM cell_analysis ca, unnest(ca.libraries) AS lib "
            "WHERE ca.is_visualisation GROUP BY lib ORDER BY count(*) DESC, lib LIMIT 60"
        )
    )
    return {
        "plot_kind": sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])),
        "stage": sorted(stages.items(), key=lambda kv: (-kv[1], kv[0])),
        "library": [(lib, n) for lib, n in libraries],
        "competition": [(v, n) for v, n in kaggle_facet_counts(session=session, field="competition", first=200) if v],
        "run_status": [(v, n) for v, n in run_facets(session=session, fields=["status"])["status"] if v],
        "mime": [
            (m, n) for m, n in session.connection().execute(
                text("SELECT mime, count(*) FROM image GROUP BY mime ORDER BY count(*) DESC, mime")
            )
        ],
        "has_kaggle": session.connection().execute(text("SELECT EXISTS (SELECT 1 FROM kaggle_kernel)")).scalar_one(),
        # distinct images the notebooks showed: the unfiltered gallery's size
        "total": session.connection().execute(text("SELECT count(DISTINCT image_sha256) FROM output_image")).scalar_one(),
    }


def notebook_titles(*, session: Session, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """notebook id -> {title, location, kaggle_ref, votes, competitions}: the Kaggle title when there
    is one, else the file name of its first source."""
    if not ids:
        return {}
    rows = session.connection().execute(
        text(
            """
            SELECT n.id, n.sha256, n.language,
                   (SELECT s.location || CASE WHEN s.member <> '' THEN '!' || s.member ELSE '' END
                    FROM source s WHERE s.notebook_id = n.id ORDER BY s.id LIMIT 1) AS location,
                   k.title, k.ref, k.votes, k.competition_sources
            FROM notebook n
            LEFT JOIN LATERAL (
                SELECT title, ref, votes, competition_sources FROM kaggle_kernel kk
                WHERE kk.notebook_id = n.id ORDER BY kk.votes DESC NULLS LAST, kk.id LIMIT 1
            ) k ON true
            WHERE n.id = ANY(:ids)
            """
        ).bindparams(_IDS),
        {"ids": list(ids)},
    ).mappings()
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        location = r["location"] or ""
        name = location.rsplit("!", 1)[-1].rsplit("/", 1)[-1] or r["sha256"][:12]
        out[r["id"]] = {
            "title": r["title"] or name, "location": location, "sha256": r["sha256"], "language": r["language"],
            "kaggle_ref": r["ref"], "votes": r["votes"], "competitions": list(r["competition_sources"] or []),
        }
    return out


def latest_runs(*, session: Session, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """notebook id -> its latest reproduction {id, status, failure_class, same_plots, same_results}."""
    if not ids:
        return {}
    rows = session.connection().execute(
        text(
            """
            SELECT DISTINCT ON (notebook_id) notebook_id, id, status, failure_class, failure_detail, same_plots,
                   same_results
            FROM run WHERE notebook_id = ANY(:ids) ORDER BY notebook_id, request_id DESC, id DESC
            """
        ).bindparams(_IDS),
        {"ids": list(ids)},
    ).mappings()
    return {r["notebook_id"]: dict(r) for r in rows}


def first_places(*, session: Session, shas: Sequence[str]) -> dict[str, dict[str, Any]]:
    """image sha256 -> the first output that showed it {output_id, cell_id, notebook_id, n_places}."""
    if not shas:
        return {}
    rows = session.connection().execute(
        text(
            """
            SELECT k.sha AS sha256, f.output_id, f.cell_id, f.notebook_id, f.position,
                   (SELECT count(*) FROM output_image c WHERE c.image_sha256 = k.sha) AS n_places
            FROM unnest(CAST(:shas AS char(64)[])) AS k(sha)
            CROSS JOIN LATERAL (
                SELECT oi.output_id, o.cell_id, o.notebook_id, cl.position
                FROM output_image oi JOIN output o ON o.id = oi.output_id JOIN cell cl ON cl.id = o.cell_id
                WHERE oi.image_sha256 = k.sha ORDER BY oi.output_id, oi.mime LIMIT 1
            ) f
            """
        ),
        {"shas": [s.lower() for s in shas]},
    ).mappings()
    return {r["sha256"].strip(): dict(r, sha256=r["sha256"].strip()) for r in rows}
