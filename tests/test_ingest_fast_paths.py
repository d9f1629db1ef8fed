"""The ingest's shortcuts give what the slower, general route gives: JPEG sizes as Pillow reads them,
and the per-output-type schema check the same verdicts and messages as the schema's own anyOf."""

from __future__ import annotations

import binascii
import copy
import json
import io
import random
from pathlib import Path

import pytest
from PIL import Image

from ingest import parse

REAL = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "real"


def _pillow_size(blob: bytes):
    try:
        with Image.open(io.BytesIO(blob)) as image:
            return image.size
    except Exception:
        return None


def _real_notebooks() -> list[dict]:
    notebooks = []
    for path in sorted(REAL.glob("*.ipynb")):
        value, _, _ = parse.decode_json(path.read_bytes())
        notebooks.append(parse.to_v4(value)[0])
    return notebooks


@pytest.fixture(scope="module")
def real_notebooks() -> list[dict]:
    return _real_notebooks()


def test_jpeg_size_is_pillows(real_notebooks):
    blobs = []
    for nb in real_notebooks:
        for cell in nb["cells"]:
            for output in cell.get("outputs", []):
                value = output.get("data", {}).get("image/jpeg")
                if isinstance(value, str):
                    blobs.append(binascii.a2b_base64(value))
    assert blobs, "the real corpus holds JPEG plots"
    for mode in ("L", "RGB", "CMYK"):
        for size in ((1, 1), (640, 480), (3000, 7)):
            for options in ({}, {"progressive": True}, {"exif": Image.Exif()}, {"comment": b"plot"}):
                buffer = io.BytesIO()
                Image.new(mode, size).save(buffer, "JPEG", **options)
                blobs.append(buffer.getvalue())
    read = 0
    for blob in blobs:
        for cut in (len(blob), len(blob) // 2, 40, 12):
            part = blob[:cut]
            fast = parse._jpeg_size(part)
            if fast is not None:  # None: Pillow reads it, as before
                read += 1
                assert fast == _pillow_size(part)
            assert parse._image_size(part) == (_pillow_size(part) or (None, None))
    assert read >= len(blobs)  # every whole JPEG took the short route


def _mutate(nb: dict, rng: random.Random) -> dict:
    nb = copy.deepcopy(nb)
    cells = [c for c in nb["cells"] if c.get("cell_type") == "code" and c.get("outputs")]
    if not cells:
        return nb
    cell = rng.choice(cells)
    output = rng.choice(cell["outputs"])
    choice = rng.randrange(8)
    if choice == 0:
        output["output_type"] = "plot"
    elif choice == 1:
        output.pop("output_type", None)
    elif choice == 2:
        output["unexpected"] = 1
    elif choice == 3:
        cell["outputs"].append("not an object")
    elif choice == 4:
        output["metadata"] = []
    elif choice == 5:
        cell["execution_count"] = "one"
    elif choice == 6:
        output.pop("data" if "data" in output else "text", None)
    else:
        output["output_type"] = rng.choice(parse._OUTPUT_TYPES)
    return nb


def _slow_validate(nb: dict) -> list[str]:
    """``parse.validate`` without the per-output-type shortcut: each code cell against the schema's anyOf."""
    saved = dict(parse._validators)
    try:
        for minor, validators in list(parse._validators.items()):
            if validators is not None:
                parse._validators[minor] = (*validators[:2], None)
        return parse.validate(nb)
    finally:
        parse._validators.clear()
        parse._validators.update(saved)


def test_output_shortcut_gives_the_schemas_verdicts(real_notebooks):
    parse.warm_validators()
    rng = random.Random(7)
    notebooks = real_notebooks + [_mutate(nb, rng) for nb in real_notebooks for _ in range(2)]
    broken = 0
    for nb in notebooks:
        if nb.get("nbformat_minor", 0) >= 5:
            for cell in nb["cells"]:  # cell-id repair draws random ids: give every cell one first
                cell.setdefault("id", f"c{id(cell)}")
        fast, slow = parse.validate(copy.deepcopy(nb)), _slow_validate(copy.deepcopy(nb))
        assert fast == slow
        broken += bool(fast)
    assert broken > len(real_notebooks)  # the mutations did break the schema


@pytest.mark.parametrize(
    "text",
    [
        '{"n": 18446744073709551616}',  # beyond 64 bits: orjson would give a float
        '{"a": [1, {"b": -9223372036854775809}]}',
        '{"n": 123456789012345678901234567890, "x": 0.1}',
        '{"n": 18446744073709551615, "m": -9223372036854775808}',  # the 64-bit edges stay with orjson
        '{"n": 1e300, "s": "12345678901234567890123"}',  # a large float, digits in a string
    ],
)
def test_json_values_are_the_json_modules(text):
    value, _, _ = parse.decode_json(text.encode())
    expected = json.loads(text)
    assert value == expected and repr(value) == repr(expected)


def test_real_corpus_reads_as_the_json_module_reads_it():
    for path in sorted(REAL.glob("*.ipynb")):
        raw = path.read_bytes()
        value, _, _ = parse.decode_json(raw)
        assert value == json.loads(raw.decode("utf-8")), path.name
