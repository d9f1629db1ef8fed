"""GraphQL types. They are not the table classes: each is built from a query row by ``from_row``.

Resolvers are thin: arguments -> a DataLoader (or a ``db.queries`` function) -> these types.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import Enum
from typing import Annotated, Generic, NewType, TypeVar

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.ids import global_id
from db.queries import browse
from db.queries.filters import CellFilter, NotebookFilter, location_shown
from db.queries.search import HIGHLIGHT_START, HIGHLIGHT_STOP

T = TypeVar("T")


@strawberry.interface(description="An object with a global id: fetch it again with `node(id:)`.")
class Node:
    id: strawberry.ID


@strawberry.type(description="Where to go on from a page of a connection.")
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str = strawberry.field(description="Pass as `after` to get the items after this one.")
    node: T


@strawberry.type(description="A page of a list: `nodes` (or `edges` with cursors) and `pageInfo`.")
class Connection(Generic[T]):
    edges: list[Edge[T]]
    nodes: list[T]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]] | None] = None

    @strawberry.field(description="How many items the whole list has (all pages). Costs one COUNT query.")
    async def total_count(self) -> int | None:
        return await self.count() if self.count is not None else None


def make_connection(
    items: list, cursors: list[str], *, first: int, after: object, count: Callable[[], Awaitable[int]] | None = None
) -> Connection:
    """``items`` holds up to ``first + 1`` items: the extra one only says there is a next page."""
    has_next = len(items) > first
    items, cursors = items[:first], cursors[:first]
    return Connection(
        edges=[Edge(cursor=c, node=n) for c, n in zip(cursors, items)],
        nodes=items,
        page_info=PageInfo(
            has_next_page=has_next,
            has_previous_page=after is not None,
            start_cursor=cursors[0] if cursors else None,
            end_cursor=cursors[-1] if cursors else None,
        ),
        count=count,
    )


def _ctx(info: Info):
    return info.context


@strawberry.type(description="One place a notebook was found: a file, an archive member or a Kaggle kernel.")
class Source(Node):
    id: strawberry.ID
    db_id: int = strawberry.field(description="Row id (source.id).")
    kind: str = strawberry.field(description="local | archive | kaggle")
    stored_location: strawberry.Private[str]
    member: str = strawberry.field(description="Path inside the archive; empty when not from an archive.")
    fetched_at: datetime
    stored_metadata: strawberry.Private[dict]
    notebook_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, r) -> Source:
        return cls(
            id=global_id("Source", r.id), db_id=r.id, kind=r.kind, stored_location=r.location, member=r.member,
            fetched_at=r.fetched_at, stored_metadata=r.metadata, notebook_id=r.notebook_id,
        )

    @strawberry.field(description="What the fetch recorded (a Kaggle download: version, spool file); on the public "
                      "server without local paths.")
    async def metadata(self, info: Info) -> JSON:
        from api.kaggle import without_paths  # the rule mining runs follow

        return without_paths(self.stored_metadata) if _ctx(info).db.public else self.stored_metadata

    @strawberry.field(description="Absolute file path, archive path, or Kaggle kernel ref (owner/slug); on the public "
                      "server, only the file name (what follows the last /) of a file or an archive.")
    async def location(self, info: Info) -> str:
        return location_shown(self.kind, self.stored_location, hide_folders=_ctx(info).db.public)

    @strawberry.field
    async def notebook(self, info: Info) -> Notebook:
        return await _ctx(info).loaders.notebook.load(self.notebook_id)

    @strawberry.field(description="Kaggle metadata of this place, for Kaggle kernels and archive members.")
    async def kaggle(self, info: Info) -> Annotated["KaggleKernel", strawberry.lazy("api.kaggle")] | None:
        from api.kaggle import source_kaggle

        return await source_kaggle(info, self.db_id)


@strawberry.type(description="An image an output showed (a plot, usually), stored once however many outputs show it.")
class Image(Node):
    id: strawberry.ID
    sha256: str = strawberry.field(description="SHA-256 of the decoded bytes (of the UTF-8 text for SVG).")
    mime: str
    size_bytes: int
    width: int | None
    height: int | None

    @classmethod
    def from_row(cls, r) -> Image:
        return cls(id=global_id("Image", r.sha256), sha256=r.sha256, mime=r.mime, size_bytes=r.size_bytes,
                   width=r.width, height=r.height)

    @strawberry.field(description="Where to fetch the bytes, relative to the API root: /images/{sha256}.")
    async def url(self) -> str:
        return f"/images/{self.sha256}"

    @strawberry.field(description="A PNG thumbnail this wide (never wider than the image), relative to the API root.")
    async def thumbnail_url(self, width: int = 256) -> str:
        return f"/images/{self.sha256}?width={width}"

    @strawberry.field(description="Outputs that show this image: where the plot was drawn.")
    async def outputs(self, info: Info, first: int = 10) -> list[Output]:
        first = _ctx(info).page_size(first)
        return await _ctx(info).loaders.outputs_of_image.load((self.sha256, first))

    @strawberry.field(description="Every drawing of this image: plot kinds with evidence, the cell that drew it, context.")
    async def plots(self, info: Info, first: int | None = None) -> list[Annotated["Plot", strawberry.lazy("api.understand")]]:
        from api.understand import image_plots

        ctx = _ctx(info)
        return (await image_plots(info, self.sha256))[: ctx.page_size(first, default=ctx.max_page_size)]

    @strawberry.field(description="Its plot kinds, over all its drawings (details and evidence in `plots`).")
    async def plot_kinds(self, info: Info) -> list[str]:
        from api.understand import image_plot_kinds

        return await image_plot_kinds(info, self.sha256)

    @strawberry.field(description="The markdown around the cell that (first) drew it.")
    async def context(self, info: Info) -> Annotated["PlotContext", strawberry.lazy("api.understand")] | None:
        from api.understand import image_context

        return await image_context(info, self.sha256)


@strawberry.type(description="One output of a code cell: a result, a display, a stream or an error.")
class Output(Node):
    id: strawberry.ID
    db_id: int
    position: int = strawberry.field(description="0-based position among the cell's outputs.")
    output_type: str = strawberry.field(description="execute_result | display_data | stream | error")
    mime_types: list[str] = strawberry.field(description="Every mime type of the bundle, images included, in order.")
    data: JSON | None = strawberry.field(description="The mime bundle without its images (see `images`).")
    metadata: JSON | None
    execution_count: int | None
    name: str | None = strawberry.field(description="stream outputs: stdout | stderr")
    text: str | None = strawberry.field(description="stream outputs: the text")
    ename: str | None = strawberry.field(description="error outputs: the exception class")
    evalue: str | None
    traceback: list[str] | None
    cell_id: strawberry.Private[int]
    notebook_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, r) -> Output:
        return cls(
            id=global_id("Output", r.id), db_id=r.id, position=r.position, output_type=r.output_type,
            mime_types=r.mime_types, data=r.data, metadata=r.metadata, execution_count=r.execution_count,
            name=r.name, text=r.text, ename=r.ename, evalue=r.evalue, traceback=r.traceback,
            cell_id=r.cell_id, notebook_id=r.notebook_id,
        )

    @strawberry.field(description="The images of the bundle (PNG, JPEG, GIF, SVG).")
    async def images(self, info: Info) -> list[Image]:
        return await _ctx(info).loaders.images_of_output.load(self.db_id)

    @strawberry.field(description="The figures the output shows, with plot kinds and evidence (one per mime type).")
    async def plots(self, info: Info) -> list[Annotated["Plot", strawberry.lazy("api.understand")]]:
        from api.understand import output_plots

        return await output_plots(info, self.db_id)

    @strawberry.field
    async def cell(self, info: Info) -> Cell:
        return await _ctx(info).loaders.cell.load(self.cell_id)

    @strawberry.field
    async def notebook(self, info: Info) -> Notebook:
        return await _ctx(info).loaders.notebook.load(self.notebook_id)


@strawberry.type(description="One cell of a notebook.")
class Cell(Node):
    id: strawberry.ID
    db_id: int
    position: int = strawberry.field(description="0-based position in the notebook.")
    cell_type: str = strawberry.field(description="code | markdown | raw")
    cell_key: str | None = strawberry.field(description="The nbformat 4.5 cell id, when the notebook has one.")
    source: str
    execution_count: int | None
    metadata: JSON
    attachments: JSON | None
    notebook_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, r) -> Cell:
        return cls(
            id=global_id("Cell", r.id), db_id=r.id, position=r.position, cell_type=r.cell_type,
            cell_key=r.cell_key, source=r.source, execution_count=r.execution_count, metadata=r.metadata,
            attachments=r.attachments, notebook_id=r.notebook_id,
        )

    @strawberry.field(description="The cell's outputs, in order (only code cells have any).")
    async def outputs(self, info: Info) -> list[Output]:
        if self.cell_type != "code":
            return []
        return await _ctx(info).loaders.outputs_of_cell.load(self.db_id)

    @strawberry.field(
        description="What the code analyser found: imports, resolved calls, libraries, stage, plot kinds (null: not analysed)."
    )
    async def analysis(self, info: Info) -> Annotated["CodeAnalysis", strawberry.lazy("api.understand")] | None:
        from api.understand import cell_analysis

        return await cell_analysis(info, self.db_id)

    @strawberry.field(description="Top-level libraries the cell imports or calls (`analysis.libraries`).")
    async def libraries(self, info: Info) -> list[str]:
        from api.understand import cell_analysis

        found = await cell_analysis(info, self.db_id)
        return found.libraries if found is not None else []

    @strawberry.field(description="ML pipeline stage (`analysis.stage`; null: not analysed).")
    async def stage(self, info: Info) -> str | None:
        from api.understand import cell_analysis

        found = await cell_analysis(info, self.db_id)
        return found.stage if found is not None else None

    @strawberry.field(description="Plot kinds of the figures the cell drew (`analysis.plotKinds`).")
    async def plot_kinds(self, info: Info) -> list[str]:
        from api.understand import cell_analysis

        found = await cell_analysis(info, self.db_id)
        return found.plot_kinds if found is not None else []

    @strawberry.field
    async def notebook(self, info: Info) -> Notebook:
        return await _ctx(info).loaders.notebook.load(self.notebook_id)

    @strawberry.field(description="This cell re-executed by reproduction runs, newest first: status, outputs, comparison.")
    async def reproductions(
        self, info: Info, request_id: strawberry.ID | None = None
    ) -> list[Annotated["RunCell", strawberry.lazy("api.reproduce")]]:
        from api.reproduce import reproductions_of_cell

        return await reproductions_of_cell(info, self.db_id, request_id)


@strawberry.type(description="A notebook file, identified by its content: the same file found twice is one notebook.")
class Notebook(Node):
    id: strawberry.ID
    db_id: int = strawberry.field(description="Row id (notebook.id).")
    sha256: str = strawberry.field(description="SHA-256 of the file's bytes.")
    size_bytes: int
    nbformat: int = strawberry.field(description="nbformat after upgrading (always 4).")
    nbformat_minor: int
    original_nbformat: int = strawberry.field(description="The nbformat on disk (3 for old notebooks).")
    kernel_name: str | None
    language: str | None
    metadata: JSON
    n_cells: int
    n_outputs: int
    n_image_outputs: int
    ingested_at: datetime

    @classmethod
    def from_row(cls, r) -> Notebook:
        return cls(
            id=global_id("Notebook", r.id), db_id=r.id, sha256=r.sha256, size_bytes=r.size_bytes,
            nbformat=r.nbformat, nbformat_minor=r.nbformat_minor, original_nbformat=r.original_nbformat,
            kernel_name=r.kernel_name, language=r.language, metadata=r.metadata, n_cells=r.n_cells,
            n_outputs=r.n_outputs, n_image_outputs=r.n_image_outputs, ingested_at=r.ingested_at,
        )

    @strawberry.field(description="Where the notebook was found (provenance).")
    async def sources(self, info: Info) -> list[Source]:
        return await _ctx(info).loaders.sources_of_notebook.load(self.db_id)

    @strawberry.field(description="The notebook's cells in order, a page at a time.")
    async def cells(
        self, info: Info, first: int | None = None, after: str | None = None, cell_type: list[str] | None = None
    ) -> Connection[Cell]:
        ctx = _ctx(info)
        first = ctx.page_size(first, default=ctx.max_page_size)
        (after_position,) = ctx.cursor(after, "position", (int,)) or (None,)
        key = (self.db_id, first, after_position, tuple(cell_type) if cell_type else None)
        cells = await ctx.loaders.cells_of_notebook.load(key)
        return make_connection(cells, [ctx.encode_cursor("position", c.position) for c in cells], first=first,
                               after=after, count=self._cell_count(info, cell_type))

    def _cell_count(self, info: Info, cell_type: list[str] | None) -> Callable[[], Awaitable[int]]:
        """The notebook's cell count (of these types), asked for only when totalCount is: without a
        type it is the notebook's own n_cells, with one an indexed COUNT over its cells."""
        n_cells = self.n_cells

        async def count() -> int:
            if not cell_type:
                return n_cells
            flt = CellFilter(cell_type=tuple(cell_type), notebook=NotebookFilter(ids=(self.db_id,)))
            return await _ctx(info).db.read(browse.count, table="cell", filter=flt)

        return count

    @strawberry.field(description="The images the notebook's outputs show, in notebook order.")
    async def images(self, info: Info, first: int | None = None) -> list[Image]:
        ctx = _ctx(info)
        first = ctx.page_size(first, default=ctx.max_page_size)
        return await ctx.loaders.images_of_notebook.load((self.db_id, first))

    @strawberry.field(description="Download the notebook as .ipynb, relative to the API root.")
    async def ipynb_url(self) -> str:
        return f"/notebooks/{self.sha256}.ipynb"

    @strawberry.field(description="Top-level libraries the notebook imports or calls (null: not analysed).")
    async def libraries(self, info: Info) -> list[str] | None:
        from api.understand import notebook_libraries

        return await notebook_libraries(info, self.db_id)

    @strawberry.field(description="Kaggle metadata, one per Kaggle kernel or archive member it was found as, most voted first.")
    async def kaggle(self, info: Info) -> list[Annotated["KaggleKernel", strawberry.lazy("api.kaggle")]]:
        from api.kaggle import notebook_kaggle

        return await notebook_kaggle(info, self.db_id)

    @strawberry.field(description="Reproduction runs of this notebook (one per run request), newest request first.")
    async def runs(
        self, info: Info, request_id: strawberry.ID | None = None
    ) -> list[Annotated["Run", strawberry.lazy("api.reproduce")]]:
        from api.reproduce import runs_of_notebook

        return await runs_of_notebook(info, self.db_id, request_id)


