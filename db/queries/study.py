"""The qualitative study in SQL: annotators and their tokens, codebooks and codes, samples (drawn
reproducibly from a recorded specification), annotations, progress and inter-annotator agreement.

Everything here is shared by the CLI jobs (``ingest.study``) and the workbench/API (``api.workbench``),
which is why sample drawing and the agreement statistics live in ``db``: the API may not import
``ingest``. Functions take ``session`` and keyword arguments; user errors raise :class:`StudyError`
with a message meant for the researcher.

Sampling. The units matching the filter are put in the order of ``sha256("<seed>:<unit sha256>")``
(the image's or the notebook file's SHA-256, so the same seed on the same corpus draws the same
sample in any database), split into strata when asked, and each stratum gives its first ``quota``
units: proportional allocation by largest remainders, or equal allocation (capped by the stratum's
size, the rest shared among the others). The worklist keeps the overall hash order, so strata come
interleaved.

Agreement. For one code, a unit (an image, or a notebook with its cells) is coded by an annotator
when they applied any code of the codebook to it; the code's value for that annotator is then
"applied" or "not applied". Cohen's kappa is computed when exactly two annotators coded, over the
units both coded; Krippendorff's alpha (nominal) for any number, over units coded by at least two
(missing values allowed).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from db import vocab
from db.models.reproduce import RUN_STATUSES
from db.queries.codec import IMAGE_MIMES
from db.queries.filters import unknown_value_message
from db.queries.workbench import NO_KIND, PlotFilter

TOKEN_PREFIX = "nba_"
UNITS = ("image", "notebook")
STRATA = ("competition", "plot_kind", "stage")
ALLOCATIONS = ("proportional", "equal")
TARGET_KINDS = ("image", "cell", "notebook")
# keys the coding pages use themselves: next/previous cell (j/k), item (n/p), memo (m), help (?), search (/)
RESERVED_KEYS = frozenset("jknpm?/")
DEFAULT_KEYS = [k for k in "1234567890abcdefghiloqrstuvwxyz" if k not in RESERVED_KEYS]
MAX_SAMPLE = 100_000
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class StudyError(ValueError):
    """A request the study cannot fulfil; the message says why, in the researcher's words."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _check_name(kind: str, name: str) -> str:
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise StudyError(
            f"{kind} name {name!r} is not valid: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def _rows(session: Session, sql: str, params: dict | None = None) -> list[dict[str, Any]]:
    return [dict(r) for r in session.connection().execute(text(sql), params or {}).mappings()]


def _strip(sha: str | None) -> str | None:
    return sha.strip() if isinstance(sha, str) else sha


# ---------------------------------------------------------------- annotators


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    # tokens are 192 random bits: a plain hash is enough, nothing to brute-force
    return hashlib.sha256(token.strip().encode("utf-8")).hexdigest()


def create_annotator(*, session: Session, name: str) -> tuple[dict[str, Any], str]:
    """A new annotator and their personal token (returned once; only its hash is stored)."""
    name = _check_name("annotator", name)
    if _rows(session, "SELECT 1 FROM annotator WHERE name = :n", {"n": name}):
        raise StudyError(f"an annotator named {name!r} exists already (a new token: `nbatlas annotator token {name}`)")
    token = new_token()
    row = _rows(
        session,
        "INSERT INTO annotator (name, token_hash, created_at) VALUES (:n, :h, :t) RETURNING id, name, created_at",
        {"n": name, "h": hash_token(token), "t": _now()},
    )[0]
    return row, token


def rotate_token(*, session: Session, name: str) -> str:
    """A new token for an annotator; the old one stops working."""
    token = new_token()
    done = _rows(session, "UPDATE annotator SET token_hash = :h WHERE name = :n RETURNING id", {"h": hash_token(token), "n": name})
    if not done:
        raise StudyError(f"no annotator named {name!r} (`nbatlas annotator list` shows them)")
    return token


def annotator_by_token(*, session: Session, token: str | None) -> dict[str, Any] | None:
    if not token or not token.strip():
        return None
    found = _rows(session, "SELECT id, name, created_at FROM annotator WHERE token_hash = :h", {"h": hash_token(token)})
    return found[0] if found else None


def list_annotators(*, session: Session) -> list[dict[str, Any]]:
    return _rows(
        session,
        "SELECT a.id, a.name, a.created_at, (SELECT count(*) FROM annotation x WHERE x.annotator_id = a.id) AS n_annotations "
        "FROM annotator a ORDER BY a.name",
    )


# ---------------------------------------------------------------- codebooks and codes


def create_codebook(*, session: Session, name: str, description: str = "") -> dict[str, Any]:
    name = _check_name("codebook", name)
    if _rows(session, "SELECT 1 FROM codebook WHERE name = :n", {"n": name}):
        raise StudyError(f"a codebook named {name!r} exists already")
    return _rows(
        session,
        "INSERT INTO codebook (name, description, created_at) VALUES (:n, :d, :t) RETURNING id, name, description, created_at",
        {"n": name, "d": description or "", "t": _now()},
    )[0]


def get_codebook(*, session: Session, name: str | None = None, id: int | None = None) -> dict[str, Any] | None:
    if (name is None) == (id is None):
        raise ValueError("give a codebook name or id")
    found = _rows(
        session,
        "SELECT id, name, description, created_at FROM codebook WHERE " + ("name = :v" if name is not None else "id = :v"),
        {"v": name if name is not None else id},
    )
    return found[0] if found else None


def require_codebook(*, session: Session, name: str) -> dict[str, Any]:
    found = get_codebook(session=session, name=name)
    if found is None:
        known = [c["name"] for c in list_codebooks(session=session)]
        raise StudyError(f"no codebook named {name!r}" + (f"; known: {', '.join(known)}" if known else " (create one: `nbatlas codebook create NAME`)"))
    return found


def list_codebooks(*, session: Session) -> list[dict[str, Any]]:
    return _rows(
        session,
        """
        SELECT b.id, b.name, b.description, b.created_at,
               (SELECT count(*) FROM code c WHERE c.codebook_id = b.id) AS n_codes,
               (SELECT count(*) FROM annotation a JOIN code c ON c.id = a.code_id WHERE c.codebook_id = b.id) AS n_annotations
        FROM codebook b ORDER BY b.created_at DESC, b.id DESC
        """,
    )


def codes_of_codebooks(*, session: Session, ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return out
    for r in _rows(
        session,
        """
        SELECT c.id, c.codebook_id, c.name, c.description, c.key, c.position, c.created_at, c.updated_at,
               (SELECT count(*) FROM annotation a WHERE a.code_id = c.id) AS n_annotations
        FROM code c WHERE c.codebook_id = ANY(:ids) ORDER BY c.codebook_id, c.position, c.id
        """,
        {"ids": list(ids)},
    ):
        out[r["codebook_id"]].append(r)
    return out


def codes_by_id(*, session: Session, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    return {r["id"]: r for r in _rows(
        session, "SELECT id, codebook_id, name, description, key, position FROM code WHERE id = ANY(:ids)", {"ids": list(ids)}
    )}


def _check_key(key: str) -> str:
    if len(key) != 1 or key.isspace() or not key.isprintable():
        raise StudyError(f"a code's key is one printable character, not {key!r}")
    if key in RESERVED_KEYS:
        raise StudyError(f"key {key!r} is taken by the coding pages ({', '.join(sorted(RESERVED_KEYS))}): choose another")
    return key


def save_code(
    *,
    session: Session,
    codebook_id: int,
    name: str,
    description: str | None = None,
    key: str | None = None,
    code_id: int | None = None,
) -> dict[str, Any]:
    """Create a code (``code_id`` None) or change one. ``key`` None: a free default key for a new code,
    unchanged for an existing one; "" removes the key."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise StudyError("a code needs a name of 1-100 characters")
    existing = codes_of_codebooks(session=session, ids=[codebook_id])[codebook_id]
    others = [c for c in existing if c["id"] != code_id]
    if any(c["name"] == name for c in others):
        raise StudyError(f"the codebook has a code named {name!r} already")
    if key:
        _check_key(key)
        clash = next((c for c in others if c["key"] == key), None)
        if clash is not None:
            raise StudyError(f"key {key!r} is already the key of code {clash['name']!r}")
    if code_id is None:
        if key is None:
            used = {c["key"] for c in existing}
            key = next((k for k in DEFAULT_KEYS if k not in used), None)
        position = max((c["position"] for c in existing), default=-1) + 1
        return _rows(
            session,
            "INSERT INTO code (codebook_id, name, description, key, position, created_at, updated_at) "
            "VALUES (:b, :n, :d, :k, :p, :t, :t) RETURNING id, codebook_id, name, description, key, position",
            {"b": codebook_id, "n": name, "d": description or "", "k": key or None, "p": position, "t": _now()},
        )[0]
    if not any(c["id"] == code_id for c in existing):
        raise StudyError(f"code {code_id} is not in this codebook")
    sets, params = ["name = :n", "updated_at = :t"], {"n": name, "t": _now(), "id": code_id}
    if description is not None:
        sets.append("description = :d")
        params["d"] = description
    if key is not None:
        sets.append("key = :k")
        params["k"] = key or None
    return _rows(
        session,
        f"UPDATE code SET {', '.join(sets)} WHERE id = :id RETURNING id, codebook_id, name, description, key, position",
        params,
    )[0]


def import_codes(*, session: Session, codebook_id: int, codes: Iterable[dict[str, Any]]) -> tuple[int, int]:
    """Add or update codes by name ({name, description?, key?}); returns (created, updated)."""
    created = updated = 0
    for entry in codes:
        name = str(entry.get("name") or "").strip()
        current = {c["name"]: c for c in codes_of_codebooks(session=session, ids=[codebook_id])[codebook_id]}
        key = entry.get("key")
        key = str(key).strip() if key is not None and str(key).strip() else None
        description = entry.get("description")
        if name in current:
            save_code(session=session, codebook_id=codebook_id, name=name, code_id=current[name]["id"],
                      description=None if description is None else str(description), key=key)
            updated += 1
        else:
            save_code(session=session, codebook_id=codebook_id, name=name, description=str(description or ""), key=key)
            created += 1
    return created, updated


# ---------------------------------------------------------------- samples


@dataclass(frozen=True)
class SampleSpec:
    """Everything that decides a draw."""

    n: int
    seed: int
    unit: str = "image"
    stratify_by: str | None = None
    allocation: str = "proportional"
    filter: PlotFilter = field(default_factory=PlotFilter)

    def check(self) -> SampleSpec:
        if self.unit not in UNITS:
            raise StudyError(f"a sample is of {' or '.join(UNITS)}s, not {self.unit!r}")
        if not 1 <= self.n <= MAX_SAMPLE:
            raise StudyError(f"the sample size must be between 1 and {MAX_SAMPLE:,}, not {self.n}")
        if self.stratify_by is not None and self.stratify_by not in STRATA:
            raise StudyError(f"stratify by one of {', '.join(STRATA)}, not {self.stratify_by!r}")
        if self.allocation not in ALLOCATIONS:
            raise StudyError(f"allocation is {' or '.join(ALLOCATIONS)}, not {self.allocation!r}")
        self._check_vocabularies()
        return self

    def _check_vocabularies(self) -> None:
        """A filter value outside its closed vocabulary would draw from nothing: refuse it by name."""
        closed = {"plot_kind": (*vocab.PLOT_KINDS, NO_KIND), "stage": vocab.STAGES, "run_status": RUN_STATUSES,
                  "mime": IMAGE_MIMES}
        for key, known in closed.items():
            for value in getattr(self.filter, key) or ():
                if value not in known:
                    raise StudyError(unknown_value_message(key, value, known))

    def as_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit, "n": self.n, "seed": self.seed, "stratify_by": self.stratify_by,
            "allocation": self.allocation, "filter": self.filter.as_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SampleSpec:
        flt = {k: tuple(v) if isinstance(v, list) else v for k, v in (d.get("filter") or {}).items()}
        return cls(n=d["n"], seed=d["seed"], unit=d.get("unit", "image"), stratify_by=d.get("stratify_by"),
                   allocation=d.get("allocation", "proportional"), filter=PlotFilter(**flt))

    def command(self, name: str) -> str:
        """The ``nbatlas sample`` command that draws this sample."""
        import shlex

        parts = ["nbatlas", "sample", "--name", name, "--n", str(self.n), "--seed", str(self.seed), "--unit", self.unit]
        if self.stratify_by:
            parts += ["--stratify-by", self.stratify_by]
            if self.allocation != "proportional":
                parts += ["--allocation", self.allocation]
        for f in fields(self.filter):
            value = getattr(self.filter, f.name)
            if value is None:
                continue
            option = "--" + f.name.replace("_", "-")
            for v in value if isinstance(value, tuple) else (value,):
                parts += [option, str(v)]
        return " ".join(shlex.quote(p) for p in parts)


def allocate(sizes: dict[str, int], n: int, method: str = "proportional") -> dict[str, int]:
    """How many units each stratum gives to a sample of ``n`` (all of them when n covers the population)."""
    total = sum(sizes.values())
    if n >= total:
        return dict(sizes)
    quota = {s: 0 for s in sizes}
    if method == "proportional":
        # integer arithmetic: n * size / total as quotient and remainder, no float ties
        for s, size in sizes.items():
            quota[s] = n * size // total
        left = n - sum(quota.values())
        order = sorted(sizes, key=lambda s: (-(n * sizes[s] % total), -sizes[s], s))
        for s in order[:left]:
            quota[s] += 1
        return quota
    if method != "equal":
        raise StudyError(f"allocation is {' or '.join(ALLOCATIONS)}, not {method!r}")
    remaining = n
    open_ = sorted(s for s in sizes if sizes[s] > 0)
    while remaining > 0 and open_:
        share = remaining // len(open_)
        if share == 0:
            for s in open_[:remaining]:  # the last few, one each, to the strata in name order
                quota[s] += 1
            break
        for s in open_:
            take = min(share, sizes[s] - quota[s])
            quota[s] += take
            remaining -= take
        open_ = [s for s in open_ if quota[s] < sizes[s]]
    return quota


def draw_order(seed: int, basis: str) -> str:
    return hashlib.sha256(f"{seed}:{basis}".encode("ascii")).hexdigest()


_FIGURES = """
    FROM output_image oi
    JOIN output o ON o.id = oi.output_id
    JOIN image i ON i.sha256 = oi.image_sha256
    LEFT JOIN output_plot p ON p.output_id = oi.output_id AND p.mime = oi.mime
    LEFT JOIN cell_analysis ca ON ca.cell_id = o.cell_id
"""
_COMPETITION = (
    "coalesce((SELECT min(c) FROM kaggle_kernel k, unnest(k.competition_sources) AS c "
    "WHERE k.notebook_id = o.notebook_id), '(none)')"
)
_FIGURE_STRATUM = {
    "competition": _COMPETITION,
    "plot_kind": "coalesce(p.plot_kinds[1], '(none)')",
    "stage": "coalesce(ca.stage, '(unknown)')",
}
_FIGURE_CRITERIA = ("plot_kind", "library", "stage", "mime", "text")


def sample_population(
    *, session: Session, unit: str, filter: PlotFilter, stratify_by: str | None
) -> list[tuple[Hashable, str, str | None]]:
    """The units matching ``filter``: (key, content SHA-256, stratum or None). Images are keyed by
    SHA-256; notebooks by id (with the file's SHA-256 for the draw order)."""
    where, params = filter.sql()
    cond = "".join(f" AND {w}" for w in where)
    if unit == "image":
        stratum = _FIGURE_STRATUM[stratify_by] if stratify_by else "NULL"
        rows = session.connection().execute(
            text(
                f"SELECT DISTINCT ON (oi.image_sha256) oi.image_sha256, {stratum} AS stratum {_FIGURES} WHERE true{cond} "
                "ORDER BY oi.image_sha256, oi.output_id, oi.mime"
            ),
            params,
        )
        return [(sha.strip(), sha.strip(), s) for sha, s in rows]
    if any(getattr(filter, name) for name in _FIGURE_CRITERIA):
        # notebooks with at least one matching figure; their stratum is the most frequent among those figures
        stratum = f"mode() WITHIN GROUP (ORDER BY {_FIGURE_STRATUM[stratify_by]})" if stratify_by else "NULL"
        sql = (
            f"SELECT o.notebook_id, n.sha256, {stratum} AS stratum {_FIGURES} JOIN notebook n ON n.id = o.notebook_id "
            f"WHERE true{cond} GROUP BY o.notebook_id, n.sha256"
        )
    else:
        strata = {
            None: "NULL",
            "competition": _COMPETITION,
            "plot_kind": "coalesce((SELECT mode() WITHIN GROUP (ORDER BY coalesce(p.plot_kinds[1], '(none)')) "
                         "FROM output_plot p WHERE p.notebook_id = o.notebook_id AND p.image_sha256 IS NOT NULL), '(none)')",
            "stage": "coalesce((SELECT mode() WITHIN GROUP (ORDER BY ca.stage) FROM output_plot p "
                     "JOIN cell_analysis ca ON ca.cell_id = p.cell_id WHERE p.notebook_id = o.notebook_id), '(none)')",
        }
        sql = (
            f"SELECT o.notebook_id, o.sha256, {strata[stratify_by]} AS stratum "
            f"FROM (SELECT id AS notebook_id, sha256 FROM notebook) o WHERE true{cond}"
        )
    return [(nid, sha.strip(), s) for nid, sha, s in session.connection().execute(text(sql), params)]


def get_sample(*, session: Session, name: str | None = None, id: int | None = None) -> dict[str, Any] | None:
    if (name is None) == (id is None):
        raise ValueError("give a sample name or id")
    found = _rows(
        session,
        "SELECT s.*, b.name AS codebook, a.name AS created_by_name FROM sample s "
        "LEFT JOIN codebook b ON b.id = s.codebook_id LEFT JOIN annotator a ON a.id = s.created_by WHERE "
        + ("s.name = :v" if name is not None else "s.id = :v"),
        {"v": name if name is not None else id},
    )
    return found[0] if found else None


def require_sample(*, session: Session, name: str) -> dict[str, Any]:
    found = get_sample(session=session, name=name)
    if found is None:
        known = [s["name"] for s in list_samples(session=session)]
        raise StudyError(f"no sample named {name!r}" + (f"; known: {', '.join(known[:20])}" if known else " (draw one: `nbatlas sample`)"))
    return found


def list_samples(*, session: Session) -> list[dict[str, Any]]:
    return _rows(
        session,
        "SELECT s.id, s.name, s.unit, s.n_items, s.population, s.spec, s.command, s.description, s.created_at, "
        "b.name AS codebook FROM sample s LEFT JOIN codebook b ON b.id = s.codebook_id ORDER BY s.created_at DESC, s.id DESC",
    )


def draw_sample(
    *,
    session: Session,
    name: str,
    spec: SampleSpec,
    description: str = "",
    codebook_id: int | None = None,
    created_by: int | None = None,
) -> tuple[dict[str, Any], bool]:
    """Draw and record a sample. Returns (sample, created): a sample of that name drawn with the same
    specification is returned as it is (created False); with another specification it is an error."""
    name = _check_name("sample", name)
    spec.check()
    existing = get_sample(session=session, name=name)
    if existing is not None:
        if existing["spec"] == spec.as_dict():
            return existing, False
        raise StudyError(
            f"a sample named {name!r} exists with another specification ({existing['command']}): choose another name"
        )
    population = sample_population(session=session, unit=spec.unit, filter=spec.filter, stratify_by=spec.stratify_by)
    if not population:
        raise StudyError(f"no {spec.unit} matches the sample's filter {spec.filter.as_dict() or '(none)'}: nothing to draw")
    by_stratum: dict[str | None, list[tuple[str, Hashable]]] = defaultdict(list)
    for key, basis, stratum in population:
        by_stratum[stratum].append((draw_order(spec.seed, basis), key))
    sizes = {s: len(v) for s, v in by_stratum.items()}
    quota = allocate({str(s): n for s, n in sizes.items()}, spec.n, spec.allocation) if spec.stratify_by else {"None": spec.n}
    drawn: list[tuple[str, Hashable, str | None]] = []
    for stratum, units in by_stratum.items():
        units.sort()
        take = quota[str(stratum)]
        drawn.extend((order, key, stratum) for order, key in units[:take])
    drawn.sort()
    strata = (
        {str(s): [sizes[s], quota[str(s)]] for s in sorted(sizes, key=lambda s: (-sizes[s], str(s)))}
        if spec.stratify_by else None
    )
    sample = _rows(
        session,
        """
        INSERT INTO sample (name, unit, spec, command, description, population, strata, n_items, codebook_id, created_by, created_at)
        VALUES (:name, :unit, CAST(:spec AS jsonb), :command, :description, :population, CAST(:strata AS jsonb), :n,
                :codebook, :by, :t)
        RETURNING id
        """,
        {
            "name": name, "unit": spec.unit, "spec": _json(spec.as_dict()), "command": spec.command(name),
            "description": description or "", "population": len(population), "strata": _json(strata),
            "n": len(drawn), "codebook": codebook_id, "by": created_by, "t": _now(),
        },
    )[0]
    column = "image_sha256" if spec.unit == "image" else "notebook_id"
    raw = session.connection().connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY sample_item (sample_id, position, {column}, stratum) FROM STDIN") as copy:
        for position, (_order, key, stratum) in enumerate(drawn):
            copy.write_row((sample["id"], position, key, stratum))
    return get_sample(session=session, id=sample["id"]), True


def _json(value: Any) -> str | None:
    import orjson

    return None if value is None else orjson.dumps(value).decode()


def set_sample_codebook(*, session: Session, sample_id: int, codebook_id: int | None) -> None:
    session.connection().execute(text("UPDATE sample SET codebook_id = :b WHERE id = :s"), {"b": codebook_id, "s": sample_id})


def sample_items(
    *, session: Session, sample_id: int, first: int = 100, after: int | None = None
) -> list[dict[str, Any]]:
    """Up to ``first + 1`` items in worklist order (keyset on position)."""
    rows = _rows(
        session,
        "SELECT position, image_sha256, notebook_id, stratum FROM sample_item WHERE sample_id = :s AND position > :a "
        "ORDER BY position LIMIT :l",
        {"s": sample_id, "a": -1 if after is None else after, "l": first + 1},
    )
    for r in rows:
        r["image_sha256"] = _strip(r["image_sha256"])
    return rows


def item_position(*, session: Session, sample_id: int, image_sha256: str | None = None,
                  notebook_id: int | None = None) -> int | None:
    column, value = ("image_sha256", image_sha256.lower()) if image_sha256 else ("notebook_id", notebook_id)
    found = _rows(session, f"SELECT position FROM sample_item WHERE sample_id = :s AND {column} = :v", {"s": sample_id, "v": value})
    return found[0]["position"] if found else None


def item_neighbours(*, session: Session, sample_id: int, position: int) -> dict[str, dict[str, Any] | None]:
    """The items before and after ``position`` in the worklist."""
    out: dict[str, dict[str, Any] | None] = {}
    for side, op, order in (("previous", "<", "DESC"), ("next", ">", "ASC")):
        found = _rows(
            session,
            f"SELECT position, image_sha256, notebook_id FROM sample_item WHERE sample_id = :s AND position {op} :p "
            f"ORDER BY position {order} LIMIT 1",
            {"s": sample_id, "p": position},
        )
        out[side] = dict(found[0], image_sha256=_strip(found[0]["image_sha256"])) if found else None
    return out


def samples_of_targets(*, session: Session, image_sha256: str | None = None, notebook_id: int | None = None) -> list[dict[str, Any]]:
    """The samples an image or notebook is an item of."""
    column, value = ("image_sha256", image_sha256.lower()) if image_sha256 else ("notebook_id", notebook_id)
    return _rows(
        session,
        f"SELECT s.id, s.name, i.position, s.n_items FROM sample_item i JOIN sample s ON s.id = i.sample_id "
        f"WHERE i.{column} = :v ORDER BY s.created_at DESC",
        {"v": value},
    )


# ---------------------------------------------------------------- annotations


@dataclass(frozen=True)
class Target:
    """What is coded: an image (by SHA-256), a cell or a notebook (by id)."""

    kind: str
    image_sha256: str | None = None
    cell_id: int | None = None
    notebook_id: int | None = None

    @classmethod
    def parse(cls, value: str) -> Target:
        """From ``image:<sha256>``, ``cell:<id>`` or ``notebook:<id>``."""
        kind, _, key = (value or "").partition(":")
        try:
            if kind == "image" and re.fullmatch(r"[0-9a-fA-F]{64}", key):
                return cls("image", image_sha256=key.lower())
            if kind == "cell":
                return cls("cell", cell_id=int(key))
            if kind == "notebook":
                return cls("notebook", notebook_id=int(key))
        except ValueError:
            pass
        raise StudyError(f"a target is image:<sha256>, cell:<id> or notebook:<id>, not {value!r}")

    def __str__(self) -> str:
        key = {"image": self.image_sha256, "cell": self.cell_id, "notebook": self.notebook_id}[self.kind]
        return f"{self.kind}:{key}"


def _resolve_target(session: Session, target: Target) -> Target:
    if target.kind == "image":
        if not _rows(session, "SELECT 1 FROM image WHERE sha256 = :s", {"s": target.image_sha256}):
            raise StudyError(f"no image {target.image_sha256}")
        return target
    if target.kind == "cell":
        found = _rows(session, "SELECT notebook_id FROM cell WHERE id = :c", {"c": target.cell_id})
        if not found:
            raise StudyError(f"no cell {target.cell_id}")
        return replace(target, notebook_id=found[0]["notebook_id"])
    if target.kind == "notebook":
        if not _rows(session, "SELECT 1 FROM notebook WHERE id = :n", {"n": target.notebook_id}):
            raise StudyError(f"no notebook {target.notebook_id}")
        return target
    raise StudyError(f"a target is an image, a cell or a notebook, not {target.kind!r}")


_ANNOTATION_COLUMNS = (
    "a.id, a.code_id, a.annotator_id, a.target_kind, a.image_sha256, a.cell_id, a.notebook_id, a.sample_id, a.memo, "
    "a.created_at, a.updated_at"
)


def annotate(
    *,
    session: Session,
    annotator_id: int,
    code_id: int,
    target: Target,
    sample_id: int | None = None,
    memo: str | None = None,
) -> dict[str, Any]:
    """Apply a code to a target (again: keeps the annotation, updating its memo when one is given)."""
    if not codes_by_id(session=session, ids=[code_id]):
        raise StudyError(f"no code {code_id}")
    target = _resolve_target(session, target)
    if memo is not None and len(memo) > 10_000:
        raise StudyError("a memo holds at most 10,000 characters")
    now = _now()
    row = _rows(
        session,
        """
        INSERT INTO annotation (code_id, annotator_id, target_kind, image_sha256, cell_id, notebook_id, sample_id, memo,
                                created_at, updated_at)
        VALUES (:code, :who, :kind, :img, :cell, :nb, :sample, :memo, :t, :t)
        ON CONFLICT (annotator_id, code_id, image_sha256, cell_id, notebook_id)
        DO UPDATE SET memo = coalesce(EXCLUDED.memo, annotation.memo), updated_at = EXCLUDED.updated_at
        RETURNING id
        """,
        {
            "code": code_id, "who": annotator_id, "kind": target.kind, "img": target.image_sha256,
            "cell": target.cell_id if target.kind == "cell" else None, "nb": target.notebook_id, "sample": sample_id,
            "memo": memo, "t": now,
        },
    )[0]
    return annotations_by_id(session=session, ids=[row["id"]])[row["id"]]


def annotations_by_id(*, session: Session, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    rows = _rows(
        session,
        f"SELECT {_ANNOTATION_COLUMNS}, c.name AS code, c.key AS code_key, c.codebook_id, w.name AS annotator "
        "FROM annotation a JOIN code c ON c.id = a.code_id JOIN annotator w ON w.id = a.annotator_id WHERE a.id = ANY(:ids)",
        {"ids": list(ids)},
    )
    return {r["id"]: dict(r, image_sha256=_strip(r["image_sha256"])) for r in rows}


def remove_annotation(*, session: Session, annotator_id: int, annotation_id: int) -> bool:
    """Remove one of the annotator's own annotations; False when there is none with that id."""
    done = _rows(
        session, "DELETE FROM annotation WHERE id = :id AND annotator_id = :who RETURNING id",
        {"id": annotation_id, "who": annotator_id},
    )
    return bool(done)


def set_memo(*, session: Session, annotator_id: int, annotation_id: int, memo: str | None) -> dict[str, Any] | None:
    if memo is not None and len(memo) > 10_000:
        raise StudyError("a memo holds at most 10,000 characters")
    done = _rows(
        session,
        "UPDATE annotation SET memo = :m, updated_at = :t WHERE id = :id AND annotator_id = :who RETURNING id",
        {"m": memo or None, "t": _now(), "id": annotation_id, "who": annotator_id},
    )
    return annotations_by_id(session=session, ids=[annotation_id])[annotation_id] if done else None


def annotations_on(
    *, session: Session, annotator_id: int, codebook_id: int, image_sha256: str | None = None, notebook_id: int | None = None
) -> list[dict[str, Any]]:
    """One annotator's annotations (with this codebook) on an image, or on a notebook and its cells."""
    if image_sha256 is not None:
        cond, value = "a.image_sha256 = :v", image_sha256.lower()
    else:
        cond, value = "a.notebook_id = :v", notebook_id
    rows = _rows(
        session,
        f"SELECT {_ANNOTATION_COLUMNS}, c.name AS code, c.key AS code_key FROM annotation a JOIN code c ON c.id = a.code_id "
        f"WHERE a.annotator_id = :who AND c.codebook_id = :b AND {cond} ORDER BY a.id",
        {"who": annotator_id, "b": codebook_id, "v": value},
    )
    return [dict(r, image_sha256=_strip(r["image_sha256"])) for r in rows]


def _item_join(unit: str) -> str:
    # an image item is coded on the image; a notebook item on the notebook or any of its cells
    return "a.image_sha256 = si.image_sha256" if unit == "image" else "a.notebook_id = si.notebook_id"


EXPORT_COLUMNS = (
    "annotation_id", "codebook", "code", "code_key", "annotator", "target_kind", "image_sha256", "notebook_id",
    "notebook_sha256", "cell_id", "cell_position", "memo", "coded_in_sample", "created_at", "updated_at",
)


def annotation_rows(
    *,
    session: Session,
    sample_id: int | None = None,
    codebook_id: int | None = None,
    annotator_id: int | None = None,
    after: int | None = None,
    first: int = 1000,
) -> list[dict[str, Any]]:
    """Annotations in id order (keyset), with names instead of ids, in ``EXPORT_COLUMNS``. With a
    sample: the annotations on its items, wherever they were coded."""
    where, params = ["a.id > :after"], {"after": after or 0, "first": first}
    if codebook_id is not None:
        where.append("c.codebook_id = :b")
        params["b"] = codebook_id
    if annotator_id is not None:
        where.append("a.annotator_id = :who")
        params["who"] = annotator_id
    if sample_id is not None:
        sample = get_sample(session=session, id=sample_id)
        where.append(f"EXISTS (SELECT 1 FROM sample_item si WHERE si.sample_id = :s AND {_item_join(sample['unit'])})")
        params["s"] = sample_id
    rows = _rows(
        session,
        f"""
        SELECT a.id AS annotation_id, b.name AS codebook, c.name AS code, c.key AS code_key, w.name AS annotator,
               a.target_kind, a.image_sha256, a.notebook_id, n.sha256 AS notebook_sha256, a.cell_id,
               cl.position AS cell_position, a.memo, s.name AS coded_in_sample, a.created_at, a.updated_at
        FROM annotation a
        JOIN code c ON c.id = a.code_id JOIN codebook b ON b.id = c.codebook_id JOIN annotator w ON w.id = a.annotator_id
        LEFT JOIN notebook n ON n.id = a.notebook_id LEFT JOIN cell cl ON cl.id = a.cell_id
        LEFT JOIN sample s ON s.id = a.sample_id
        WHERE {' AND '.join(where)} ORDER BY a.id LIMIT :first
        """,
        params,
    )
    for r in rows:
        r["image_sha256"] = _strip(r["image_sha256"])
        r["notebook_sha256"] = _strip(r["notebook_sha256"])
    return rows


def iter_annotation_rows(*, session: Session, batch: int = 5000, **filters: Any) -> Iterator[dict[str, Any]]:
    after = None
    while True:
        rows = annotation_rows(session=session, after=after, first=batch, **filters)
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1]["annotation_id"]


# ---------------------------------------------------------------- progress and agreement


def sample_codebook(*, session: Session, sample: dict[str, Any], codebook: str | None = None) -> dict[str, Any]:
    """The codebook a sample is coded with: the one named, else the sample's own, else the only one used on it."""
    if codebook:
        return require_codebook(session=session, name=codebook)
    if sample.get("codebook_id"):
        return get_codebook(session=session, id=sample["codebook_id"])
    used = _rows(
        session,
        f"SELECT DISTINCT c.codebook_id FROM sample_item si JOIN annotation a ON {_item_join(sample['unit'])} "
        "JOIN code c ON c.id = a.code_id WHERE si.sample_id = :s",
        {"s": sample["id"]},
    )
    if len(used) == 1:
        return get_codebook(session=session, id=used[0]["codebook_id"])
    if not used:
        raise StudyError(f"sample {sample['name']!r} has no codebook and nothing coded yet: name a codebook")
    raise StudyError(f"sample {sample['name']!r} is coded with several codebooks: name one")


def coding(*, session: Session, sample_id: int, codebook_id: int) -> dict[tuple[Hashable, int], set[int]]:
    """(item key, annotator id) -> the codes the annotator applied to the item, for every item they coded."""
    sample = get_sample(session=session, id=sample_id)
    key = "si.image_sha256" if sample["unit"] == "image" else "si.notebook_id"
    out: dict[tuple[Hashable, int], set[int]] = defaultdict(set)
    for item, who, code in session.connection().execute(
        text(
            f"SELECT {key}, a.annotator_id, a.code_id FROM sample_item si JOIN annotation a ON {_item_join(sample['unit'])} "
            "JOIN code c ON c.id = a.code_id WHERE si.sample_id = :s AND c.codebook_id = :b"
        ),
        {"s": sample_id, "b": codebook_id},
    ):
        out[(_strip(item), who)].add(code)
    return out


def progress(*, session: Session, sample_id: int, codebook_id: int) -> list[dict[str, Any]]:
    """Per annotator who coded anything in the sample: items coded, of how many."""
    sample = get_sample(session=session, id=sample_id)
    done = Counter(who for (_item, who) in coding(session=session, sample_id=sample_id, codebook_id=codebook_id))
    names = {a["id"]: a["name"] for a in list_annotators(session=session)}
    return [
        {"annotator_id": who, "annotator": names[who], "coded": n, "total": sample["n_items"],
         "share": n / sample["n_items"] if sample["n_items"] else 0.0}
        for who, n in sorted(done.items(), key=lambda kv: names[kv[0]])
    ]


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two annotators' labels on the same units; None when chance agreement is
    total (both gave one and the same label to every unit: kappa is undefined)."""
    if len(a) != len(b):
        raise ValueError("two annotators' labels for the same units, in the same order")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in ca) / (n * n)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)


def krippendorff_alpha_nominal(units: Sequence[Sequence[Hashable | None]]) -> float | None:
    """Krippendorff's alpha for nominal data. ``units`` holds, per unit, each coder's value or None
    (missing). Units with fewer than two values are not pairable and are left out. None when there
    is no disagreement to expect (a single value overall, or fewer than two pairable values)."""
    coincidence: dict[tuple[Hashable, Hashable], float] = defaultdict(float)
    for unit in units:
        values = [v for v in unit if v is not None]
        m = len(values)
        if m < 2:
            continue
        for i, c in enumerate(values):
            for j, k in enumerate(values):
                if i != j:
                    coincidence[(c, k)] += 1 / (m - 1)
    totals: dict[Hashable, float] = defaultdict(float)
    for (c, _k), w in coincidence.items():
        totals[c] += w
    n = sum(totals.values())
    if n < 2:
        return None
    disagreement = sum(w for (c, k), w in coincidence.items() if c != k)
    expected = sum(totals[c] * totals[k] for c in totals for k in totals if c != k)
    if expected == 0:
        return None
    return 1 - (n - 1) * disagreement / expected


def agreement(*, session: Session, sample_id: int, codebook_id: int) -> dict[str, Any]:
    """Per code of the codebook: units coded by two or more annotators, observed agreement,
    Cohen's kappa (exactly two annotators) and Krippendorff's alpha (nominal), plus how often each
    annotator applied it."""
    coded = coding(session=session, sample_id=sample_id, codebook_id=codebook_id)
    names = {a["id"]: a["name"] for a in list_annotators(session=session)}
    annotators = sorted({who for (_item, who) in coded}, key=lambda w: names[w])
    items = sorted({item for (item, _who) in coded}, key=str)
    codes = codes_of_codebooks(session=session, ids=[codebook_id])[codebook_id]
    per_code = []
    for code in codes:
        cid = code["id"]
        matrix = [[(cid in coded[(item, who)]) if (item, who) in coded else None for who in annotators] for item in items]
        pairable = [row for row in matrix if sum(v is not None for v in row) >= 2]
        pairs = agree = 0
        for row in pairable:
            values = [v for v in row if v is not None]
            for i in range(len(values)):
                for j in range(i + 1, len(values)):
                    pairs += 1
                    agree += values[i] == values[j]
        kappa = None
        if len(annotators) == 2:
            both = [row for row in matrix if row[0] is not None and row[1] is not None]
            kappa = cohen_kappa([r[0] for r in both], [r[1] for r in both])
        per_code.append({
            "code_id": cid, "code": code["name"], "key": code["key"], "units": len(pairable),
            "percent_agreement": agree / pairs if pairs else None, "kappa": kappa,
            "alpha": krippendorff_alpha_nominal(matrix),
            "applied": {names[who]: sum(1 for item in items if cid in coded.get((item, who), ())) for who in annotators},
        })
    return {
        "annotators": [names[w] for w in annotators],
        "items_coded": len(items),
        "metric": "kappa" if len(annotators) == 2 else "alpha",
        "codes": per_code,
    }
