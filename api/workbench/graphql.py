"""The study in GraphQL, private mode only: codebooks, samples (with progress and agreement),
annotations (a page at a time: the API's export of them), and the mutations that code.

Every mutation acts as an annotator identified by their personal token: the ``X-Annotator-Token``
header, or the workbench's login cookie when the request carries the workbench's
``X-Requested-With`` header (see ``api.workbench.auth``). ``with_study`` adds these fields to the
private schema's root types; the public schema never sees them.
"""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api import types as t
from api.database import UserError
from api.workbench import auth
from db.queries import study
from db.queries.filters import FilterParamError, filter_from_params
from db.queries.workbench import PlotFilter


async def _call(info: Info, fn, *, write: bool = False, **kwargs):
    db = info.context.db
    try:
        return await (db.write(fn, **kwargs) if write else db.read(fn, **kwargs))
    except study.StudyError as exc:
        raise UserError(str(exc)) from exc


async def current_annotator(info: Info) -> dict | None:
    cached = getattr(info.context, "_study_annotator", False)
    if cached is not False:
        return cached
    request = info.context.request
    token = auth.token_for_write(request) if request is not None else None
    found = await info.context.db.read(study.annotator_by_token, token=token) if token else None
    info.context._study_annotator = found
    return found


async def require_annotator(info: Info) -> dict:
    found = await current_annotator(info)
    if found is None:
        request = info.context.request
        if request is not None and auth.token_for_write(request):
            # a token was sent but matches no annotator: a typo or a revoked token, not a missing header
            raise UserError(
                "annotator token not recognised: no annotator has this token "
                "(`nbatlas annotator token NAME` gives NAME a new one, `nbatlas annotator add NAME` a new annotator)"
            )
        raise UserError(
            "this needs an annotator: send your token as the X-Annotator-Token header "
            "(`nbatlas annotator add NAME` prints one)"
        )
    return found


@strawberry.type(description="A person who codes, known by a personal token.")
class Annotator:
    id: int
    name: str


@strawberry.type(description="One code of a codebook: what an annotator can say about a plot, cell or notebook.")
class Code:
    id: int
    codebook_id: int
    name: str
    description: str
    key: str | None = strawberry.field(description="The keyboard shortcut in the workbench's coding pages.")
    position: int

    @classmethod
    def from_row(cls, r: dict) -> Code:
        return cls(id=r["id"], codebook_id=r["codebook_id"], name=r["name"], description=r["description"],
                   key=r["key"], position=r["position"])


@strawberry.type(description="A named set of codes.")
class Codebook:
    id: int
    name: str
    description: str
    created_at: datetime

    @classmethod
    def from_row(cls, r: dict) -> Codebook:
        return cls(id=r["id"], name=r["name"], description=r["description"], created_at=r["created_at"])

    @strawberry.field
    async def codes(self, info: Info) -> list[Code]:
        rows = await _call(info, study.codes_of_codebooks, ids=[self.id])
        return [Code.from_row(r) for r in rows[self.id]]


@strawberry.type(description="One annotator's judgement that a code applies to an image, a cell or a notebook.")
class Annotation:
    id: int
    code_id: int
    code: str
    codebook_id: int
    annotator: str
    target_kind: str = strawberry.field(description="image | cell | notebook")
    target: str = strawberry.field(description="image:<sha256>, cell:<id> or notebook:<id>")
    image_sha256: str | None
    cell_id: int | None
    notebook_id: int | None
    sample_id: int | None = strawberry.field(description="The sample it was coded in, if any.")
    memo: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, r: dict) -> Annotation:
        target = {"image": r["image_sha256"], "cell": r["cell_id"], "notebook": r["notebook_id"]}[r["target_kind"]]
        return cls(
            id=r["id"], code_id=r["code_id"], code=r["code"], codebook_id=r["codebook_id"], annotator=r["annotator"],
            target_kind=r["target_kind"], target=f"{r['target_kind']}:{target}", image_sha256=r["image_sha256"],
            cell_id=r["cell_id"], notebook_id=r["notebook_id"], sample_id=r["sample_id"], memo=r["memo"],
            created_at=r["created_at"], updated_at=r["updated_at"],
        )


