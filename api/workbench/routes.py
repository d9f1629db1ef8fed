"""The workbench's HTTP routes: server-rendered pages, the sandboxed frames of HTML outputs, and (in
private mode only) login, samples, codebooks and the CSV export of annotations.

Every page carries a strict Content-Security-Policy: scripts only from this site's static files (no
inline script, no eval), no plugins, no framing by other sites; the only frames are this site's
sandboxed output frames. Public mode registers only the read-only pages.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from api.database import Database, UserError
from api.workbench import auth, render
from api.workbench.pages import GALLERY_PAGE, gallery_page, notebook_page, plot_page, sample_page
from db.queries import browse, study
from db.queries.filters import FilterParamError, filter_from_params, location_shown
from db.queries.notebooks import AmbiguousPrefix, NotebookNotFound, resolve_sha256
from db.queries.workbench import PlotFilter
from db.settings import Settings

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
FILTER_PARAMS = ("plot_kind", "stage", "library", "competition", "run_status", "mime", "min_votes", "max_votes")
STATIC_DIR = Path(__file__).with_name("static")


def _environment(public: bool) -> Environment:
    env = Environment(
        loader=PackageLoader("api.workbench", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(public=public, markdown=render.markdown, code=render.code, strip_ansi=render.strip_ansi)
    env.filters["qs"] = lambda params: urlencode([(k, v) for k, v in params if v not in (None, "")])
    # a source as this server shows it: the public one leaves out the folders of the ingesting machine
    env.filters["location"] = lambda source: location_shown(source.kind, source.location, hide_folders=public)
    return env


def _plot_filter(request: Request) -> tuple[PlotFilter, list[tuple[str, str]]]:
    pairs = [(k, v.strip()) for k, v in request.query_params.multi_items() if k in FILTER_PARAMS and v.strip()]
    text = (request.query_params.get("q") or "").strip()
    flt = filter_from_params(PlotFilter, pairs) or PlotFilter()
    if text:
        flt = PlotFilter(**{**{f: getattr(flt, f) for f in flt.__dataclass_fields__}, "text": text})
    return flt, pairs + ([("q", text)] if text else [])


class _Cached:
    """One value, kept for a while."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.value: Any = None
        self.at = 0.0

    def get(self) -> Any:
        return self.value if self.value is not None and time.monotonic() - self.at < self.seconds else None

    def put(self, value: Any) -> None:
        if self.get() is None:
            self.value, self.at = value, time.monotonic()


