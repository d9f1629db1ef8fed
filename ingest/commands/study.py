"""The qualitative study: ``nbatlas sample``, ``samples``, ``codebook ...``, ``annotator ...``,
``annotations export`` and ``agreement``. Coding itself happens in the browser (``nbatlas serve``)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

import typer
from rich.markup import escape

from ingest.commands._common import check_output_path, console, fail, open_engine, reason

app = typer.Typer()
codebook_app = typer.Typer(help="Codebooks: named sets of codes (with descriptions and keyboard keys).", no_args_is_help=True)
annotator_app = typer.Typer(help="Annotators: the people who code, each with a personal token.", no_args_is_help=True)
annotations_app = typer.Typer(help="Annotations: the codes annotators applied.", no_args_is_help=True)
app.add_typer(codebook_app, name="codebook")
app.add_typer(annotator_app, name="annotator")
app.add_typer(annotations_app, name="annotations")


class Unit(str, Enum):
    image = "image"
    notebook = "notebook"


class Stratum(str, Enum):
    competition = "competition"
    plot_kind = "plot_kind"
    stage = "stage"


class Allocation(str, Enum):
    proportional = "proportional"
    equal = "equal"


@contextmanager
def _session() -> Iterator:
    from sqlmodel import Session

    engine = open_engine()
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def _json_default(value):
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


@app.command("sample")
def sample_command(
    name: str = typer.Option(..., "--name", help="The sample's name (letters, digits, . _ -)."),
    n: int = typer.Option(..., "--n", "-n", min=1, help="How many images or notebooks to draw."),
    seed: int = typer.Option(..., "--seed", help="The random seed: the same seed on the same corpus draws the same sample."),
    unit: Unit = typer.Option(Unit.image, "--unit", help="Draw plots (images) or notebooks."),
    stratify_by: Stratum | None = typer.Option(
        None, "--stratify-by", help="Draw from each competition, plot kind or stage separately (see --allocation)."
    ),
    allocation: Allocation = typer.Option(
        Allocation.proportional, "--allocation",
        help="With strata: proportional (each stratum's share of the population) or equal (the same number from each).",
    ),
    plot_kind: list[str] = typer.Option([], "--plot-kind", help="Only plots of this kind (repeatable), e.g. roc_curve."),
    library: list[str] = typer.Option([], "--library", help="Only plots drawn by cells using this library (repeatable)."),
    stage: list[str] = typer.Option([], "--stage", help="Only plots drawn at this pipeline stage (repeatable), e.g. evaluation."),
    competition: list[str] = typer.Option([], "--competition", help="Only notebooks of this Kaggle competition (repeatable)."),
    min_votes: int | None = typer.Option(None, "--min-votes", help="Only notebooks with at least this many Kaggle votes."),
    max_votes: int | None = typer.Option(None, "--max-votes", help="Only notebooks with at most this many Kaggle votes."),
    run_status: list[str] = typer.Option([], "--run-status", help="Only notebooks whose latest reproduction ended so: ok, error, timeout..."),
    mime: list[str] = typer.Option([], "--mime", help="Only images of this format (repeatable), e.g. image/png."),
    text: str | None = typer.Option(None, "--text", help='Full text: the drawing cell\'s code or the markdown just before it ("a phrase", -not).'),
    notebook_id: list[int] = typer.Option([], "--notebook-id", help="Only these notebooks (repeatable).", hidden=True),
    codebook: str | None = typer.Option(None, "--codebook", help="The codebook the sample is coded with."),
    description: str = typer.Option("", "--description", help="What the sample is for."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Draw a named, reproducible sample of plots or notebooks: a worklist to code in the browser.

    Units matching the filters are ordered by sha256("SEED:<unit's SHA-256>"), so the same command on the same corpus gives the same sample in any database; with --stratify-by each stratum gives its quota (largest remainders for proportional allocation). The specification and this command line are recorded with the sample. Drawing again with the same name and specification shows the existing sample; another specification under a used name is an error.
    """
    from db.queries.study import SampleSpec
    from db.queries.workbench import PlotFilter
    from ingest.study import StudyError, draw

    def some(values):
        return tuple(values) if values else None

    flt = PlotFilter(
        plot_kind=some(plot_kind), library=some(library), stage=some(stage), competition=some(competition),
        min_votes=min_votes, max_votes=max_votes, run_status=some(run_status), mime=some(mime),
        text=text or None, notebook_id=some(notebook_id),
    )
    spec = SampleSpec(n=n, seed=seed, unit=unit.value, stratify_by=stratify_by.value if stratify_by else None,
                      allocation=allocation.value, filter=flt)
    with _session() as session:
        try:
            report = draw(session=session, name=name, spec=spec, description=description, codebook=codebook)
        except StudyError as exc:
            fail(str(exc))
        session.commit()
    if as_json:
        print(json.dumps(report.as_dict(), indent=2, default=_json_default))
        return
    s = report.sample
    verb = "drew" if report.created else "found (already drawn with this specification)"
    console.print(f"{verb} sample [bold]{s['name']}[/]: {s['n_items']} {s['unit']}s of {s['population']} matching")
    if s["strata"]:
        from rich.table import Table

        table = Table("stratum", "matching", "drawn", title=f"strata ({spec.stratify_by}, {spec.allocation})")
        for stratum, (pop, drawn) in sorted(s["strata"].items(), key=lambda kv: (-kv[1][0], kv[0])):
            table.add_row(escape(str(stratum)), str(pop), str(drawn))
        console.print(table)
    again = s["command"] + (f" --codebook {shlex.quote(s['codebook'])}" if s.get("codebook") else "")
    console.print(f"to draw it again: {escape(again)}", soft_wrap=True)


