"""Did the notebook reproduce? Compare outputs cell by cell, score the notebook, classify failures.

Texts are compared after normalisation: ANSI colour codes, memory addresses, timestamps,
timings, progress bars and printed seeds are masked, and numbers written with a fraction or exponent are
equal within a relative tolerance (float noise from another BLAS, library or CPU). What a
notebook writes to stderr (warnings, mostly version-specific deprecations) is kept but not
compared. A cell that differs and draws random numbers with no seed visible before it is flagged
(``details.unseeded_random``): chance, rather than a failure to reproduce. The text/plain of an
output that carries an image (``<Figure size 640x480 ...>``)
stands for the image and is not compared as text: the image is.

Images are compared by perceptual hash (64-bit DCT pHash, as ``imagehash.phash``; the same
bits the similarity feature stores in ``image_phash``) and by mean pixel difference.

Per notebook, the measures of Pimentel et al. (2019, "A large-scale study about quality and
reproducibility of Jupyter notebooks"): *ran without error*; *same results* (every cell the
original executed produced equivalent outputs; a cell whose code was stripped but whose outputs
were kept, as exercise notebooks do, was not reproduced); plus *same results ignoring images* and
*same plots*. A measure is None when there is nothing to compare (the original has no outputs,
or no plots).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
from dataclasses import dataclass, field
from typing import Any

PHASH_SAME_MAX = 8  # bits of 64: a re-rendered plot (other fonts, versions) differs by a few
FLOAT_REL_TOL = 1e-4
FLOAT_ABS_TOL = 1e-9
RASTER_MIMES = ("image/png", "image/jpeg", "image/gif")
SVG_MIME = "image/svg+xml"

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,16}\b")
_DATETIME = re.compile(r"\b\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?")
_TIME = re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b")
_TIMING = re.compile(
    r"^.*(?:CPU times:|Wall time:|per loop \(mean|loops?, best of|elapsed|took \d|[0-9.]+ ?(?:it|s)/(?:s|it)\]?).*$",
    re.MULTILINE | re.IGNORECASE,
)
_PROGRESS = re.compile(r"^.*\d+%\|.*$", re.MULTILINE)  # tqdm bars
_TEMP_PATH = re.compile(r"/tmp/[\w.-]+")
# a seed the output shows ("Random seed: 8731", "seed=42"): a different one is not a different result
_SEED = re.compile(r"\b((?:random[_ ]?)?seed\b\s*(?:[:=]|is|set to)?\s*)\d+", re.IGNORECASE)
# calls that draw random numbers, and the calls that seed them
_RANDOM_CALL = re.compile(r"\b(?:np\.random|numpy\.random|random|torch|tf\.random)\.(?!seed\b|set_seed\b|manual_seed\b|RandomState\b|default_rng\b)\w+\(|"
                          r"\b(?:train_test_split|KFold|shuffle|RandomForest\w*|sample)\(")
_SEEDING = re.compile(r"\b(?:seed|set_seed|manual_seed|RandomState|default_rng)\(\s*\d|random_state\s*=\s*\d")
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_WS_LINE = re.compile(r"[ \t]+$", re.MULTILINE)


def normalise_text(text: str) -> str:
    text = text.replace("\r\n", "\n")
    text = _ANSI.sub("", text)
    text = _TIMING.sub("<timing>", text)
    text = _PROGRESS.sub("<progress>", text)
    text = _DATETIME.sub("<datetime>", text)
    text = _TIME.sub("<time>", text)
    text = _ADDRESS.sub("0x<address>", text)
    text = _TEMP_PATH.sub("/tmp/<path>", text)
    text = _SEED.sub(lambda m: m.group(1) + "<seed>", text)
    text = _WS_LINE.sub("", text)
    return text.strip()


def _tokens(text: str) -> tuple[list[str], list[str]]:
    return _NUMBER.split(text), _NUMBER.findall(text)


def _numbers_close(a: str, b: str) -> bool:
    if a == b:
        return True
    if not any(c in a + b for c in ".eE"):
        return False  # integers are exact: counts, shapes, indices
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    if math.isnan(x) and math.isnan(y):
        return True
    return math.isclose(x, y, rel_tol=FLOAT_REL_TOL, abs_tol=FLOAT_ABS_TOL)


def texts_equivalent(a: str, b: str) -> bool:
    """Equal after normalisation, numbers with a fraction compared within the float tolerance."""
    a, b = normalise_text(a), normalise_text(b)
    if a == b:
        return True
    (words_a, nums_a), (words_b, nums_b) = _tokens(a), _tokens(b)
    if words_a != words_b or len(nums_a) != len(nums_b):
        return False
    return all(_numbers_close(x, y) for x, y in zip(nums_a, nums_b))


# ---------------------------------------------------------------- outputs of one cell


def _joined(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _has_image(data: dict[str, Any]) -> bool:
    return any(mime in data for mime in (*RASTER_MIMES, SVG_MIME))


def text_items(outputs: list[dict[str, Any]]) -> list[str]:
    """What a reader sees as text in a cell's outputs, in order; stdout chunks joined (chunking varies)."""
    items: list[str] = []
    stdout: list[str] = []
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            if out.get("name") == "stdout":
                stdout.append(_joined(out.get("text")))
            continue
        if stdout:
            items.append("stdout:" + "".join(stdout))
            stdout = []
        if kind == "error":
            items.append(f"error:{out.get('ename')}: {out.get('evalue')}")
        elif kind in ("execute_result", "display_data"):
            data = out.get("data") or {}
            if _has_image(data):
                continue
            for mime in ("text/plain", "text/markdown", "text/latex", "application/json", "text/html"):
                if mime in data:
                    value = data[mime]
                    text = value if isinstance(value, str) else _joined(value) if isinstance(value, list) else repr(value)
                    if mime == "text/html":
                        text = re.sub(r"\s+", " ", text)
                    items.append(f"{mime}:{text}")
                    break
    if stdout:
        items.append("stdout:" + "".join(stdout))
    return items


