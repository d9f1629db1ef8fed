"""Plain HTTP routes beside /graphql: health, image bytes and thumbnails, bulk export, .ipynb download."""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from api.database import Database, QueryTimeout, UserError
from db.queries import export, images
from db.queries.filters import FilterParamError, filter_from_params

SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
IMMUTABLE = "public, max-age=31536000, immutable"
# public mode rounds a requested thumbnail width up to one of these, so the cache stays bounded
PUBLIC_THUMBNAIL_WIDTHS = (64, 128, 256, 512, 1024)
MEDIA_TYPES = {"parquet": "application/vnd.apache.parquet", "ndjson": "application/x-ndjson"}


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _etag_matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or etag in tags


def make_thumbnail(content: bytes, width: int, max_pixels: int) -> bytes:
    from PIL import Image as PILImage

    PILImage.MAX_IMAGE_PIXELS = max_pixels  # a decompression bomb raises instead of eating memory
    with PILImage.open(io.BytesIO(content)) as im:
        im.seek(0)  # first frame of a GIF
        im = im.convert("RGBA") if im.mode not in ("RGB", "RGBA", "L", "LA") else im.copy()
        if im.width > width:
            # resize, not thumbnail(): thumbnail() may round the width below the one asked for
            height = max(1, round(im.height * width / im.width))
            im = im.resize((width, height), PILImage.Resampling.LANCZOS, reducing_gap=3.0)
        out = io.BytesIO()
        im.save(out, format="PNG")
        return out.getvalue()


class ThumbnailCache:
    """PNG thumbnails on disk, one file per (image, width): ``<home>/thumbnails/ab/<sha256>-<w>.png``."""

    def __init__(self, root: Path, max_pixels: int) -> None:
        self.root = root
        self.max_pixels = max_pixels

    def get(self, sha256: str, width: int, content_loader) -> bytes:
        path = self.root / sha256[:2] / f"{sha256}-{width}.png"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        data = make_thumbnail(content_loader(), width, self.max_pixels)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the whole file or none
        return data