@strawberry.type(description="An annotation as exported: names instead of ids (the CSV export's columns).")
class AnnotationRecord:
    annotation_id: int
    codebook: str
    code: str
    code_key: str | None
    annotator: str
    target_kind: str
    image_sha256: str | None
    notebook_id: int | None
    notebook_sha256: str | None
    cell_id: int | None
    cell_position: int | None
    memo: str | None
    coded_in_sample: str | None
    created_at: datetime
    updated_at: datetime


@strawberry.type
class SampleItem:
    position: int
    stratum: str | None
    image_sha256: str | None
    notebook_id: int | None

    @strawberry.field(description="The image, for a sample of images.")
    async def image(self, info: Info) -> t.Image | None:
        return await info.context.loaders.image.load(self.image_sha256) if self.image_sha256 else None

    @strawberry.field(description="The notebook, for a sample of notebooks.")
    async def notebook(self, info: Info) -> t.Notebook | None:
        return await info.context.loaders.notebook.load(self.notebook_id) if self.notebook_id else None


@strawberry.type
class AnnotatorProgress:
    annotator: str
    coded: int = strawberry.field(description="Items this annotator applied at least one code to.")
    total: int


@strawberry.type
class CodeAgreement:
    code: str
    key: str | None
    units: int = strawberry.field(description="Items coded by two or more annotators.")
    percent_agreement: float | None = strawberry.field(description="Share of annotator pairs that agree (0-1).")
    kappa: float | None = strawberry.field(description="Cohen's kappa, when exactly two annotators coded.")
    alpha: float | None = strawberry.field(description="Krippendorff's alpha (nominal).")
    applied: JSON = strawberry.field(description="How many items each annotator applied the code to.")


@strawberry.type
class Agreement:
    annotators: list[str]
    items_coded: int
    metric: str = strawberry.field(description="kappa (two annotators) or alpha (more)")
    codes: list[CodeAgreement]


def _resolve_codebook(session, *, sample_id: int, codebook: str | None) -> dict:
    return study.sample_codebook(session=session, sample=study.get_sample(session=session, id=sample_id), codebook=codebook)


@strawberry.type(description="A named, reproducible worklist of images or notebooks.")
class Sample:
    id: int
    name: str
    unit: str = strawberry.field(description="image | notebook")
    spec: JSON = strawberry.field(description="What decided the draw: n, seed, stratify_by, allocation, filter.")
    command: str = strawberry.field(description="The `nbatlas sample` command that draws it again.")
    description: str
    population: int = strawberry.field(description="How many units matched the filter.")
    strata: JSON | None = strawberry.field(description="{stratum: [population, drawn]}")
    n_items: int
    codebook: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, r: dict) -> Sample:
        return cls(id=r["id"], name=r["name"], unit=r["unit"], spec=r["spec"], command=r["command"],
                   description=r["description"], population=r["population"], strata=r.get("strata"),
                   n_items=r["n_items"], codebook=r.get("codebook"), created_at=r["created_at"])

    @strawberry.field(description="The worklist, in coding order.")
    async def items(self, info: Info, first: int | None = None, after: str | None = None) -> t.Connection[SampleItem]:
        ctx = info.context
        first = ctx.page_size(first)
        (after_pos,) = ctx.cursor(after, "sample_item", (int,)) or (None,)
        rows = await _call(info, study.sample_items, sample_id=self.id, first=first, after=after_pos)
        return t.make_connection(
            [SampleItem(position=r["position"], stratum=r["stratum"], image_sha256=r["image_sha256"],
                        notebook_id=r["notebook_id"]) for r in rows],
            [ctx.encode_cursor("sample_item", r["position"]) for r in rows], first=first, after=after,
        )

    @strawberry.field(description="Items coded per annotator (with the sample's codebook, or the one named).")
    async def progress(self, info: Info, codebook: str | None = None) -> list[AnnotatorProgress]:
        def load(session):
            book = _resolve_codebook(session, sample_id=self.id, codebook=codebook)
            return study.progress(session=session, sample_id=self.id, codebook_id=book["id"])

        rows = await _call(info, load)
        return [AnnotatorProgress(annotator=r["annotator"], coded=r["coded"], total=r["total"]) for r in rows]

    @strawberry.field(description="Agreement per code between the annotators who coded the sample.")
    async def agreement(self, info: Info, codebook: str | None = None) -> Agreement:
        def load(session):
            book = _resolve_codebook(session, sample_id=self.id, codebook=codebook)
            return study.agreement(session=session, sample_id=self.id, codebook_id=book["id"])

        a = await _call(info, load)
        return Agreement(
            annotators=a["annotators"], items_coded=a["items_coded"], metric=a["metric"],
            codes=[CodeAgreement(code=c["code"], key=c["key"], units=c["units"], percent_agreement=c["percent_agreement"],
                                 kappa=c["kappa"], alpha=c["alpha"], applied=c["applied"]) for c in a["codes"]],
        )