def stderr_text(outputs: list[dict[str, Any]]) -> str:
    return "".join(_joined(o.get("text")) for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stderr")


@dataclass
class Picture:
    mime: str
    raw: bytes  # decoded raster bytes or SVG text as UTF-8
    phash: str | None = None  # 64 '0'/'1' characters
    rgb: Any = None  # PIL image, decoded lazily


def images_of(outputs: list[dict[str, Any]]) -> list[Picture]:
    pictures: list[Picture] = []
    for out in outputs:
        data = out.get("data") or {}
        for mime in RASTER_MIMES:
            value = data.get(mime)
            if isinstance(value, (str, list)):
                try:
                    pictures.append(Picture(mime, base64.b64decode(_joined(value))))
                except (binascii.Error, ValueError):
                    continue
                break
        else:
            if SVG_MIME in data:
                pictures.append(Picture(SVG_MIME, _joined(data[SVG_MIME]).encode("utf-8")))
    return pictures


def _rgb(picture: Picture, max_pixels: int = 50_000_000):
    if picture.rgb is not None or picture.mime == SVG_MIME:
        return picture.rgb
    from PIL import Image

    try:
        with Image.open(io.BytesIO(picture.raw)) as img:
            if img.width * img.height > max_pixels:
                return None
            img.load()
            if img.mode in ("RGBA", "LA", "P"):
                img = img.convert("RGBA")
                white = Image.new("RGBA", img.size, (255, 255, 255, 255))
                white.alpha_composite(img)
                img = white
            picture.rgb = img.convert("RGB")
    except Exception:  # noqa: BLE001 - an undecodable image simply cannot be compared
        picture.rgb = None
    return picture.rgb


def phash_bits(picture: Picture) -> str | None:
    if picture.phash is None:
        img = _rgb(picture)
        if img is None or img.width < 2 or img.height < 2:
            return None
        import imagehash

        picture.phash = "".join("1" if b else "0" for b in imagehash.phash(img, hash_size=8).hash.ravel())
    return picture.phash


def hamming(a: str, b: str) -> int:
    return sum(x != y for x, y in zip(a, b))


def pixel_difference(a: Picture, b: Picture) -> float | None:
    """Mean absolute difference of the RGB pixels in [0, 1]; the second is resized when sizes differ."""
    import numpy as np

    img_a, img_b = _rgb(a), _rgb(b)
    if img_a is None or img_b is None:
        return None
    if img_b.size != img_a.size:
        img_b = img_b.resize(img_a.size)
    diff = np.abs(np.asarray(img_a, dtype=np.int16) - np.asarray(img_b, dtype=np.int16))
    return round(float(diff.mean()) / 255.0, 6)


@dataclass
class ImageMatch:
    identical: bool
    phash_distance: int | None
    pixel_diff: float | None
    same: bool


def compare_images(original: Picture, reproduced: Picture) -> ImageMatch:
    if original.raw == reproduced.raw:
        return ImageMatch(True, 0, 0.0, True)
    if original.mime == SVG_MIME or reproduced.mime == SVG_MIME:
        same = original.mime == reproduced.mime and normalise_svg(original.raw) == normalise_svg(reproduced.raw)
        return ImageMatch(False, None, None, same)
    a, b = phash_bits(original), phash_bits(reproduced)
    distance = hamming(a, b) if a and b else None
    pixels = pixel_difference(original, reproduced)
    return ImageMatch(False, distance, pixels, distance is not None and distance <= PHASH_SAME_MAX)


def normalise_svg(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r'(id|clip-path|xlink:href|href)="[^"]*"', r'\1=""', text)
    return re.sub(r"\s+", " ", text).strip()


# ---------------------------------------------------------------- cells and notebooks


@dataclass
class CellScore:
    position: int
    # same | different (also: no code left, but the original has outputs) | not_compared | missing | None (not a code cell)
    comparison: str | None
    text_same: bool | None = None
    images_same: bool | None = None
    n_images_original: int = 0
    n_images_reproduced: int = 0
    max_phash_distance: int | None = None
    max_pixel_diff: float | None = None
    difference: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class NotebookScore:
    ran_without_error: bool
    same_results: bool | None
    same_results_ignoring_images: bool | None
    same_plots: bool | None
    n_cells_compared: int
    n_cells_same: int
    n_images_compared: int
    n_images_same: int
    cells: list[CellScore]


def _first_difference(a: list[str], b: list[str]) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if not texts_equivalent(x, y):
            return f"output {i}: expected {normalise_text(x)[:160]!r}, got {normalise_text(y)[:160]!r}"
    return f"{len(a)} text outputs in the original, {len(b)} reproduced"


def compare_cell(position: int, original: dict[str, Any], reproduced: dict[str, Any] | None, status: str | None) -> CellScore:
    """Compare one code cell; ``status`` is the reproduced cell's (ok, error, not_run...)."""
    if original.get("cell_type") != "code":
        return CellScore(position, None)
    original_outputs = original.get("outputs") or []
    if original.get("execution_count") is None and not original_outputs:
        return CellScore(position, "not_compared")  # the author never ran it: nothing to reproduce
    pictures_a = images_of(original_outputs)
    if not _joined(original.get("source")).strip():
        texts_a = text_items(original_outputs)
        if not texts_a and not pictures_a:
            return CellScore(position, "not_compared")  # no code and nothing to reproduce
        # Exercise notebooks strip the code but keep its outputs: the run cannot redraw them, so
        # the original's results were not reproduced (counting the cell as same would claim they were).
        return CellScore(
            position, "different", text_same=not texts_a, images_same=False if pictures_a else None,
            n_images_original=len(pictures_a), details={"no_code": True},
            difference=(f"the cell has no code: the original's {len(texts_a)} text outputs and "
                        f"{len(pictures_a)} plots cannot be reproduced"),
        )
    if status == "skipped":
        return CellScore(position, "not_compared")
    if reproduced is None or status in (None, "not_run", "skipped"):
        return CellScore(position, "missing", n_images_original=len(pictures_a), difference="the run stopped before this cell")
    reproduced_outputs = reproduced.get("outputs") or []
    pictures_b = images_of(reproduced_outputs)
    texts_a, texts_b = text_items(original_outputs), text_items(reproduced_outputs)
    text_same = len(texts_a) == len(texts_b) and all(texts_equivalent(x, y) for x, y in zip(texts_a, texts_b))
    score = CellScore(position, None, text_same=text_same,
                      n_images_original=len(pictures_a), n_images_reproduced=len(pictures_b))
    if not text_same:
        score.difference = _first_difference(texts_a, texts_b)
    matches = [compare_images(a, b) for a, b in zip(pictures_a, pictures_b)]
    if pictures_a or pictures_b:
        score.images_same = len(pictures_a) == len(pictures_b) and all(m.same for m in matches)
        distances = [m.phash_distance for m in matches if m.phash_distance is not None]
        pixels = [m.pixel_diff for m in matches if m.pixel_diff is not None]
        score.max_phash_distance = max(distances) if distances else None
        score.max_pixel_diff = max(pixels) if pixels else None
        score.details["images"] = [
            {"identical": m.identical, "phash_distance": m.phash_distance, "pixel_diff": m.pixel_diff, "same": m.same}
            for m in matches
        ]
        if not score.images_same and score.difference is None:
            score.difference = (f"{len(pictures_a)} images in the original, {len(pictures_b)} reproduced"
                                if len(pictures_a) != len(pictures_b) else
                                f"plot differs (pHash distance {score.max_phash_distance}, pixel difference {score.max_pixel_diff})")
    stderr_a, stderr_b = stderr_text(original_outputs), stderr_text(reproduced_outputs)
    if stderr_a or stderr_b:
        score.details["stderr_same"] = texts_equivalent(stderr_a, stderr_b)
    score.comparison = "same" if text_same and score.images_same in (None, True) else "different"
    return score


def uses_unseeded_randomness(source: str, earlier: str) -> bool:
    """The cell draws random numbers and nothing before it (or in it) visibly seeds a generator:
    a difference there may be chance, not a failure to reproduce."""
    return bool(_RANDOM_CALL.search(source)) and not _SEEDING.search(earlier + "\n" + source)


def score_notebook(original: dict[str, Any], executed: dict[str, Any] | None, cell_status: dict[int, str], run_status: str) -> NotebookScore:
    """Compare the original notebook with the executed one (both nbformat 4 dicts, same cells)."""
    original_cells = original.get("cells") or []
    executed_cells = (executed or {}).get("cells") or []
    cells: list[CellScore] = []
    earlier = ""
    for position, cell in enumerate(original_cells):
        reproduced = executed_cells[position] if position < len(executed_cells) else None
        score = compare_cell(position, cell, reproduced, cell_status.get(position))
        if cell.get("cell_type") == "code":
            source = _joined(cell.get("source"))
            if score.comparison == "different" and uses_unseeded_randomness(source, earlier):
                score.details["unseeded_random"] = True
            earlier += "\n" + source
        cells.append(score)
    compared = [c for c in cells if c.comparison in ("same", "different", "missing")]
    with_images = [c for c in compared if c.n_images_original]
    ok = run_status == "ok"

    def all_true(values: list[bool]) -> bool:
        return ok and all(values)

    same_results = all_true([c.comparison == "same" for c in compared]) if compared else None
    ignoring = all_true([c.comparison != "missing" and bool(c.text_same) for c in compared]) if compared else None
    same_plots = all_true([c.comparison != "missing" and bool(c.images_same) for c in with_images]) if with_images else None
    n_images_compared = sum(c.n_images_original for c in compared)
    n_images_same = sum(
        sum(1 for m in c.details.get("images", []) if m["same"]) for c in compared
    )
    return NotebookScore(
        ran_without_error=ok,
        same_results=same_results,
        same_results_ignoring_images=ignoring,
        same_plots=same_plots,
        n_cells_compared=len(compared),
        n_cells_same=sum(1 for c in compared if c.comparison == "same"),
        n_images_compared=n_images_compared,
        n_images_same=n_images_same,
        cells=cells,
    )


# why a run failed: ingest.reproduce.failures (re-exported: callers import it from here)
from ingest.reproduce.failures import FAILURE_CLASSES, classify_failure, defined_names  # noqa: E402, F401
