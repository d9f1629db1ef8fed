"""``nbatlas embed``: vectors for code cells, markdown cells and images (only what is missing)."""

from __future__ import annotations

import json
from enum import Enum

import typer

from ingest.commands._common import console, fail, open_engine

app = typer.Typer()


class SpaceChoice(str, Enum):
    code = "code"
    text = "text"
    image = "image"
    all = "all"


@app.command("embed")
def embed_command(
    space: SpaceChoice = typer.Option(SpaceChoice.all, "--space", "-s", help="Which space to embed: code cells, markdown (text), images, or all three."),
    model: str | None = typer.Option(
        None, "--model", "-m",
        help="Model name for the chosen space (default: NBATLAS_EMBED_<SPACE>_MODEL). Built in: code-ngrams, "
        "text-words, plot-descriptor. With the 'ml' extra: st:<sentence-transformers model or path>, "
        "e.g. st:all-MiniLM-L6-v2. Give --space with it.",
    ),
    workers: int | None = typer.Option(None, "--workers", "-w", min=1, help="Worker processes (default: NBATLAS_WORKERS, the number of cores)."),
    batch: int | None = typer.Option(None, "--batch", min=1, help="Cells per batch (default: NBATLAS_EMBED_BATCH)."),
    list_models: bool = typer.Option(False, "--list", help="Only list the models with vectors in the database, their counts and indexes."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Embed every cell and image that has no vector yet for the chosen model.

    Each vector records its model name and version, so a new model only adds rows next to the old ones. Images also get a 64-bit perceptual hash for near-duplicate search. Work goes in batches over worker processes with a progress bar; interrupting keeps every finished batch, and the next run carries on. The first time a model gets vectors its HNSW index (cosine) is built.
    """
    from sqlmodel import Session

    from db.queries.similarity import list_models as registered
    from db.settings import get_settings
    from ingest.embed import SPACES, EmbedderUnavailable
    from ingest.embed.job import embed

    settings = get_settings()
    engine = open_engine(settings)
    if list_models:
        with Session(engine) as session:
            rows = registered(session=session)
        if as_json:
            print(json.dumps([{"space": r.space, "model": r.name, "version": r.version, "dimension": r.dimension,
                               "vectors": n, "index": ix} for r, n, ix in rows], indent=2))
        else:
            for r, n, ix in rows:
                console.print(f"{r.space:6} {r.name} v{r.version}  {r.dimension} dims  {n:,} vectors  index: {ix or 'none'}")
        return
    spaces = list(SPACES) if space is SpaceChoice.all else [space.value]
    if model and len(spaces) > 1:
        fail("--model names one model: choose its space with --space code|text|image")
    try:
        with Session(engine) as session:
            report = embed(
                session=session, settings=settings, spaces=spaces,
                models={spaces[0]: model} if model else None, workers=workers, batch_size=batch, progress=True,
            )
    except EmbedderUnavailable as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted: finished batches are kept, run `nbatlas embed` again to continue", code=130)
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for s in report.spaces:
            extra = f", {s.phashes:,} pHashes" if s.space == "image" else ""
            console.print(
                f"[bold]{s.space}[/] {s.model} v{s.version}: {s.embedded:,} embedded, {s.empty:,} with nothing to embed"
                f"{extra} in {s.seconds:.1f}s; index {s.index or 'none yet'}"
            )