@strawberry.input(description="What decides a sample's draw (the options of `nbatlas sample`).")
class DrawSampleInput:
    name: str
    n: int
    seed: int
    unit: str = "image"
    stratify_by: str | None = strawberry.field(default=None, description="competition | plot_kind | stage")
    allocation: str = "proportional"
    filter: JSON | None = strawberry.field(
        default=None,
        description='Figure filter, e.g. {"plot_kind": ["roc_curve"], "stage": ["evaluation"], "text": "auc"}; '
        "keys: plot_kind, library, stage, competition, min_votes, max_votes, run_status, mime, text.",
    )
    description: str = ""
    codebook: str | None = None


def _plot_filter(value: dict | None) -> PlotFilter:
    if not value:
        return PlotFilter()
    if not isinstance(value, dict):
        raise UserError("filter is an object of criteria")
    value = dict(value)
    text = value.pop("text", None)
    pairs = []
    for key, v in value.items():
        for item in v if isinstance(v, list) else [v]:
            pairs.append((key, str(item)))
    try:
        flt = filter_from_params(PlotFilter, pairs) or PlotFilter()
    except FilterParamError as exc:
        raise UserError(str(exc)) from exc
    if text:
        flt = PlotFilter(**{**{f: getattr(flt, f) for f in flt.__dataclass_fields__}, "text": str(text)})
    return flt


