"""What each page shows, assembled in one database session from the ``db.queries`` functions.

Each ``*_page`` function runs in a worker thread (``Database.read``) and returns plain dicts for the
templates; no SQL here, only calls to query functions and shaping of their rows.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from db.queries import browse, study, workbench
from db.queries import similarity as sim
from db.queries import understand

GALLERY_PAGE = 48
COUNT_CAP = 1000
NOTEBOOK_CELLS = 400
SIMILAR = 12


def _codebook_choice(session: Session, codebook_id: int | None, sample: dict | None) -> dict | None:
    if codebook_id is not None:
        found = study.get_codebook(session=session, id=codebook_id)
        if found is not None:
            return found
    if sample is not None and sample.get("codebook_id"):
        return study.get_codebook(session=session, id=sample["codebook_id"])
    books = study.list_codebooks(session=session)
    return books[0] if books else None


def coding_context(
    session: Session,
    *,
    annotator: dict | None,
    codebook_id: int | None,
    sample_name: str | None,
    image_sha256: str | None = None,
    notebook_id: int | None = None,
) -> dict[str, Any]:
    """The coding panel: the codebook and its codes, the annotator's codes on the target, and the
    place in the sample's worklist."""
    sample = study.get_sample(session=session, name=sample_name) if sample_name else None
    codebook = _codebook_choice(session, codebook_id, sample)
    out: dict[str, Any] = {
        "sample": sample, "codebook": codebook, "codebooks": study.list_codebooks(session=session),
        "codes": [], "applied": {}, "position": None, "previous": None, "next": None,
    }
    if codebook is not None:
        out["codes"] = study.codes_of_codebooks(session=session, ids=[codebook["id"]])[codebook["id"]]
    if sample is not None:
        position = study.item_position(session=session, sample_id=sample["id"], image_sha256=image_sha256,
                                       notebook_id=notebook_id)
        out["position"] = position
        if position is not None:
            out.update(study.item_neighbours(session=session, sample_id=sample["id"], position=position))
    if annotator is not None and codebook is not None:
        rows = study.annotations_on(
            session=session, annotator_id=annotator["id"], codebook_id=codebook["id"],
            image_sha256=image_sha256, notebook_id=None if image_sha256 else notebook_id,
        )
        applied: dict[str, dict[int, dict]] = {}
        for r in rows:
            key = (f"image:{r['image_sha256']}" if r["target_kind"] == "image"
                   else f"cell:{r['cell_id']}" if r["target_kind"] == "cell" else f"notebook:{r['notebook_id']}")
            applied.setdefault(key, {})[r["code_id"]] = {"id": r["id"], "memo": r["memo"]}
        out["applied"] = applied
    return out


def gallery_page(
    *, session: Session, filter: workbench.PlotFilter, after: tuple[int, str] | None, values: dict | None
) -> dict[str, Any]:
    rows = workbench.gallery_page(session=session, filter=filter, first=GALLERY_PAGE, after=after)
    has_next = len(rows) > GALLERY_PAGE
    rows = rows[:GALLERY_PAGE]
    values = values if values is not None else workbench.gallery_filter_values(session=session)
    # counted on the first page only, and up to COUNT_CAP: an exact count of a broad filter costs
    # a scan of every matching figure
    count = None
    if after is None:
        count = values["total"] if filter.is_empty() else workbench.gallery_count(
            session=session, filter=filter, limit=COUNT_CAP)
    return {
        "tiles": rows,
        "next": f"{rows[-1]['output_id']}:{rows[-1]['mime']}" if has_next and rows else None,
        "count": count, "count_cap": COUNT_CAP, "values": values,
    }


def _tiles(session: Session, shas: list[str]) -> list[dict[str, Any]]:
    images = browse.images_by_sha256(session=session, ids=shas)
    kinds = understand.plot_kinds_for_images(session=session, shas=shas)
    return [
        {"sha256": s, "mime": images[s].mime, "width": images[s].width, "height": images[s].height,
         "plot_kinds": kinds.get(s, [])}
        for s in shas if s in images
    ]