@app.command("samples")
def samples_command(
    name: str | None = typer.Argument(None, help="Show this sample (its specification, strata, progress); without it, list them."),
    items: bool = typer.Option(False, "--items", help="With NAME: also list its items, in coding order."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON on stdout."),
) -> None:
    """List the samples, or show one with its progress per annotator."""
    from db.queries import study

    with _session() as session:
        if name is None:
            rows = study.list_samples(session=session)
            if as_json:
                print(json.dumps(rows, indent=2, default=_json_default))
                return
            if not rows:
                console.print("no samples yet: draw one with `nbatlas sample --name NAME --n N --seed S`")
            for r in rows:
                console.print(f"[bold]{r['name']}[/]  {r['n_items']} {r['unit']}s of {r['population']}  "
                              f"codebook: {escape(r['codebook'] or '-')}  {r['created_at']:%Y-%m-%d %H:%M}  {escape(r['command'])}")
            return
        try:
            sample = study.require_sample(session=session, name=name)
        except study.StudyError as exc:
            fail(str(exc))
        progress = []
        try:
            book = study.sample_codebook(session=session, sample=sample)
            progress = study.progress(session=session, sample_id=sample["id"], codebook_id=book["id"])
        except study.StudyError:
            book = None
        listed = []
        if items:
            after = None
            while True:
                chunk = study.sample_items(session=session, sample_id=sample["id"], first=1000, after=after)
                listed.extend(chunk[:1000])
                if len(chunk) <= 1000:
                    break
                after = chunk[999]["position"]
    if as_json:
        print(json.dumps({**sample, "progress": progress, "items": listed or None}, indent=2, default=_json_default))
        return
    console.print(f"[bold]{sample['name']}[/]: {sample['n_items']} {sample['unit']}s of {sample['population']} matching; "
                  f"codebook {escape(book['name']) if book else '-'}")
    console.print(f"drawn with: {escape(sample['command'])}", soft_wrap=True)
    for p in progress:
        console.print(f"  {escape(p['annotator'])}: {p['coded']}/{p['total']} coded")
    for item in listed:
        print(f"{item['position'] + 1}\t{item['image_sha256'] or item['notebook_id']}\t{item['stratum'] or ''}")


@codebook_app.command("create")
def codebook_create(
    name: str = typer.Argument(..., help="The codebook's name."),
    description: str = typer.Option("", "--description", help="What the codebook is for."),
) -> None:
    """Create an empty codebook (add codes with `codebook add-code` or `codebook import`)."""
    from db.queries import study

    with _session() as session:
        try:
            study.create_codebook(session=session, name=name, description=description)
        except study.StudyError as exc:
            fail(str(exc))
        session.commit()
    console.print(f"created codebook [bold]{escape(name)}[/]")


@codebook_app.command("import")
def codebook_import(
    file: Path = typer.Argument(..., help="A CSV file with columns name, description, key (a header row), or a JSON list."),
    codebook: str = typer.Option(..., "--codebook", "-c", help="The codebook to add the codes to."),
    create: bool = typer.Option(True, "--create/--no-create", help="Create the codebook when it does not exist."),
    description: str = typer.Option("", "--description", help="The new codebook's description."),
) -> None:
    """Add codes from a file; codes with a name the codebook has already are updated (description, key)."""
    from ingest.study import StudyError, import_codebook

    if not file.is_file():
        fail(f"{file}: no such file")
    with _session() as session:
        try:
            result = import_codebook(session=session, path=file, codebook=codebook, create=create, description=description)
        except StudyError as exc:
            fail(str(exc))
        session.commit()
    made = " (new codebook)" if result["codebook_created"] else ""
    console.print(f"codebook [bold]{escape(result['codebook'])}[/]{made}: {result['codes_created']} codes added, "
                  f"{result['codes_updated']} updated")


@codebook_app.command("add-code")
def codebook_add_code(
    codebook: str = typer.Argument(..., help="The codebook."),
    name: str = typer.Argument(..., help="The code's name; an existing code of that name is updated."),
    description: str | None = typer.Option(None, "--description", help="What the code means: when to apply it."),
    key: str | None = typer.Option(None, "--key", help="Its keyboard key in the coding pages (default: a free one)."),
) -> None:
    """Add a code to a codebook, or change an existing one's description or key."""
    from db.queries import study

    with _session() as session:
        try:
            book = study.require_codebook(session=session, name=codebook)
            existing = {c["name"]: c for c in study.codes_of_codebooks(session=session, ids=[book["id"]])[book["id"]]}
            code = study.save_code(session=session, codebook_id=book["id"], name=name, description=description, key=key,
                                   code_id=existing[name]["id"] if name in existing else None)
        except study.StudyError as exc:
            fail(str(exc))
        session.commit()
    console.print(f"{'updated' if name in existing else 'added'} code [bold]{escape(code['name'])}[/] (key {escape(code['key'] or '-')})")


@codebook_app.command("list")
def codebook_list(
    name: str | None = typer.Argument(None, help="Show this codebook's codes; without it, list the codebooks."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON on stdout."),
) -> None:
    """List the codebooks, or the codes of one."""
    from db.queries import study

    with _session() as session:
        if name is None:
            rows = study.list_codebooks(session=session)
        else:
            try:
                book = study.require_codebook(session=session, name=name)
            except study.StudyError as exc:
                fail(str(exc))
            rows = study.codes_of_codebooks(session=session, ids=[book["id"]])[book["id"]]
    if as_json:
        print(json.dumps(rows, indent=2, default=_json_default))
    elif name is None:
        for r in rows:
            console.print(f"[bold]{escape(r['name'])}[/]  {r['n_codes']} codes, {r['n_annotations']} annotations  {escape(r['description'] or '')}")
    else:
        for r in rows:
            console.print(f"{escape('[' + (r['key'] or ' ') + ']')} [bold]{escape(r['name'])}[/]  {escape(r['description'] or '')}  ({r['n_annotations']} annotations)")


@annotator_app.command("add")
def annotator_add(name: str = typer.Argument(..., help="The annotator's name, as it appears in exports.")) -> None:
    """Register an annotator and print their personal token (shown once; only its hash is kept).

    They paste it into the workbench's login page, or send it as the X-Annotator-Token header to the GraphQL API.
    """
    from db.queries import study

    with _session() as session:
        try:
            _row, token = study.create_annotator(session=session, name=name)
        except study.StudyError as exc:
            fail(str(exc))
        session.commit()
    console.print(f"annotator [bold]{escape(name)}[/] added; their token (shown only now):")
    print(token)


@annotator_app.command("token")
def annotator_token(name: str = typer.Argument(..., help="The annotator.")) -> None:
    """Give an annotator a new token (the old one stops working) and print it."""
    from db.queries import study

    with _session() as session:
        try:
            token = study.rotate_token(session=session, name=name)
        except study.StudyError as exc:
            fail(str(exc))
        session.commit()
    console.print(f"new token for [bold]{escape(name)}[/] (the old one no longer works):")
    print(token)


@annotator_app.command("list")
def annotator_list(as_json: bool = typer.Option(False, "--json", help="Print as JSON on stdout.")) -> None:
    """List the annotators and how many annotations each made."""
    from db.queries import study

    with _session() as session:
        rows = study.list_annotators(session=session)
    if as_json:
        print(json.dumps(rows, indent=2, default=_json_default))
        return
    for r in rows:
        console.print(f"[bold]{escape(r['name'])}[/]  {r['n_annotations']} annotations  since {r['created_at']:%Y-%m-%d}")


@annotations_app.command("export")
def annotations_export(
    output: Path = typer.Option(..., "--output", "-o", help="The CSV file to write ('-' for stdout)."),
    sample: str | None = typer.Option(None, "--sample", help="Only annotations on this sample's items."),
    codebook: str | None = typer.Option(None, "--codebook", help="Only codes of this codebook."),
    annotator: str | None = typer.Option(None, "--annotator", help="Only this annotator's."),
) -> None:
    """Export annotations as CSV: one row per annotation, with the codebook, code, annotator, target
    (image SHA-256, notebook id and SHA-256, cell id and position), memo and times."""
    from ingest.study import StudyError, export_annotations

    check_output_path(output)
    with _session() as session:
        try:
            n = export_annotations(session=session, out=None if str(output) == "-" else output, sample=sample,
                                   codebook=codebook, annotator=annotator)
        except StudyError as exc:
            fail(str(exc))
        except OSError as exc:  # the job removed its .part file
            fail(f"cannot write {output}: {reason(exc)}")
    if str(output) != "-":
        console.print(f"wrote {n:,} annotations to {escape(str(output))}")


@app.command("agreement")
def agreement_command(
    sample: str = typer.Option(..., "--sample", help="The sample."),
    codebook: str | None = typer.Option(None, "--codebook", help="The codebook (default: the sample's)."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON on stdout."),
) -> None:
    """Agreement per code between the annotators of a sample, and their progress.

    An item counts as coded by an annotator once they applied any code of the codebook to it (for a notebook: to it or any of its cells); each code is then applied or not. Cohen's kappa is shown when exactly two annotators coded, Krippendorff's alpha (nominal) always; both over the items coded by at least two annotators.
    """
    from ingest.study import StudyError, agreement_report

    with _session() as session:
        try:
            report = agreement_report(session=session, sample=sample, codebook=codebook)
        except StudyError as exc:
            fail(str(exc))
    if as_json:
        print(json.dumps(report, indent=2, default=_json_default))
        return
    from rich.table import Table

    console.print(f"sample [bold]{escape(report['sample'])}[/] ({report['n_items']} items), codebook [bold]{escape(report['codebook'])}[/]")
    for p in report["progress"]:
        console.print(f"  {escape(p['annotator'])}: {p['coded']}/{p['total']} coded")
    if len(report["annotators"]) < 2:
        console.print("agreement needs at least two annotators who coded items of the sample")
        return

    def fmt(value, pattern="{:.3f}"):
        return "-" if value is None else pattern.format(value)

    table = Table("code", "items", "agreement", "kappa", "alpha", *report["annotators"])
    for c in report["codes"]:
        table.add_row(escape(c["code"]), str(c["units"]), fmt(c["percent_agreement"], "{:.0%}"), fmt(c["kappa"]), fmt(c["alpha"]),
                      *(str(c["applied"][a]) for a in report["annotators"]))
    from rich.console import Console

    Console().print(table)
