"""Parse one notebook file into table rows. Runs in the worker processes of an ingest.

What a notebook *is* follows ``nbformat.reads(text, as_version=4)`` exactly: the same JSON parser, the
same ``rejoin_lines``/``strip_transient`` of the v4 reader (mirrored here on plain dicts, which is
several times faster than building ``NotebookNode`` trees), nbformat's own upgrade for v1-v3, and the
same cell-id repair that ``nbformat.validate`` does for nbformat >= 4.5. Anything nbformat cannot read
is a problem of the file (stage ``decode``/``json``/``notebook``); a notebook nbformat reads but whose
schema it breaks is ingested, with the violations recorded as one ``schema`` warning.

The rows use the mapping in ``db.queries.codec`` so ``db.queries.notebooks`` can rebuild the notebook.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import json
import os
import struct
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from db.copy_text import copy_escape
from db.queries import codec

# --- what a worker sends back ---------------------------------------------------------------------


@dataclass(slots=True)
class Place:
    """Where a file was found: a local file, or a member of an archive (its bytes read already)."""

    kind: str  # local | archive
    location: str  # absolute path of the file or the archive
    member: str = ""  # path inside the archive
    path: str | None = None  # local file to read
    data: bytes | None = None  # the file's bytes, once read
    sha256: str | None = None  # of ``data``, once hashed


@dataclass(slots=True)
class FileProblem:
    location: str
    member: str
    stage: str  # read | limit | decode | json | notebook | archive | load | schema | image | analysis
    reason: str
    file_sha256: str | None = None
    severity: str = "error"
    details: dict[str, Any] | None = None


@dataclass(slots=True)
class ParsedNotebook:
    kind: str
    location: str
    member: str
    sha256: str
    size_bytes: int
    # nbformat, nbformat_minor, original_nbformat, kernel_name, language, metadata, n_cells, n_outputs,
    # n_image_outputs, extra, text_escape   (JSONB values as JSON text)
    notebook: tuple
    # COPY text rows, one per cell: position, cell_type, cell_key, source, execution_count, metadata,
    # attachments, extra (the loader puts the ids in front). Rendered here, in the worker, because
    # one bytes object crosses the process boundary far cheaper than thousands of tuples.
    cells: bytes
    # COPY text rows, one per output: cell position, position, output_type, mime_types, data, metadata,
    # execution_count, name, text, ename, evalue, traceback, extra
    outputs: bytes
    # sha256, mime, data, svg, size_bytes, width, height
    images: list[tuple]
    # output index (into ``outputs``), mime, image sha256, b64 layout
    output_images: list[tuple]
    warnings: list[FileProblem] = field(default_factory=list)
    analysis: Any = None


class NotANotebook(Exception):
    def __init__(self, stage: str, reason: str, details: dict[str, Any] | None = None):
        super().__init__(reason)
        self.stage, self.reason, self.details = stage, reason, details


@dataclass(frozen=True, slots=True)
class Limits:
    max_file_bytes: int
    max_image_pixels: int

    @classmethod
    def from_settings(cls, settings) -> "Limits":
        return cls(max_file_bytes=settings.max_file_bytes, max_image_pixels=settings.max_image_pixels)


# --- worker process set-up ---------------------------------------------------------------------------

_limits: Limits | None = None
_analyzer: Callable[[dict], Any] | None = None


def init_worker(limits: Limits, analyzer: Callable[[dict], Any] | None = None) -> None:
    global _limits, _analyzer
    _limits, _analyzer = limits, analyzer
    quiet_nbformat()
    warm_validators()


def quiet_nbformat() -> None:
    """nbformat logs every schema violation through traitlets; ingest records them as problems instead."""
    import logging

    from traitlets.log import get_logger

    get_logger().setLevel(logging.CRITICAL)


def parse_many(places: list[Place]) -> list[ParsedNotebook | FileProblem]:
    """One task of the process pool: a few files, to keep per-task overhead low."""
    assert _limits is not None, "init_worker was not called"
    return [parse_place(place, _limits, _analyzer) for place in places]


def parse_place(place: Place, limits: Limits, analyzer: Callable[[dict], Any] | None = None) -> ParsedNotebook | FileProblem:
    try:
        raw = place.data if place.data is not None else read_file(place.path, limits.max_file_bytes)
    except NotANotebook as exc:
        return FileProblem(place.location, place.member, exc.stage, exc.reason, details=exc.details)
    except OSError as exc:
        return FileProblem(place.location, place.member, "read", f"cannot read the file: {exc.strerror or exc}")
    sha = place.sha256 if place.sha256 and place.data is not None else hashlib.sha256(raw).hexdigest()
    if len(raw) > limits.max_file_bytes:
        return FileProblem(place.location, place.member, "limit", too_large(len(raw), limits.max_file_bytes), sha)
    try:
        return parse_bytes(raw, sha, place, limits, analyzer)
    except NotANotebook as exc:
        return FileProblem(place.location, place.member, exc.stage, exc.reason, sha, details=exc.details)
    except Exception as exc:  # a bug or an input nobody foresaw: record it, never stop the batch
        return FileProblem(place.location, place.member, "notebook", f"unexpected error while reading the notebook: {type(exc).__name__}: {exc}", sha)


def too_large(size: int, limit: int) -> str:
    return f"file is {size:,} bytes, over the limit of {limit:,} bytes (NBATLAS_MAX_FILE_BYTES)"


def read_file(path: str, max_bytes: int) -> bytes:
    size = os.stat(path).st_size
    if size > max_bytes:
        raise NotANotebook("limit", too_large(size, max_bytes))
    with open(path, "rb") as fh:
        return fh.read(max_bytes + 1)


# --- bytes -> nbformat 4 dict --------------------------------------------------------------------------

_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"PK\x03\x04": "a zip archive",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip file",
}


def _what_is_it(raw: bytes) -> str:
    for magic, what in _MAGIC.items():
        if raw.startswith(magic):
            return f"; it looks like {what}"
    return ""


# orjson reads an integer beyond 64 bits as a float, and every such float is at least 2**63 in size
_HUGE = 2.0**63


def _has_huge_float(value: Any) -> bool:
    """Whether the parsed JSON holds a float of 2**63 or more in size (or NaN), which orjson may have
    made of an integer that the json module keeps exact. Walking the values (strings and keys need no
    look) is cheaper than scanning every byte of the file for a run of 19 digits."""
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict:
            extend(item.values())
        elif kind is list:
            extend(item)
        elif kind is float and not -_HUGE < item < _HUGE:
            return True
    return False


def decode_json(raw: bytes) -> tuple[Any, bool, list[FileProblem]]:
    """Parse like nbformat (``json.loads`` on the UTF-8 text). Returns (value, needs_escape_check, notes)."""
    # orjson gives the same values as json.loads for the JSON both accept, in half the time; it refuses
    # (and the json module then reads, or explains) invalid UTF-8, a byte-order mark, lone surrogates,
    # NaN/Infinity and numbers beyond a double. Only integers beyond 64 bits it reads differently (as
    # floats): a file whose values hold a float that large goes to the json module.
    import orjson

    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    else:
        if not _has_huge_float(value):
            return value, b"\\u" in raw and codec.MAYBE_UNSTORABLE.search(raw) is not None, []
    notes: list[FileProblem] = []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1].hex()
        raise NotANotebook(
            "decode",
            f"not UTF-8 text: byte 0x{bad} at offset {exc.start} cannot be decoded ({exc.reason}){_what_is_it(raw)}",
            {"offset": exc.start},
        ) from None
    if text.startswith("\ufeff"):
        # JSON forbids a byte-order mark but editors write one; Jupyter itself tolerates it
        text = text[1:]
        notes.append(FileProblem("", "", "decode", "file starts with a UTF-8 byte-order mark, which was ignored", severity="warning"))
    special = False

    def non_finite(token: str) -> float:
        nonlocal special
        special = True
        return float(token.replace("Infinity", "inf"))

    def number(token: str) -> float:
        nonlocal special
        value = float(token)
        if value in (float("inf"), float("-inf")):
            special = True
        return value

    try:
        value = json.loads(text, parse_constant=non_finite, parse_float=number)
    except json.JSONDecodeError as exc:
        line = text.splitlines()[exc.lineno - 1] if exc.lineno - 1 < len(text.splitlines()) else ""
        hint = ""
        if line.startswith(("<<<<<<<", "=======", ">>>>>>>")):
            hint = " (an unresolved git merge conflict)"
        elif exc.pos == 0 or not text.lstrip().startswith(("{", "[")):
            hint = " (the file does not start with JSON" + _what_is_it(raw).replace("; it looks like", ": it looks like") + ")"
        raise NotANotebook(
            "json",
            f"not valid JSON: {exc.msg}: line {exc.lineno} column {exc.colno} (char {exc.pos}){hint}",
            {"line": exc.lineno, "column": exc.colno, "char": exc.pos, "text": line[:200]},
        ) from None
    except RecursionError:
        raise NotANotebook("json", "not valid JSON for Python: nested too deeply") from None
    needs_check = special or (b"\\u" in raw and codec.MAYBE_UNSTORABLE.search(raw) is not None)
    return value, needs_check, notes


def _is_json_mime(mime: str) -> bool:
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


def _rejoin_bundle(data: dict) -> None:
    for key, value in list(data.items()):
        if isinstance(value, list) and not _is_json_mime(key):
            try:
                data[key] = "".join(value)
            except TypeError:  # not all text: nbformat leaves such a list as it is
                pass


def read_v4(nb: dict) -> dict:
    """nbformat.v4's reader (``from_dict`` + ``rejoin_lines`` + ``strip_transient``) on plain dicts.

    Raises NotANotebook wherever nbformat's reader would fail, with the reason in words.
    """
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise NotANotebook("notebook", "JSON but not a notebook: " + ("no 'cells' list" if cells is None else "'cells' is not a list"))
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise NotANotebook("notebook", f"JSON but not a notebook: cell {i} is not a JSON object")
        where = f"cell {i}"
        source = cell.get("source")
        if isinstance(source, list):
            try:
                cell["source"] = "".join(source)
            except TypeError:
                raise NotANotebook("notebook", f"JSON but not a notebook: the source of {where} is a list with non-text items") from None
        attachments = cell.get("attachments", {})
        if not isinstance(attachments, dict) or not all(isinstance(a, dict) for a in attachments.values()):
            raise NotANotebook("notebook", f"JSON but not a notebook: the attachments of {where} are not objects")
        for attachment in attachments.values():
            _rejoin_bundle(attachment)
        if cell.get("cell_type") == "code":
            outputs = cell.get("outputs", [])
            if not isinstance(outputs, (list, str, dict)) or (outputs and not isinstance(outputs, list)):
                raise NotANotebook("notebook", f"JSON but not a notebook: the outputs of {where} are not a list")
            for j, output in enumerate(outputs):
                if not isinstance(output, dict):
                    raise NotANotebook("notebook", f"JSON but not a notebook: output {j} of {where} is not a JSON object")
                output_type = output.get("output_type", "")
                if isinstance(output_type, (list, dict)):
                    raise NotANotebook("notebook", f"JSON but not a notebook: output {j} of {where} has an output_type that is not text")
                if output_type in ("execute_result", "display_data"):
                    data = output.get("data", {})
                    if not isinstance(data, dict):
                        raise NotANotebook("notebook", f"JSON but not a notebook: the data of output {j} of {where} is not an object")
                    _rejoin_bundle(data)
                elif output_type and isinstance(output.get("text", ""), list):
                    try:
                        output["text"] = "".join(output["text"])
                    except TypeError:
                        raise NotANotebook("notebook", f"JSON but not a notebook: the text of output {j} of {where} has non-text items") from None
    metadata = nb.get("metadata")
    if not isinstance(metadata, dict):
        raise NotANotebook("notebook", "JSON but not a notebook: " + ("no notebook 'metadata'" if metadata is None else "the notebook 'metadata' is not an object"))
    for key in ("orig_nbformat", "orig_nbformat_minor", "signature"):
        metadata.pop(key, None)
    for i, cell in enumerate(cells):
        cell_metadata = cell.get("metadata")
        if not isinstance(cell_metadata, dict):
            raise NotANotebook("notebook", f"JSON but not a notebook: cell {i} has no 'metadata' object")
        cell_metadata.pop("trusted", None)
    return nb


def to_v4(value: Any) -> tuple[dict, int]:
    """The parsed JSON as nbformat 4 (as ``nbformat.reads(..., as_version=4)`` before validation)."""
    import nbformat

    if not isinstance(value, dict):
        kind = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(type(value), "null")
        raise NotANotebook("notebook", f"JSON but not a notebook: the file holds {kind}, not a notebook object")
    if "nbformat" not in value:
        raise NotANotebook("notebook", "JSON but not a notebook: no 'nbformat' key")
    major = value["nbformat"]
    if type(major) is not int or major not in nbformat.versions:
        raise NotANotebook(
            "notebook",
            f"JSON but not a notebook: nbformat {major!r} is not a notebook format nbformat can read "
            f"(it knows {', '.join(map(str, sorted(nbformat.versions)))})",
        )
    if major == 4:
        return read_v4(value), 4
    minor = value.get("nbformat_minor", 0)
    try:
        node = nbformat.versions[major].to_notebook_json(value, minor=minor)
        node = nbformat.convert(node, 4)
    except Exception as exc:
        raise NotANotebook("notebook", f"nbformat {major} notebook that nbformat cannot read or upgrade to 4: {exc}") from None
    return node, major


# --- validation: nbformat's schema, checked per cell ---------------------------------------------------

_OUTPUT_TYPES = ("execute_result", "display_data", "stream", "error")
# minor -> (notebook shell, validator per cell type, (code cell without its outputs, validator per output type))
_validators: dict[int, tuple[Callable, dict[str, Callable], tuple[Callable, dict[str, Callable]] | None] | None] = {}
KNOWN_V4_MINORS = range(0, 6)


def _compile(schema: dict) -> Callable:
    """fastjsonschema's validator for ``schema``, its generated code cached on disk.

    Generating and compiling the validators of the six v4 schemas costs about half a second, more
    than parsing many notebooks; the marshalled code loads in a millisecond.
    """
    import marshal
    import sys
    import tempfile

    import fastjsonschema

    text = json.dumps(schema, sort_keys=True)
    key = hashlib.sha256(f"{sys.version}|{fastjsonschema.VERSION}|{text}".encode()).hexdigest()[:32]
    cache = _cache_dir()
    path = os.path.join(cache, f"nbformat-schema-{key}.marshal") if cache else None
    code = None
    if path and os.path.exists(path):
        try:
            with open(path, "rb") as fh:
                code = marshal.loads(fh.read())
        except Exception:
            code = None
    if code is None:
        code = compile(fastjsonschema.compile_to_code(schema), f"<nbformat schema {key}>", "exec")
        if path:
            try:
                os.makedirs(cache, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=cache)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(marshal.dumps(code))
                os.replace(tmp, path)
            except OSError:
                pass  # a read-only home: compile each time
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - code generated by fastjsonschema from nbformat's own schema
    return namespace["validate"]


def _cache_dir() -> str | None:
    try:
        import platformdirs

        return platformdirs.user_cache_dir("nbatlas", appauthor=False)
    except Exception:
        return None


def warm_validators() -> None:
    """Build every v4 validator now (in the parent, before the workers fork and inherit them)."""
    for minor in KNOWN_V4_MINORS:
        _validators_for(minor)
    _warm_nbformat()


def _warm_nbformat() -> None:
    """nbformat's own v3 and v4 validators, which its v3 -> v4 upgrade runs, from our compiled-code cache.

    nbformat compiles them (fastjsonschema) the first time a process upgrades a v3 notebook: a
    fraction of a second in every worker. Built here from the cached code, the workers inherit them.
    Anything unexpected (another validator, another nbformat) leaves nbformat to build its own.
    """
    try:
        import fastjsonschema
        from nbformat import json_compat, validator
        from nbformat._imports import import_item

        current = validator.get_current_validator()
        if current is not json_compat.FastJsonSchemaValidator or json_compat.fastjsonschema is not fastjsonschema:
            return
        for version in (3, 4):
            module = import_item(f"nbformat.v{version}")
            minor = getattr(module, "nbformat_minor", 0)
            key = (current.name, version, minor, False)
            if key in validator.validators:
                continue
            schema = validator._get_schema_json(module, version=version, version_minor=minor)
            compiled = _compile(schema)
            original = fastjsonschema.compile
            fastjsonschema.compile = lambda *args, **kwargs: compiled  # what nbformat's validator calls
            try:
                validator.validators[key] = current(schema)
            finally:
                fastjsonschema.compile = original
    except Exception:
        return


def _validators_for(minor: int):
    """fastjsonschema validators for the notebook shell and for each cell type of schema 4.minor.

    Validating each cell against its own type's definition is what the schema's ``oneOf`` means
    (the cell types exclude each other) and three times faster than letting ``oneOf`` try all three.
    """
    if minor in _validators:
        return _validators[minor]
    import copy

    from nbformat import v4
    from nbformat.validator import _get_schema_json  # the same schema files nbformat loads

    result = None
    if (4, minor) in v4.nbformat_schema:
        # every oneOf in the v4 schemas chooses between alternatives that exclude each other (string or
        # list; output_type or cell_type values), so anyOf means the same and stops at the first match
        # instead of raising an exception inside fastjsonschema for every other alternative
        schema = _one_of_to_any_of(_get_schema_json(v4, version=4, version_minor=minor))
        shell = copy.deepcopy(schema)
        shell["properties"]["cells"] = {"type": "array"}
        defs = schema["definitions"]
        per_type = {
            cell_type: _compile({"$ref": f"#/definitions/{cell_type}_cell", "definitions": defs})
            for cell_type in ("code", "markdown", "raw")
            if f"{cell_type}_cell" in defs
        }
        # The same split once more for the outputs of a code cell: the schema's anyOf tries
        # execute_result, display_data, stream, error in turn, and fastjsonschema raises (and catches)
        # an exception for every alternative that does not match; checked against its own
        # output_type's definition, a valid output raises nothing. (Each definition requires its own
        # output_type value, so an output is valid for the anyOf exactly when it is for its own type.)
        fast_code = None
        if "code_cell" in defs and all(t in defs for t in _OUTPUT_TYPES):
            bare = copy.deepcopy(defs["code_cell"])
            outputs = bare.get("properties", {}).get("outputs", {})
            if outputs.get("items") == {"$ref": "#/definitions/output"} and defs.get("output", {}).get("type") == "object":
                outputs["items"] = {"type": "object"}
                fast_code = (
                    _compile({**bare, "definitions": defs}),
                    {t: _compile({"$ref": f"#/definitions/{t}", "definitions": defs}) for t in _OUTPUT_TYPES},
                )
        result = (_compile(shell), per_type, fast_code)
    _validators[minor] = result
    return result


def _one_of_to_any_of(node: Any) -> Any:
    if isinstance(node, dict):
        return {("anyOf" if k == "oneOf" else k): _one_of_to_any_of(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_one_of_to_any_of(v) for v in node]
    return node


def _schema_message(exc: Exception, where: str) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return message.replace("data.", f"{where}.", 1).replace("data ", f"{where} ", 1)


def validate(nb: dict) -> list[str]:
    """nbformat's ``validate`` (its cell-id repair included): a list of violations, empty if valid."""
    import fastjsonschema

    violations: list[str] = []
    minor = nb.get("nbformat_minor")
    cells = nb["cells"]
    if type(minor) is int and minor >= 5:
        # nbformat.validate gives missing or repeated cell ids new random ones; so do we (and say so)
        from nbformat.corpus.words import generate_corpus_id

        seen: set = set()
        for i, cell in enumerate(cells):
            if "id" not in cell:
                cell["id"] = generate_corpus_id()
                violations.append(f"cell {i} has no id (nbformat >= 4.5 requires one); nbformat gave it {cell['id']!r}")
            elif isinstance(cell["id"], str) and cell["id"] in seen:
                new = generate_corpus_id()
                violations.append(f"cell {i} repeats the id {cell['id']!r}; nbformat renamed it {new!r}")
                cell["id"] = new
            if isinstance(cell.get("id"), str):
                seen.add(cell["id"])
    validators = _validators_for(minor) if type(minor) is int else None
    if validators is None:
        return violations + _validate_with_nbformat(nb)
    shell, per_type, fast_code = validators
    try:
        shell(nb)
    except fastjsonschema.JsonSchemaException as exc:
        violations.append(_schema_message(exc, "notebook"))
    for i, cell in enumerate(cells):
        if fast_code is not None and cell.get("cell_type") == "code" and _valid_code_cell(cell, *fast_code):
            continue  # otherwise the whole cell's check below words the violation as nbformat's schema does
        check = per_type.get(cell.get("cell_type"))
        if check is None:
            violations.append(f"cell {i} has cell_type {cell.get('cell_type')!r}, which is not code, markdown or raw")
            continue
        try:
            check(cell)
        except fastjsonschema.JsonSchemaException as exc:
            violations.append(_schema_message(exc, f"cell {i} ({cell['cell_type']})"))
    return violations