def plot_page(*, session: Session, sha256: str, image_model: str, coding: dict | None) -> dict[str, Any] | None:
    images = browse.images_by_sha256(session=session, ids=[sha256])
    if sha256 not in images:
        return None
    image = images[sha256]
    places = understand.plots_for_images(session=session, shas=[sha256])[sha256]
    first = workbench.first_places(session=session, shas=[sha256]).get(sha256)
    cell_ids = list(dict.fromkeys([p["cell_id"] for p in places] or ([first["cell_id"]] if first else [])))
    notebook_ids = list(dict.fromkeys([p["notebook_id"] for p in places] or ([first["notebook_id"]] if first else [])))
    cells = browse.cells_by_id(session=session, ids=cell_ids)
    analysis = understand.analysis_for_cells(session=session, ids=cell_ids)
    titles = workbench.notebook_titles(session=session, ids=notebook_ids)
    runs = workbench.latest_runs(session=session, ids=notebook_ids)
    kinds = understand.plot_kinds_for_images(session=session, shas=[sha256])[sha256]

    similar, similar_note = [], None
    ref = sim.model_ref(session=session, space="image", name=image_model)
    if ref is None:
        similar_note = "No image vectors yet: run `nbatlas embed --space image` to see plots like this one."
    else:
        try:
            found = sim.similar_images(session=session, model=ref, image_sha256=sha256, first=SIMILAR)
            similar = [dict(t, distance=n.distance) for n, t in zip(found, _tiles(session, [n.key for n in found]))]
        except sim.NoVector:
            similar_note = "This image has no vector (it could not be decoded, or is not embedded yet)."
    duplicates, duplicates_note = [], None
    try:
        found = sim.duplicate_images(session=session, image_sha256=sha256, max_distance=6, first=SIMILAR)
        duplicates = [dict(t, distance=n.distance) for n, t in zip(found, _tiles(session, [n.key for n in found]))]
    except sim.NoVector:
        duplicates_note = "No perceptual hash for this image yet (`nbatlas embed --space image`)."

    main = places[0] if places else None
    cell_id = main["cell_id"] if main else (first["cell_id"] if first else None)
    cell = cells.get(cell_id) if cell_id is not None else None
    notebook_id = main["notebook_id"] if main else (first["notebook_id"] if first else None)
    return {
        "image": image, "kinds": kinds, "main": main, "places": places, "cell": cell,
        "cell_analysis": analysis.get(cell_id) if cell_id is not None else None,
        "notebook_id": notebook_id, "titles": titles, "runs": runs, "cells": cells,
        "similar": similar, "similar_note": similar_note, "duplicates": duplicates, "duplicates_note": duplicates_note,
        "samples": study.samples_of_targets(session=session, image_sha256=sha256) if coding is not None else [],
        "coding": coding_context(session, image_sha256=sha256, **coding) if coding is not None else None,
    }


def notebook_page(*, session: Session, notebook_id: int, after: int | None, coding: dict | None) -> dict[str, Any] | None:
    notebooks = browse.notebooks_by_id(session=session, ids=[notebook_id])
    if notebook_id not in notebooks:
        return None
    cells = browse.cells_of_notebooks(session=session, ids=[notebook_id], first=NOTEBOOK_CELLS, after_position=after).get(
        notebook_id, []
    )
    has_more = len(cells) > NOTEBOOK_CELLS
    cells = cells[:NOTEBOOK_CELLS]
    cell_ids = [c.id for c in cells]
    outputs = browse.outputs_of_cells(session=session, ids=cell_ids)
    output_ids = [o.id for os_ in outputs.values() for o in os_]
    images = browse.images_of_outputs(session=session, ids=output_ids)
    plots = understand.plots_for_outputs(session=session, ids=output_ids)
    return {
        "notebook": notebooks[notebook_id],
        "title": workbench.notebook_titles(session=session, ids=[notebook_id]).get(notebook_id, {}),
        "sources": browse.sources_of_notebooks(session=session, ids=[notebook_id]).get(notebook_id, []),
        "libraries": understand.libraries_for_notebooks(session=session, ids=[notebook_id]).get(notebook_id, []),
        "run": workbench.latest_runs(session=session, ids=[notebook_id]).get(notebook_id),
        "cells": cells, "outputs": outputs, "images": images, "plots": plots,
        "analysis": understand.analysis_for_cells(session=session, ids=cell_ids),
        "more_after": cells[-1].position if has_more and cells else None,
        "samples": study.samples_of_targets(session=session, notebook_id=notebook_id) if coding is not None else [],
        "coding": coding_context(session, notebook_id=notebook_id, **coding) if coding is not None else None,
    }


def sample_page(
    *, session: Session, name: str, annotator: dict | None, codebook_id: int | None, after: int | None
) -> dict[str, Any] | None:
    sample = study.get_sample(session=session, name=name)
    if sample is None:
        return None
    codebook = _codebook_choice(session, codebook_id, sample)
    items = study.sample_items(session=session, sample_id=sample["id"], first=100, after=after)
    has_more = len(items) > 100
    items = items[:100]
    coded_by_me: set = set()
    progress, agreement, next_uncoded = [], None, None
    if codebook is not None:
        matrix = study.coding(session=session, sample_id=sample["id"], codebook_id=codebook["id"])
        if annotator is not None:
            coded_by_me = {item for (item, who) in matrix if who == annotator["id"]}
        progress = study.progress(session=session, sample_id=sample["id"], codebook_id=codebook["id"])
        if len(progress) >= 2:
            agreement = study.agreement(session=session, sample_id=sample["id"], codebook_id=codebook["id"])
    if annotator is not None:
        # the first item of the worklist this annotator has not coded yet
        after_pos = None
        while next_uncoded is None:
            chunk = study.sample_items(session=session, sample_id=sample["id"], first=500, after=after_pos)
            for item in chunk[:500]:
                if (item["image_sha256"] or item["notebook_id"]) not in coded_by_me:
                    next_uncoded = item
                    break
            if len(chunk) <= 500:
                break
            after_pos = chunk[499]["position"]
    titles = workbench.notebook_titles(session=session, ids=[i["notebook_id"] for i in items if i["notebook_id"]])
    return {
        "sample": sample, "codebook": codebook, "codebooks": study.list_codebooks(session=session),
        "items": items, "more_after": items[-1]["position"] if has_more and items else None, "titles": titles,
        "coded_by_me": coded_by_me, "progress": progress, "agreement": agreement, "next_uncoded": next_uncoded,
    }
