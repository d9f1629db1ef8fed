"""Study jobs behind the ``nbatlas sample / codebook / annotator / annotations / agreement`` commands.

The work itself lives in ``db.queries.study`` (the workbench draws samples and computes agreement
too, and the API may not import ``ingest``): sample drawing (seeded hash order, strata, proportional
or equal allocation), Cohen's kappa for two annotators and Krippendorff's alpha (nominal) for any
number. Here are the parts only the command line needs: reading codebook files, writing the CSV
export, and the reports the commands print. Each job takes its session; callers commit.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session

from db.queries import study
from db.queries.study import (  # noqa: F401  the statistics, for scripts that import the jobs
    SampleSpec,
    StudyError,
    cohen_kappa,
    krippendorff_alpha_nominal,
)

CODEBOOK_COLUMNS = ("name", "description", "key")


@dataclass
class DrawReport:
    sample: dict[str, Any]
    created: bool

    def as_dict(self) -> dict[str, Any]:
        s = self.sample
        return {
            "name": s["name"], "created": self.created, "unit": s["unit"], "n_items": s["n_items"],
            "population": s["population"], "strata": s["strata"], "spec": s["spec"], "command": s["command"],
            "codebook": s.get("codebook"),
        }


def draw(
    *, session: Session, name: str, spec: SampleSpec, description: str = "", codebook: str | None = None
) -> DrawReport:
    """Draw and record the sample ``name`` (or find it, drawn with the same specification)."""
    codebook_id = study.require_codebook(session=session, name=codebook)["id"] if codebook else None
    sample, created = study.draw_sample(session=session, name=name, spec=spec, description=description,
                                        codebook_id=codebook_id)
    return DrawReport(sample, created)


def read_codebook_file(path: Path) -> list[dict[str, Any]]:
    """Codes from a CSV file (columns name, description, key; a header row) or a JSON list of
    objects with the same keys. Errors name the file and the row."""
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise StudyError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise StudyError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise StudyError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise StudyError(f"{path}: a JSON codebook is a list of objects with name, description, key")
        where = "item"
    else:
        reader = csv.DictReader(io.StringIO(raw))
        if not reader.fieldnames or "name" not in [f.strip().lower() for f in reader.fieldnames]:
            raise StudyError(f"{path}: a CSV codebook needs a header row with a 'name' column (and optionally "
                             "'description' and 'key')")
        rows = [{(k or "").strip().lower(): v for k, v in r.items()} for r in reader]
        where = "row"
    codes, seen = [], set()
    for i, row in enumerate(rows, start=2 if where == "row" else 1):
        name = str(row.get("name") or "").strip()
        if not name:
            raise StudyError(f"{path}: {where} {i} has no code name")
        if name in seen:
            raise StudyError(f"{path}: {where} {i}: code {name!r} appears twice")
        seen.add(name)
        unknown = set(row) - set(CODEBOOK_COLUMNS)
        if unknown:
            raise StudyError(f"{path}: {where} {i}: unknown column(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(CODEBOOK_COLUMNS)}")
        codes.append({k: row[k] for k in CODEBOOK_COLUMNS if k in row and row[k] is not None})
    return codes


def import_codebook(
    *, session: Session, path: Path, codebook: str, create: bool = True, description: str = ""
) -> dict[str, Any]:
    """Add the file's codes to a codebook (created when missing), updating codes of the same name."""
    codes = read_codebook_file(path)
    book = study.get_codebook(session=session, name=codebook)
    created_book = False
    if book is None:
        if not create:
            raise StudyError(f"no codebook named {codebook!r} (leave out --no-create to create it)")
        book = study.create_codebook(session=session, name=codebook, description=description)
        created_book = True
    try:
        created, updated = study.import_codes(session=session, codebook_id=book["id"], codes=codes)
    except StudyError as exc:
        raise StudyError(f"{path}: {exc}") from exc
    return {"codebook": book["name"], "codebook_created": created_book, "codes_created": created,
            "codes_updated": updated}


def export_annotations(
    *,
    session: Session,
    out: Path | None,
    sample: str | None = None,
    codebook: str | None = None,
    annotator: str | None = None,
    on_row: Callable[[], None] | None = None,
) -> int:
    """Write annotations as CSV (``out`` None: stdout); returns how many rows. The file appears
    whole or not at all (written next to it, then renamed)."""
    filters: dict[str, Any] = {}
    if sample:
        filters["sample_id"] = study.require_sample(session=session, name=sample)["id"]
    if codebook:
        filters["codebook_id"] = study.require_codebook(session=session, name=codebook)["id"]
    if annotator:
        match = [a for a in study.list_annotators(session=session) if a["name"] == annotator]
        if not match:
            raise StudyError(f"no annotator named {annotator!r}")
        filters["annotator_id"] = match[0]["id"]
    tmp = out.with_name(out.name + ".part") if out is not None else None
    n = 0
    sink = open(tmp, "w", newline="", encoding="utf-8") if tmp is not None else sys.stdout
    try:
        writer = csv.DictWriter(sink, fieldnames=study.EXPORT_COLUMNS)
        writer.writeheader()
        for row in study.iter_annotation_rows(session=session, **filters):
            writer.writerow({k: row[k] for k in study.EXPORT_COLUMNS})
            n += 1
            if on_row is not None:
                on_row()
    except BaseException:
        if tmp is not None:
            sink.close()
            tmp.unlink(missing_ok=True)
        raise
    if tmp is not None:
        sink.close()
        tmp.replace(out)
    return n


def agreement_report(*, session: Session, sample: str, codebook: str | None = None) -> dict[str, Any]:
    """Progress per annotator and agreement per code for a sample."""
    found = study.require_sample(session=session, name=sample)
    book = study.sample_codebook(session=session, sample=found, codebook=codebook)
    return {
        "sample": found["name"], "codebook": book["name"], "n_items": found["n_items"],
        "progress": study.progress(session=session, sample_id=found["id"], codebook_id=book["id"]),
        **study.agreement(session=session, sample_id=found["id"], codebook_id=book["id"]),
    }