def _valid_code_cell(cell: dict, bare: Callable, by_output_type: dict[str, Callable]) -> bool:
    import fastjsonschema

    try:
        bare(cell)
        for output in cell.get("outputs") or ():
            check = by_output_type.get(output.get("output_type")) if isinstance(output, dict) else None
            if check is None:
                return False
            check(output)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def _validate_with_nbformat(nb: dict) -> list[str]:
    from nbformat.validator import ValidationError, iter_validate

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [f"{'/'.join(map(str, e.absolute_path)) or 'notebook'}: {e.message}" for e in iter_validate(nb)][:50]
    except ValidationError as exc:
        return [str(exc)]
    except Exception as exc:  # e.g. a nbformat_minor that is not a number
        return [f"cannot be checked against the nbformat schema: {exc}"]


# --- nbformat 4 dict -> rows ----------------------------------------------------------------------------


def _copy_field(value: Any) -> str:
    if value is None:
        return "\\N"
    if type(value) is int:
        return str(value)
    if type(value) is list:  # text[]: every element quoted
        quoted = ('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in value)
        return copy_escape("{" + ",".join(quoted) + "}")
    return copy_escape(value)


def copy_rows(rows: list[tuple]) -> bytes:
    """Rows in PostgreSQL's COPY text format (no trailing newline after the last)."""
    return "\n".join(["\t".join([_copy_field(v) for v in row]) for row in rows]).encode("utf-8")


def _dumps(value: Any) -> str:
    import orjson

    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError:  # integers beyond 64 bits, which only the json module writes
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _dumps_or_none(value: Any) -> str | None:
    return None if value is None else _dumps(value)


def _image_size(blob: bytes) -> tuple[int | None, int | None]:
    """Width and height from the image header, as Pillow reads them (without decoding any pixel)."""
    # PNG and GIF headers are fixed-layout: read them directly, which is most images and much faster
    if blob[:8] == b"\x89PNG\r\n\x1a\n" and blob[12:16] == b"IHDR" and len(blob) >= 24:
        return struct.unpack(">II", blob[16:24])
    if blob[:6] in (b"GIF87a", b"GIF89a") and len(blob) >= 10:
        return struct.unpack("<HH", blob[6:10])
    if blob[:3] == b"\xff\xd8\xff":
        size = _jpeg_size(blob)
        if size is not None:
            return size
    from PIL import Image

    # opening reads the header only; the pixel limit is ours (checked by the caller), not Pillow's
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(io.BytesIO(blob)) as image:
            width, height = image.size
            return int(width), int(height)
    except Exception:
        return None, None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


# start-of-frame markers: the frame header holds the size (0xC4, 0xC8 and 0xCC are other segments)
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# segments with a length that may come before the first scan (tables, restart interval, APPn, comment)
_JPEG_SKIP = frozenset({0xC4, 0xCC, 0xDB, 0xDD, 0xFE, *range(0xE0, 0xF0)})


def _jpeg_size(blob: bytes) -> tuple[int, int] | None:
    """A well-formed JPEG's size from its frame header, as Pillow reads it; None for anything unusual
    (fill bytes, several frames, a frame Pillow refuses), which Pillow then reads itself.

    Pillow's JPEG reader costs ~50 ms to import in each worker, for the few JPEGs a corpus holds.
    """
    pos, end, size = 2, len(blob), None
    while pos + 4 <= end:
        if blob[pos] != 0xFF:
            return None
        marker = blob[pos + 1]
        length = (blob[pos + 2] << 8) | blob[pos + 3]
        if length < 2 or pos + 2 + length > end:
            return None
        if marker == 0xDA:  # start of scan: the header is over (a height of 0 comes later, in a DNL)
            return size if size is not None and size[0] and size[1] else None
        if marker in _JPEG_SOF:
            # precision, height, width, components: Pillow reads 8-bit L/RGB/CMYK frames only
            if size is not None or length < 8 or blob[pos + 4] != 8 or blob[pos + 9] not in (1, 3, 4):
                return None
            size = ((blob[pos + 7] << 8) | blob[pos + 8], (blob[pos + 5] << 8) | blob[pos + 6])
        elif marker not in _JPEG_SKIP or (0xE0 <= marker <= 0xEF and length < 16):
            return None  # APPn Pillow parses (JFIF, Exif, Adobe...) when short may make it give up
        pos += 2 + length
    return None


def _one_line_b64(text: str, blob: bytes) -> bool:
    """Whether ``b2a_base64(blob, newline=False) == text``, for a ``text`` that strict decoding accepted.

    Strict decoding admits only the base64 alphabet and padding, so each full group of four
    characters is the one encoding of its three bytes; what may still differ is excess padding
    (the length) and the unused bits of a padded last group.
    """
    n = len(blob)
    if len(text) != 4 * ((n + 2) // 3):
        return False
    rest = n % 3
    return rest == 0 or binascii.b2a_base64(blob[-rest:], newline=False).decode("ascii") == text[-4:]


def _kernel(metadata: dict) -> tuple[str | None, str | None]:
    kernelspec = metadata.get("kernelspec") if isinstance(metadata.get("kernelspec"), dict) else {}
    language_info = metadata.get("language_info") if isinstance(metadata.get("language_info"), dict) else {}
    name = kernelspec.get("name")
    language = language_info.get("name") or kernelspec.get("language") or metadata.get("language")
    return (name if isinstance(name, str) else None, language.lower() if isinstance(language, str) else None)


class RowBuilder:
    def __init__(self, limits: Limits, escape: str | None):
        self.limits = limits
        self.escape = escape
        self.cells: list[tuple] = []
        self.outputs: list[tuple] = []
        self.images: dict[str, tuple] = {}
        self.output_images: list[tuple] = []
        self.image_notes: list[str] = []
        self.n_image_outputs = 0

    def cell(self, position: int, cell: dict) -> None:
        cell_type = cell.get("cell_type")
        keys: dict[str, Any] = {}
        absent: list[str] = []
        if type(cell_type) is str:
            canonical = codec.CELL_KEYS.get(cell_type, codec.CELL_KEYS_OTHER)
        else:
            canonical = codec.CELL_KEYS_OTHER
            if "cell_type" in cell:
                keys["cell_type"] = cell_type
            else:
                absent.append("cell_type")
            cell_type = ""
        cell_key = source = execution_count = metadata = attachments = None
        outputs = None
        for key, value in cell.items():
            if key == "cell_type":
                continue
            if key not in canonical:
                keys[key] = value
            elif key == "id" and type(value) is str:
                cell_key = value
            elif key == "metadata" and isinstance(value, dict):
                metadata = value
            elif key == "source" and type(value) is str:
                source = value
            elif key == "execution_count" and (value is None or codec.is_int4(value)):
                execution_count = value
            elif key == "attachments" and isinstance(value, dict):
                attachments = value
            elif key == "outputs" and type(value) is list and all(  # v1-v3 upgrades give NotebookNode (a dict)
                isinstance(o, dict) and type(o.get("output_type")) is str for o in value
            ):
                outputs = value
            else:
                keys[key] = value
        for key in ("metadata", "source", "execution_count", "outputs"):
            if key in canonical and key not in cell:
                absent.append(key)
        self.cells.append(
            (
                position,
                cell_type,
                cell_key,
                source if source is not None else "",
                execution_count,
                _dumps(metadata if metadata is not None else {}),
                _dumps_or_none(attachments),
                _dumps_or_none(codec.pack_extra(keys, absent)),
            )
        )
        for output_position, output in enumerate(outputs or ()):
            self.output(position, output_position, output)

    def output(self, cell_position: int, position: int, output: dict) -> None:
        output_type = output["output_type"]
        canonical = codec.OUTPUT_KEYS.get(output_type, ())
        keys: dict[str, Any] = {}
        absent: list[str] = []
        data = metadata = execution_count = name = text = ename = evalue = traceback = None
        for key, value in output.items():
            if key == "output_type":
                continue
            if key not in canonical:
                keys[key] = value
            elif key == "data" and isinstance(value, dict):
                data = value
            elif key == "metadata" and isinstance(value, dict):
                metadata = value
            elif key == "execution_count" and (value is None or codec.is_int4(value)):
                execution_count = value
            elif key in ("name", "text", "ename", "evalue") and type(value) is str:
                if key == "name":
                    name = value
                elif key == "text":
                    text = value
                elif key == "ename":
                    ename = value
                else:
                    evalue = value
            elif key == "traceback" and codec.is_str_list(value):
                traceback = value
            else:
                keys[key] = value
        if "execution_count" in canonical and "execution_count" not in output:
            absent.append("execution_count")
        index = len(self.outputs)
        mime_types: list[str] = []
        if data is not None:
            mime_types = list(data)
            if any(mime in data for mime in codec.IMAGE_MIMES):
                self.n_image_outputs += 1
                data = self._take_images(index, data, f"cell {cell_position} output {position}")
        self.outputs.append(
            (
                cell_position,
                position,
                output_type,
                mime_types,
                _dumps_or_none(data),
                _dumps_or_none(metadata),
                execution_count,
                name,
                text,
                ename,
                evalue,
                traceback,
                _dumps_or_none(codec.pack_extra(keys, absent)),
            )
        )

    def _take_images(self, index: int, data: dict, where: str) -> dict:
        """Move the image payloads of a mime bundle to the image table; returns what stays in output.data."""
        kept = dict(data)
        for mime in codec.IMAGE_MIMES:
            value = data.get(mime)
            if type(value) is not str:
                if mime in data:
                    self.image_notes.append(f"{where}: {mime} is not a string; kept as it is")
                continue
            if mime == codec.SVG_MIME:
                if self.escape is not None and self.escape in value:
                    continue  # holds characters PostgreSQL cannot store: stays (escaped) in output.data
                blob = value.encode("utf-8")
                sha = hashlib.sha256(blob).hexdigest()
                self.images.setdefault(sha, (sha, mime, None, value, len(blob), None, None))
                self.output_images.append((index, mime, sha, codec.LAYOUT_ONE_LINE))
                del kept[mime]
                continue
            layout: str | None = codec.LAYOUT_RAW  # until known
            try:
                # the usual cases, one line of canonical base64 (with a final newline or not), are
                # recognised without encoding the image again
                nl = value.endswith("\n")
                body = value[:-1] if nl else value
                blob = binascii.a2b_base64(body, strict_mode=True)
                if _one_line_b64(body, blob):
                    layout = codec.LAYOUT_ONE_LINE_NL if nl else codec.LAYOUT_ONE_LINE
                else:
                    layout = codec.b64_layout_of(value, blob)
            except (binascii.Error, ValueError):
                try:
                    blob = binascii.a2b_base64(value)
                except (binascii.Error, ValueError) as exc:
                    self.image_notes.append(f"{where}: {mime} is not valid base64 ({exc}); kept as text")
                    continue
                layout = codec.b64_layout_of(value, blob)
            if not blob:
                self.image_notes.append(f"{where}: {mime} is empty; kept as text")
                continue
            width, height = _image_size(blob)
            if width is not None and (width * height > self.limits.max_image_pixels or max(width, height) > codec.INT4_MAX):
                self.image_notes.append(
                    f"{where}: {mime} declares {width}x{height} = {width * height:,} pixels, over the limit of "
                    f"{self.limits.max_image_pixels:,} (NBATLAS_MAX_IMAGE_PIXELS, a decompression bomb?); "
                    "kept as base64 text in the output, not stored as an image"
                )
                continue
            if width is None:
                self.image_notes.append(f"{where}: {mime} could not be read as an image; stored without width/height")
            sha = hashlib.sha256(blob).hexdigest()
            self.images.setdefault(sha, (sha, mime, blob, None, len(blob), width, height))
            self.output_images.append((index, mime, sha, layout))
            if layout != codec.LAYOUT_RAW:
                del kept[mime]
        return kept


def parse_bytes(raw: bytes, sha: str, place: Place, limits: Limits, analyzer: Callable[[dict], Any] | None = None) -> ParsedNotebook:
    value, needs_check, notes = decode_json(raw)
    nb, original_major = to_v4(value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        violations = validate(nb)
    problems: list[FileProblem] = []

    def note(stage: str, items: list[str], what: str) -> None:
        if items:
            reason = f"{what} ({len(items)}): " + "; ".join(items[:3]) + (" ..." if len(items) > 3 else "")
            problems.append(FileProblem(place.location, place.member, stage, reason, sha, "warning", {"all": items[:200]}))

    for n in notes:
        problems.append(FileProblem(place.location, place.member, n.stage, n.reason, sha, "warning"))
    note("schema", violations, f"ingested, but breaks the nbformat {nb.get('nbformat')}.{nb.get('nbformat_minor')} schema")

    analysis = None
    if analyzer is not None:
        try:
            analysis = analyzer(nb)
        except Exception as exc:
            problems.append(FileProblem(place.location, place.member, "analysis", f"cell analysis failed: {type(exc).__name__}: {exc}", sha, "warning"))

    escape = None
    if needs_check and codec.has_unstorable(nb):
        escape = codec.choose_escape(raw)
        nb = codec.escape_tree(nb, escape)

    builder = RowBuilder(limits, escape)
    keys: dict[str, Any] = {}
    absent: list[str] = []
    minor = nb.get("nbformat_minor")
    if not codec.is_int4(minor):
        if "nbformat_minor" in nb:
            keys["nbformat_minor"] = minor
        else:
            absent.append("nbformat_minor")
        minor = 0
    for key, val in nb.items():
        if key not in codec.NOTEBOOK_KEYS:
            keys[key] = val
    metadata = nb["metadata"]
    for position, cell in enumerate(nb["cells"]):
        builder.cell(position, cell)
    note("image", builder.image_notes, "images kept as text")
    kernel_name, language = _kernel(metadata)
    row = (
        nb["nbformat"],
        minor,
        original_major,
        kernel_name,
        language,
        _dumps(metadata),
        len(builder.cells),
        len(builder.outputs),
        builder.n_image_outputs,
        _dumps_or_none(codec.pack_extra(keys, absent)),
        escape,
    )
    return ParsedNotebook(
        kind=place.kind,
        location=place.location,
        member=place.member,
        sha256=sha,
        size_bytes=len(raw),
        notebook=row,
        cells=copy_rows(builder.cells),
        outputs=copy_rows(builder.outputs),
        images=list(builder.images.values()),
        output_images=builder.output_images,
        warnings=problems,
        analysis=analysis,
    )