class _Sink(io.RawIOBase):
    """A file that Parquet writes into and the response drains after each record batch."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        b = bytes(data)
        self.chunks.append(b)
        self.position += len(b)
        return len(b)

    def tell(self) -> int:
        return self.position

    def drain(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks.clear()
        return out


def parquet_stream(batches: Iterator, schema) -> Iterator[bytes]:
    sink = _Sink()
    writer = export.parquet_writer(sink, schema)
    try:
        for batch in batches:
            writer.write_batch(batch)
            chunk = sink.drain()
            if chunk:
                yield chunk
    finally:
        writer.close()
    yield sink.drain()


def export_stream(db: Database, table: str, fmt: str, filter, with_data: bool) -> Iterator[bytes]:
    """The export's bytes, produced in a worker thread chunk by chunk; the session lives as long as
    the stream (closed when the client has it all, or goes away)."""
    from sqlmodel import Session

    with Session(db.engine) as session:
        if db.public:
            export.allow_long_statements(session=session, ms=db.settings.export_statement_timeout_ms)
        if fmt == "parquet":
            batches = export.record_batches(
                session=session, table=table, filter=filter, with_data=with_data, hide_folders=db.public
            )
            yield from parquet_stream(batches, export.arrow_schema(table, with_data=with_data))
        else:
            yield from export.ndjson_chunks(
                session=session, table=table, filter=filter, with_data=with_data, hide_folders=db.public
            )


def build_router(db: Database, *, home: Path, thumbnail_max_width: int, max_image_pixels: int) -> APIRouter:
    router = APIRouter()
    thumbnails = ThumbnailCache(home / "thumbnails", max_image_pixels)

    @router.get("/health", summary="Is the server up and its database reachable?")
    async def health() -> JSONResponse:
        from db.queries.browse import ping

        try:
            revision = await db.read(ping)
        except QueryTimeout:  # the database answered (by cancelling): it is up, only slow or strict
            revision = None
        except Exception:  # noqa: BLE001  the answer is the point, not the traceback
            return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "public": db.public, "schema_revision": revision})

    @router.api_route("/images/{sha256}", methods=["GET", "HEAD"], summary="An image's bytes, or a PNG thumbnail.")
    async def image(request: Request, sha256: str, width: int | None = None) -> Response:
        if not SHA256.match(sha256):
            return error(404, f"no image {sha256!r}: image ids are SHA-256 hex digests (the Image.sha256 field)")
        sha256 = sha256.lower()
        if width is not None:
            if not 1 <= width <= thumbnail_max_width:
                return error(422, f"width must be between 1 and {thumbnail_max_width}, not {width}")
            if db.public:
                width = next((w for w in PUBLIC_THUMBNAIL_WIDTHS if w >= width), PUBLIC_THUMBNAIL_WIDTHS[-1])
        found = await db.read(images.image_content, sha256=sha256)
        if found is None:
            return error(404, f"no image with SHA-256 {sha256}")
        is_svg = found.mime == "image/svg+xml"
        thumb = width is not None and not is_svg  # an SVG scales by itself: it is served as is
        etag = f'"{sha256}-w{width}"' if thumb else f'"{sha256}"'
        headers = {"ETag": etag, "Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff"}
        if is_svg:
            # an SVG can carry scripts: opened directly it must not run them with this origin's rights
            headers["Content-Security-Policy"] = "sandbox; default-src 'none'; style-src 'unsafe-inline'"
        if _etag_matches(request, etag):
            return Response(status_code=304, headers=headers)
        if thumb:
            try:
                body = await anyio.to_thread.run_sync(thumbnails.get, sha256, width, lambda: found.content)
            except Exception as exc:  # noqa: BLE001  a stored image Pillow cannot read
                return error(422, f"cannot make a thumbnail of image {sha256} ({found.mime}): {type(exc).__name__}")
            return Response(body, media_type="image/png", headers=headers)
        return Response(found.content, media_type=found.mime, headers=headers)

    @router.get(
        "/export/{name}",
        summary="A whole table as Parquet or NDJSON, streamed.",
        description=(
            "name is TABLE.FORMAT: notebooks, cells, outputs or images; parquet or ndjson. Query "
            "parameters filter like the GraphQL filters, in snake_case: `cell_type=code`, "
            "`notebook.language=python`, lists repeated or comma-separated. images take `with_data=true` "
            "for the bytes."
        ),
    )
    async def export_table(request: Request, name: str) -> Response:
        table, _, fmt = name.partition(".")
        if table not in export.TABLES or fmt not in export.FORMATS:
            return error(
                404, f"no export {name!r}: use /export/TABLE.FORMAT with TABLE one of "
                f"{', '.join(export.TABLES)} and FORMAT one of {', '.join(export.FORMATS)}"
            )
        params = [(k, v) for k, v in request.query_params.multi_items()]
        with_data = False
        rest = []
        for k, v in params:
            if k == "with_data":
                with_data = v.lower() in ("1", "true", "yes")
            else:
                rest.append((k, v))
        try:
            flt = filter_from_params(export.TABLES[table].filter_class, rest)
        except FilterParamError as exc:
            return error(400, str(exc))
        stream = export_stream(db, table, fmt, flt, with_data)
        # the first chunk before the 200: an error in the query is then a proper error response
        try:
            first = await anyio.to_thread.run_sync(next, stream, b"")
        except Exception as exc:
            stream.close()
            translated = db._translate(exc) if hasattr(exc, "orig") else exc
            if isinstance(translated, UserError):
                return error(400, str(translated))
            raise

        def rest_of(stream=stream, first=first) -> Iterator[bytes]:
            yield first
            yield from stream

        return StreamingResponse(
            rest_of(),
            media_type=MEDIA_TYPES[fmt],
            headers={"Content-Disposition": f'attachment; filename="{table}.{fmt}"'},
        )

    @router.get("/notebooks/{name}", summary="A notebook rebuilt from the database as .ipynb.")
    async def notebook_file(name: str) -> Response:
        sha256 = name.removesuffix(".ipynb")
        if not SHA256.match(sha256):
            return error(404, f"no notebook {name!r}: use /notebooks/SHA256.ipynb")
        try:
            from db.queries.notebooks import rebuild_notebook
        except ImportError:
            return error(501, "rebuilding notebooks is not part of this nbatlas")
        try:
            nb = await db.read(rebuild_notebook, sha256=sha256.lower())
        except LookupError:
            nb = None
        if nb is None:
            return error(404, f"no notebook with SHA-256 {sha256.lower()}")
        body = nb if isinstance(nb, bytes) else nb.encode("utf-8") if isinstance(nb, str) else _nb_bytes(nb)
        return Response(
            body,
            media_type="application/x-ipynb+json",
            headers={"Content-Disposition": f'attachment; filename="{sha256.lower()}.ipynb"'},
        )

    return router


def _nb_bytes(nb) -> bytes:
    import nbformat

    return nbformat.writes(nb).encode("utf-8")