@strawberry.type
class StudyQuery:
    @strawberry.field(description="The annotator whose token this request carries (null without one).")
    async def annotator(self, info: Info) -> Annotator | None:
        found = await current_annotator(info)
        return Annotator(id=found["id"], name=found["name"]) if found else None

    @strawberry.field(description="Every codebook, newest first.")
    async def codebooks(self, info: Info) -> list[Codebook]:
        return [Codebook.from_row(r) for r in await _call(info, study.list_codebooks)]

    @strawberry.field(description="One codebook by name.")
    async def codebook(self, info: Info, name: str) -> Codebook | None:
        found = await _call(info, study.get_codebook, name=name)
        return Codebook.from_row(found) if found else None

    @strawberry.field(description="Every sample, newest first.")
    async def samples(self, info: Info) -> list[Sample]:
        return [Sample.from_row(r) for r in await _call(info, study.list_samples)]

    @strawberry.field(description="One sample by name.")
    async def sample(self, info: Info, name: str) -> Sample | None:
        found = await _call(info, study.get_sample, name=name)
        return Sample.from_row(found) if found else None

    @strawberry.field(
        description="Annotations in the order they were made, a page at a time (the CSV export's rows): all of "
        "them, or those on a sample's items, with a codebook, by an annotator."
    )
    async def annotations(
        self,
        info: Info,
        sample: str | None = None,
        codebook: str | None = None,
        annotator: str | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> t.Connection[AnnotationRecord]:
        ctx = info.context
        first = ctx.page_size(first)
        (after_id,) = ctx.cursor(after, "annotation", (int,)) or (None,)

        def load(session):
            filters = {}
            if sample:
                filters["sample_id"] = study.require_sample(session=session, name=sample)["id"]
            if codebook:
                filters["codebook_id"] = study.require_codebook(session=session, name=codebook)["id"]
            if annotator:
                match = [a for a in study.list_annotators(session=session) if a["name"] == annotator]
                if not match:
                    raise study.StudyError(f"no annotator named {annotator!r}")
                filters["annotator_id"] = match[0]["id"]
            return study.annotation_rows(session=session, after=after_id, first=first + 1, **filters)

        rows = await _call(info, load)
        return t.make_connection(
            [AnnotationRecord(**{k: r[k] for k in study.EXPORT_COLUMNS}) for r in rows],
            [ctx.encode_cursor("annotation", r["annotation_id"]) for r in rows], first=first, after=after,
        )


@strawberry.type
class StudyMutation:
    @strawberry.mutation(
        description="Apply a code to a target (image:<sha256>, cell:<id> or notebook:<id>), optionally within a "
        "sample and with a memo. Applying it again keeps one annotation (and updates the memo if given)."
    )
    async def annotate(
        self, info: Info, code_id: int, target: str, sample: str | None = None, memo: str | None = None
    ) -> Annotation:
        who = await require_annotator(info)

        def write(session):
            sample_id = study.require_sample(session=session, name=sample)["id"] if sample else None
            return study.annotate(session=session, annotator_id=who["id"], code_id=code_id,
                                  target=study.Target.parse(target), sample_id=sample_id, memo=memo)

        return Annotation.from_row(await _call(info, write, write=True))

    @strawberry.mutation(description="Remove one of your annotations. False when you have none with this id.")
    async def remove_annotation(self, info: Info, id: int) -> bool:
        who = await require_annotator(info)
        return await _call(info, study.remove_annotation, write=True, annotator_id=who["id"], annotation_id=id)

    @strawberry.mutation(description="Set (or clear, with null) the memo of one of your annotations.")
    async def set_annotation_memo(self, info: Info, id: int, memo: str | None = None) -> Annotation | None:
        who = await require_annotator(info)
        row = await _call(info, study.set_memo, write=True, annotator_id=who["id"], annotation_id=id, memo=memo)
        return Annotation.from_row(row) if row else None

    @strawberry.mutation(description="Create a codebook.")
    async def create_codebook(self, info: Info, name: str, description: str = "") -> Codebook:
        await require_annotator(info)
        return Codebook.from_row(await _call(info, study.create_codebook, write=True, name=name, description=description))

    @strawberry.mutation(
        description="Add a code to a codebook, or change one (give its id). A new code without a key gets a free one."
    )
    async def save_code(
        self, info: Info, codebook: str, name: str, description: str | None = None, key: str | None = None,
        id: int | None = None,
    ) -> Code:
        await require_annotator(info)

        def write(session):
            book = study.require_codebook(session=session, name=codebook)
            return study.save_code(session=session, codebook_id=book["id"], name=name, description=description,
                                   key=key, code_id=id)

        return Code.from_row(await _call(info, write, write=True))

    @strawberry.mutation(description="Draw and record a sample (the same as `nbatlas sample`).")
    async def draw_sample(self, info: Info, input: DrawSampleInput) -> Sample:
        who = await require_annotator(info)
        spec = study.SampleSpec(n=input.n, seed=input.seed, unit=input.unit, stratify_by=input.stratify_by,
                                allocation=input.allocation, filter=_plot_filter(input.filter))

        def write(session):
            codebook_id = study.require_codebook(session=session, name=input.codebook)["id"] if input.codebook else None
            sample, _created = study.draw_sample(session=session, name=input.name, spec=spec,
                                                 description=input.description, codebook_id=codebook_id,
                                                 created_by=who["id"])
            return sample

        return Sample.from_row(await _call(info, write, write=True))


def _merged(name: str, types: tuple[type, ...]) -> type:
    # like strawberry.tools.merge_types, keeping the first type's description
    definition = getattr(types[0], "__strawberry_definition__", None)
    return strawberry.type(type(name, types, {}), description=definition.description if definition else None)


def with_study(query: type, mutation: type | None) -> tuple[type, type]:
    """The private schema's root types with the study's fields added."""
    return _merged("Query", (query, StudyQuery)), _merged("Mutation", (mutation, StudyMutation) if mutation else (StudyMutation,))
