"""What the corpus holds, in numbers: ``nbatlas stats`` and the API's corpus counts."""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel import Session

# ``problems`` counts files that are not in the corpus: places with an error-severity problem from
# which no notebook was ingested (neither those bytes elsewhere nor anything later at that place)
_FILES_NOT_INGESTED = """
SELECT count(*) FROM (
    SELECT DISTINCT p.location, p.member FROM problem p
    WHERE p.severity = 'error'
      AND NOT EXISTS (SELECT 1 FROM notebook n WHERE n.sha256 = p.file_sha256)
      AND NOT EXISTS (SELECT 1 FROM source s WHERE s.location = p.location AND s.member = p.member)
) AS not_ingested
"""


def corpus_stats(*, session: Session) -> dict[str, int]:
    """Counts over the whole corpus.

    * ``notebooks``: distinct notebook files (by SHA-256 of their bytes); ``sources``: places found.
    * ``cells``, ``outputs``: all of them; ``image_outputs``: outputs carrying image/png, image/jpeg,
      image/gif or image/svg+xml (nbformat 3's png/jpeg/svg keys upgraded to those), each once.
    * ``images``: distinct image blobs (SHA-256 of the decoded bytes; of the text for SVG).
    * ``problems``: files not ingested; ``warnings``: caveats recorded on ingested notebooks.
    """
    row = session.execute(
        text(
            "SELECT count(*), coalesce(sum(n_cells), 0), coalesce(sum(n_outputs), 0), "
            "coalesce(sum(n_image_outputs), 0), coalesce(sum(size_bytes), 0), "
            "count(*) FILTER (WHERE original_nbformat < 4) FROM notebook"
        )
    ).one()
    images, image_bytes = session.execute(text("SELECT count(*), coalesce(sum(size_bytes), 0) FROM image")).one()
    warnings, notebooks_with_warnings = session.execute(
        text("SELECT count(*), count(DISTINCT notebook_id) FROM problem WHERE severity = 'warning'")
    ).one()
    return {
        "notebooks": int(row[0]),
        "cells": int(row[1]),
        "outputs": int(row[2]),
        "image_outputs": int(row[3]),
        "images": int(images),
        "problems": int(session.execute(text(_FILES_NOT_INGESTED)).scalar_one()),
        "warnings": int(warnings),
        "notebooks_with_warnings": int(notebooks_with_warnings),
        "sources": int(session.execute(text("SELECT count(*) FROM source")).scalar_one()),
        "upgraded_to_v4": int(row[5]),
        "runs": int(session.execute(text("SELECT count(*) FROM ingest_run")).scalar_one()),
        "notebook_bytes": int(row[4]),
        "image_bytes": int(image_bytes),
    }
