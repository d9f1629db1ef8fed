"""The ``embed`` job (``job.py``) and, re-exported from ``db.embed``, the embedders and the pHash.

The embedders moved to ``db.embed`` (the API embeds a client's query with them and may not import
``ingest``); ``ingest.embed.code``, ``.text``, ``.image``, ``.phash``, ``.neural`` and ``.protocol``
still import, as aliases of the ``db.embed`` modules.
"""

from __future__ import annotations

from db.embed import BUILTIN, SPACES, Embedder, EmbedderUnavailable, ImageItem, Space, get_embedder, model_name

__all__ = ["BUILTIN", "SPACES", "Embedder", "EmbedderUnavailable", "ImageItem", "Space", "get_embedder", "model_name"]
