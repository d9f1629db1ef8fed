"""Embedders (code, text, image) and the pHash: pure computation from items to vectors.

They live in ``db`` because both sides need them: ``db.embed.job`` stores the corpus's vectors,
and the API embeds a client's query (a picture, a code string, a text) with the very same embedder
to search them; the API may not import ``ingest``, and nothing here touches the database.

``get_embedder(space, name)`` builds one by name: the offline defaults below need no model
files; ``st:<model>`` uses sentence-transformers (the ``ml`` extra, see ``neural.py``).
"""

from __future__ import annotations

from db.embed.protocol import SPACES, Embedder, EmbedderUnavailable, ImageItem, Space

BUILTIN = {
    "code": {"code-ngrams": "db.embed.code:CodeEmbedder"},
    "text": {"text-words": "db.embed.text:TextEmbedder"},
    "image": {"plot-descriptor": "db.embed.image:PlotImageEmbedder"},
}


def model_name(space: Space, settings=None) -> str:
    """The model configured for a space (settings ``embed_<space>_model``)."""
    if settings is None:
        from db.settings import get_settings

        settings = get_settings()
    return getattr(settings, f"embed_{space}_model")


def get_embedder(space: Space, name: str | None = None, *, settings=None) -> Embedder:
    """The embedder called ``name`` for ``space`` (default: the one in settings)."""
    import importlib

    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}: one of {', '.join(SPACES)}")
    name = name or model_name(space, settings)
    if name in BUILTIN[space]:
        module, cls = BUILTIN[space][name].split(":")
        embedder = getattr(importlib.import_module(module), cls)()
        if space == "image" and settings is not None:
            embedder.max_pixels = settings.max_image_pixels
        return embedder
    if name.startswith("st:"):
        from db.embed.neural import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(name[3:], space)
    known = ", ".join(BUILTIN[space])
    raise EmbedderUnavailable(f"no {space} model called {name!r}: built in are {known}; or st:<sentence-transformers model>")


__all__ = ["BUILTIN", "SPACES", "Embedder", "EmbedderUnavailable", "ImageItem", "Space", "get_embedder", "model_name"]