@strawberry.enum(description="What full-text search looks in.")
class SearchKind(Enum):
    MARKDOWN = "markdown"
    CODE = "code"


@strawberry.type(description="A cell that matches a full-text search.")
class SearchHit:
    cell: Cell
    kind: SearchKind
    rank: float = strawberry.field(description="ts_rank of the cell for the query (higher is better).")
    snippet: str = strawberry.field(
        description="The best passages, HTML-escaped, with the matching words in <mark>...</mark>."
    )

    @classmethod
    def from_row(cls, r) -> SearchHit:
        snippet = html.escape(r.snippet or "", quote=False)
        snippet = snippet.replace(HIGHLIGHT_START, "<mark>").replace(HIGHLIGHT_STOP, "</mark>")
        return cls(cell=Cell.from_row(r), kind=SearchKind(r.kind), rank=r.rank, snippet=snippet)


@strawberry.enum(description="A field to count values of. The description of each says what is counted.")
class FacetField(Enum):
    SOURCE_KIND = strawberry.enum_value("source_kind", description="notebooks by where they were found")
    LANGUAGE = strawberry.enum_value("language", description="notebooks by kernel language")
    KERNEL_NAME = strawberry.enum_value("kernel_name", description="notebooks by kernelspec name")
    NBFORMAT = strawberry.enum_value("nbformat", description="notebooks by nbformat major version on disk")
    CELL_TYPE = strawberry.enum_value("cell_type", description="cells by type")
    OUTPUT_TYPE = strawberry.enum_value("output_type", description="outputs by type")
    MIME_TYPE = strawberry.enum_value("mime_type", description="outputs by each mime type in their bundle")
    IMAGE_MIME = strawberry.enum_value("image_mime", description="distinct images by format")
    LIBRARY = strawberry.enum_value("library", description="notebooks by each top-level library they import or call")
    PLOT_KIND = strawberry.enum_value("plot_kind", description="figures (outputs showing a plot) by each plot kind")
    STAGE = strawberry.enum_value("stage", description="code cells by ML pipeline stage")
    COMPETITION = strawberry.enum_value("competition", description="notebooks by each Kaggle competition whose data they use")
    AUTHOR = strawberry.enum_value("author", description="notebooks by Kaggle author")
    VOTES = strawberry.enum_value("votes", description="notebooks by Kaggle votes: 0, 1-9, 10-99, 100-999, 1000+")
    KAGGLE_ORIGIN = strawberry.enum_value("kaggle_origin", description="notebooks by how their Kaggle metadata came: api, meta-kaggle-code, kgtorrent")
    RUN_STATUS = strawberry.enum_value("run_status", description="notebooks by how their latest reproduction run ended")
    FAILURE_CLASS = strawberry.enum_value(
        "failure_class", description="notebooks by why their latest reproduction run failed (null: it did not)"
    )