def build_workbench_router(db: Database, *, settings: Settings, public: bool) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    templates = _environment(public)
    # the filters' values and counts aggregate every figure: computed every few minutes, not per page
    filter_values = _Cached(seconds=300)

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("annotator", getattr(request.state, "annotator", None))
        context.setdefault("q", request.query_params.get("q", ""))
        body = templates.get_template(template).render(request_path=request.url.path, **context)
        return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)

    def not_found(request: Request, message: str) -> HTMLResponse:
        return page(request, "error.html", status=404, title="Not found", message=message)

    async def who(request: Request) -> dict | None:
        """The logged-in annotator (private mode), for showing their coding."""
        if public:
            return None
        token = auth.header_token(request) or auth.cookie_token(request)
        found = await db.read(study.annotator_by_token, token=token) if token else None
        request.state.annotator = found
        return found

    def coding_args(request: Request, annotator: dict | None) -> dict | None:
        if public:
            return None
        codebook = request.query_params.get("codebook")
        return {
            "annotator": annotator,
            "codebook_id": int(codebook) if codebook and codebook.isdigit() else None,
            "sample_name": request.query_params.get("sample") or None,
        }

    # ------------------------------------------------------------ read-only pages (both modes)

    @router.get("/", response_class=HTMLResponse)
    async def gallery(request: Request) -> HTMLResponse:
        await who(request)
        try:
            flt, active = _plot_filter(request)
        except FilterParamError as exc:
            return page(request, "error.html", status=400, title="Bad filter", message=str(exc))
        after = None
        raw_after = request.query_params.get("after")
        if raw_after:
            output_id, _, mime = raw_after.partition(":")
            if not output_id.isdigit() or not mime:
                return page(request, "error.html", status=400, title="Bad page", message=f"not a page cursor: {raw_after!r}")
            after = (int(output_id), mime)
        data = await db.read(gallery_page, filter=flt, after=after, values=filter_values.get())
        filter_values.put(data["values"])
        return page(request, "gallery.html", active=active, chosen=dict(active), page_size=GALLERY_PAGE, **data)

    @router.get("/plot/{sha256}", response_class=HTMLResponse)
    async def plot(request: Request, sha256: str) -> HTMLResponse:
        if not SHA256.match(sha256):
            return not_found(request, f"no plot {sha256!r}: plots are named by the SHA-256 of their image")
        annotator = await who(request)
        data = await db.read(
            plot_page, sha256=sha256.lower(), image_model=settings.embed_image_model,
            coding=coding_args(request, annotator),
        )
        if data is None:
            return not_found(request, f"no image with SHA-256 {sha256.lower()}")
        return page(request, "plot.html", target=f"image:{sha256.lower()}", **data)

    @router.get("/notebook/{key}", response_class=HTMLResponse)
    async def notebook(request: Request, key: str, after: str | None = None) -> Response:
        # the pages link notebooks by row id; a researcher pastes the SHA-256 the API, `nbatlas get` and
        # /notebooks/SHA.ipynb use (or a prefix of it): send that to the row id's page
        if not key.isdigit():
            try:
                sha = await db.read(resolve_sha256, prefix=key)
            except AmbiguousPrefix as exc:
                return page(request, "error.html", status=400, title="Ambiguous notebook", message=f"{exc}: give more digits")
            except NotebookNotFound as exc:
                return not_found(request, f"{exc}; notebook pages take a row id (/notebook/12) or a SHA-256")
            found = await db.read(browse.notebook_ids_by_sha256, ids=[sha])
            query = f"?{urlencode({'after': after})}" if after else ""
            return RedirectResponse(f"/notebook/{found[sha]}{query}", status_code=303)
        if after is not None and not after.isdigit():
            return page(request, "error.html", status=400, title="Bad page", message=f"not a cell position: after={after!r}")
        notebook_id = int(key)
        if notebook_id >= 2**63:  # more than a row id can hold: the database would refuse the number itself
            return not_found(request, f"no notebook {notebook_id}")
        annotator = await who(request)
        data = await db.read(notebook_page, notebook_id=notebook_id, after=int(after) if after else None,
                             coding=coding_args(request, annotator))
        if data is None:
            return not_found(request, f"no notebook {notebook_id}")
        return page(request, "notebook.html", target=f"notebook:{notebook_id}", render=render, **data)

    @router.get("/frames/output/{output_id}")
    async def output_frame(output_id: int) -> Response:
        """An HTML output, alone, for a sandboxed iframe: the CSP makes the document an opaque
        origin that can run nothing and fetch nothing."""
        rows = await db.read(browse.outputs_by_id, ids=[output_id])
        row = rows.get(output_id)
        fragment = render.output_text(row.data, "text/html") if row is not None else ""
        headers = {"Content-Security-Policy": render.FRAME_CSP, "X-Content-Type-Options": "nosniff",
                   "Cache-Control": "private, max-age=3600", "Referrer-Policy": "no-referrer"}
        if not fragment:
            return Response("no HTML output here", status_code=404, media_type="text/plain", headers=headers)
        return HTMLResponse(render.frame_document(fragment), headers=headers)

    if public:
        return router

    # ------------------------------------------------------------ private: login, samples, codebooks

    def back(request: Request, url: str, message: str | None = None, error: bool = False) -> RedirectResponse:
        if message:
            sep = "&" if "?" in url else "?"
            url += sep + urlencode({"error" if error else "notice": message})
        return RedirectResponse(url, status_code=303)

    async def writer(request: Request) -> dict | None:
        """The annotator a form post acts as (same-origin posts only)."""
        token = auth.token_for_write(request)
        return await db.read(study.annotator_by_token, token=token) if token else None

    def local_path(url: str | None) -> str:
        # only paths on this site: "next" must not send anyone elsewhere
        return url if url and url.startswith("/") and not url.startswith("//") and "\\" not in url else "/"

    @router.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> HTMLResponse:
        await who(request)
        return page(request, "login.html", next=local_path(request.query_params.get("next")),
                    error=request.query_params.get("error"))

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        next_url = local_path(str(form.get("next") or "/"))
        if not auth.is_same_origin(request):
            return page(request, "error.html", status=403, title="Refused", message="log in from this site's own login page")
        token = str(form.get("token") or "").strip()
        found = await db.read(study.annotator_by_token, token=token) if token else None
        if found is None:
            return back(request, "/login?" + urlencode({"next": next_url}), "unknown token: ask for one with "
                        "`nbatlas annotator add NAME`", error=True)
        response = RedirectResponse(next_url, status_code=303)
        response.set_cookie(auth.COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                            max_age=60 * 60 * 24 * 180, path="/")
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        response = RedirectResponse("/", status_code=303)
        if auth.is_same_origin(request):
            response.delete_cookie(auth.COOKIE, path="/")
        return response

    @router.get("/samples", response_class=HTMLResponse)
    async def samples(request: Request) -> HTMLResponse:
        await who(request)

        def load(session):
            from db.queries.workbench import gallery_filter_values

            return {"samples": study.list_samples(session=session), "codebooks": study.list_codebooks(session=session),
                    "values": gallery_filter_values(session=session)}

        data = await db.read(load)
        return page(request, "samples.html", notice=request.query_params.get("notice"),
                    error=request.query_params.get("error"), strata=study.STRATA, **data)

    @router.post("/samples")
    async def draw(request: Request) -> Response:
        annotator = await writer(request)
        if annotator is None:
            return back(request, "/samples", "log in with your annotator token to draw samples", error=True)
        form = await request.form()
        try:
            pairs = [(k, str(v).strip()) for k, v in form.multi_items() if k in FILTER_PARAMS and str(v).strip()]
            flt = filter_from_params(PlotFilter, pairs) or PlotFilter()
            text = str(form.get("q") or "").strip()
            if text:
                flt = PlotFilter(**{**{f: getattr(flt, f) for f in flt.__dataclass_fields__}, "text": text})
            spec = study.SampleSpec(
                n=int(str(form.get("n") or "0")), seed=int(str(form.get("seed") or "0")),
                unit=str(form.get("unit") or "image"), stratify_by=str(form.get("stratify_by") or "") or None,
                allocation=str(form.get("allocation") or "proportional"), filter=flt,
            )
            codebook = str(form.get("codebook") or "")
            name = str(form.get("name") or "")
            sample, created = await db.write(
                study.draw_sample, name=name, spec=spec, description=str(form.get("description") or ""),
                codebook_id=int(codebook) if codebook.isdigit() else None, created_by=annotator["id"],
            )
        except (ValueError, FilterParamError, UserError) as exc:
            return back(request, "/samples", str(exc), error=True)
        return back(request, f"/samples/{sample['name']}", None if created else "a sample with this name and "
                    "specification exists: here it is")

    @router.get("/samples/{name}", response_class=HTMLResponse)
    async def sample(request: Request, name: str, after: str | None = None) -> HTMLResponse:
        # a page, not an API: a bad cursor gets a page saying so, not the framework's 422 JSON
        if after is not None and not after.isdigit():
            return page(request, "error.html", status=400, title="Bad page", message=f"not a sample position: after={after!r}")
        annotator = await who(request)
        codebook = request.query_params.get("codebook")
        data = await db.read(sample_page, name=name, annotator=annotator, after=int(after) if after else None,
                             codebook_id=int(codebook) if codebook and codebook.isdigit() else None)
        if data is None:
            return not_found(request, f"no sample named {name!r}")
        return page(request, "sample.html", notice=request.query_params.get("notice"),
                    error=request.query_params.get("error"), **data)

    @router.post("/samples/{name}/codebook")
    async def sample_codebook(request: Request, name: str) -> Response:
        if await writer(request) is None:
            return back(request, f"/samples/{name}", "log in to change the sample's codebook", error=True)
        form = await request.form()
        codebook = str(form.get("codebook") or "")

        def change(session):
            found = study.require_sample(session=session, name=name)
            study.set_sample_codebook(session=session, sample_id=found["id"],
                                      codebook_id=int(codebook) if codebook.isdigit() else None)

        try:
            await db.write(change)
        except (study.StudyError, UserError) as exc:
            return back(request, "/samples", str(exc), error=True)
        return back(request, f"/samples/{name}")

    def csv_stream(**filters: Any) -> Iterator[bytes]:
        from sqlmodel import Session

        with Session(db.engine) as session:
            buffer = io.StringIO()
            out = csv.DictWriter(buffer, fieldnames=study.EXPORT_COLUMNS)
            out.writeheader()
            for i, row in enumerate(study.iter_annotation_rows(session=session, **filters)):
                out.writerow({k: row[k] for k in study.EXPORT_COLUMNS})
                if i % 1000 == 999:
                    yield buffer.getvalue().encode()
                    buffer.seek(0)
                    buffer.truncate()
            yield buffer.getvalue().encode()

    @router.get("/annotations.csv")
    async def export_annotations(request: Request) -> Response:
        """Every annotation (or a sample's, codebook's, annotator's) as CSV."""
        names = {k: request.query_params.get(k) for k in ("sample", "codebook", "annotator")}

        def resolve(session):
            filters: dict[str, Any] = {}
            if names["sample"]:
                filters["sample_id"] = study.require_sample(session=session, name=names["sample"])["id"]
            if names["codebook"]:
                filters["codebook_id"] = study.require_codebook(session=session, name=names["codebook"])["id"]
            if names["annotator"]:
                match = [a for a in study.list_annotators(session=session) if a["name"] == names["annotator"]]
                if not match:
                    raise study.StudyError(f"no annotator named {names['annotator']!r}")
                filters["annotator_id"] = match[0]["id"]
            return filters

        try:
            filters = await db.read(resolve)
        except study.StudyError as exc:
            return Response(str(exc), status_code=404, media_type="text/plain")
        filename = "annotations" + "".join(f"-{v}" for v in names.values() if v) + ".csv"
        return StreamingResponse(
            csv_stream(**filters), media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"', "X-Content-Type-Options": "nosniff"},
        )

    @router.get("/codebooks", response_class=HTMLResponse)
    async def codebooks(request: Request) -> HTMLResponse:
        await who(request)
        books = await db.read(study.list_codebooks)
        return page(request, "codebooks.html", codebooks=books, notice=request.query_params.get("notice"),
                    error=request.query_params.get("error"))

    @router.post("/codebooks")
    async def create_codebook(request: Request) -> Response:
        if await writer(request) is None:
            return back(request, "/codebooks", "log in to create codebooks", error=True)
        form = await request.form()
        try:
            book = await db.write(study.create_codebook, name=str(form.get("name") or ""),
                                  description=str(form.get("description") or ""))
        except (study.StudyError, UserError) as exc:
            return back(request, "/codebooks", str(exc), error=True)
        return back(request, f"/codebooks/{book['name']}")

    @router.get("/codebooks/{name}", response_class=HTMLResponse)
    async def codebook(request: Request, name: str) -> HTMLResponse:
        await who(request)

        def load(session):
            book = study.get_codebook(session=session, name=name)
            if book is None:
                return None
            return {"codebook": book, "codes": study.codes_of_codebooks(session=session, ids=[book["id"]])[book["id"]]}

        data = await db.read(load)
        if data is None:
            return not_found(request, f"no codebook named {name!r}")
        return page(request, "codebook.html", reserved=" ".join(sorted(study.RESERVED_KEYS)),
                    notice=request.query_params.get("notice"), error=request.query_params.get("error"), **data)

    @router.post("/codebooks/{name}/codes")
    async def save_code(request: Request, name: str) -> Response:
        if await writer(request) is None:
            return back(request, f"/codebooks/{name}", "log in to edit codebooks", error=True)
        form = await request.form()
        code_id = str(form.get("id") or "")

        def save(session):
            book = study.require_codebook(session=session, name=name)
            key = str(form.get("key") or "").strip()
            return study.save_code(
                session=session, codebook_id=book["id"], name=str(form.get("name") or ""),
                description=str(form.get("description") or ""), code_id=int(code_id) if code_id.isdigit() else None,
                key=key if key or code_id.isdigit() else None,
            )

        try:
            saved = await db.write(save)
        except (study.StudyError, UserError) as exc:
            return back(request, f"/codebooks/{name}", str(exc), error=True)
        return back(request, f"/codebooks/{name}", f"saved code {saved['name']!r}")

    return router