@strawberry.type(description="One value of a facet and how many things have it.")
class FacetValue:
    value: str | None = strawberry.field(description="The value; null when unknown.")
    count: int


Long = NewType("Long", int)
LONG_SCALAR = strawberry.scalar(
    name="Long", description="An integer that may exceed 32 bits (byte counts).", serialize=int, parse_value=int
)
SCALARS = {Long: LONG_SCALAR}  # for StrawberryConfig.scalar_map


@strawberry.type(description="Counts of everything in the corpus (what `nbatlas stats` prints).")
class Stats:
    notebooks: int = strawberry.field(description="Distinct notebook files (by SHA-256 of their bytes).")
    sources: int = strawberry.field(description="Places notebooks were found (one file found twice: two).")
    cells: int
    outputs: int
    image_outputs: int = strawberry.field(description="Outputs that show at least one image.")
    images: int = strawberry.field(description="Distinct images.")
    problems: int = strawberry.field(description="Files that could not be ingested.")
    warnings: int = strawberry.field(description="Caveats recorded on ingested notebooks.")
    notebooks_with_warnings: int
    upgraded_to_v4: int = strawberry.field(description="Notebooks stored as nbformat 3 on disk.")
    runs: int = strawberry.field(description="Ingest runs.")
    notebook_bytes: Long
    image_bytes: Long


@strawberry.type
class DeleteNotebooksPayload:
    deleted: list[strawberry.ID] = strawberry.field(description="Ids of the notebooks removed.")
