"""The GraphQL schema: root fields, the private-only Mutation, and the public mode's limits.

``build_schema(public=True)`` has no Mutation type at all, so no write is even expressible, and runs
every request through depth, alias, token and size limits with errors masked. The SDL is committed as
``api/schema.graphql`` (``api/schema.public.graphql`` for public mode); after changing a type run

    python -m api.schema --write      (or: nbatlas serve --print-schema > api/schema.graphql)

and tests/test_api_schema.py fails while the committed files are stale.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.query_depth_limiter import IgnoreContext
from strawberry.schema.config import StrawberryConfig
from strawberry.types import Info

from api import types as t
from api.database import UserError
from api.execution import FastExecutionContext
from api.limits import ResultSizeLimiter
from api.ids import db_id, parse_global_id
from api.inputs import CellFilterInput, ImageFilterInput, NotebookFilterInput, OutputFilterInput
from api.kaggle import KaggleQuery
from api.reproduce import ReproduceQuery
from api.similarity import SimilarityQuery
from api.understand import UnderstandQuery
from db.queries import browse, curate, facets, search
from db.settings import Settings

SCHEMA_FILE = Path(__file__).with_name("schema.graphql")
PUBLIC_SCHEMA_FILE = Path(__file__).with_name("schema.public.graphql")


def _filter(value):
    return value.to_filter() if value is not None else None


def _count(info: Info, table: str, filter):
    db = info.context.db

    async def count() -> int:
        return await db.read(browse.count, table=table, filter=filter)

    return count


@strawberry.type
class Query(ReproduceQuery, UnderstandQuery, KaggleQuery, SimilarityQuery):
    @strawberry.field(description="Any object by its global id.")
    async def node(self, info: Info, id: strawberry.ID) -> t.Node | None:
        type_name, key = parse_global_id(id)
        loaders = info.context.loaders
        if type_name == "Image":
            return await loaders.image.load(key.lower())
        if type_name in ("Run", "RunRequest"):
            from api.reproduce import loaders as run_loaders

            found = run_loaders(info)
            return await (found.run if type_name == "Run" else found.request).load(db_id(id, type_name))
        loader = {"Notebook": loaders.notebook, "Cell": loaders.cell, "Output": loaders.output, "Source": loaders.source}
        return await loader[type_name].load(db_id(id, type_name))

    @strawberry.field(description="One notebook, by its id or by the SHA-256 of its file.")
    async def notebook(self, info: Info, id: strawberry.ID | None = None, sha256: str | None = None) -> t.Notebook | None:
        if (id is None) == (sha256 is None):
            raise UserError("give exactly one of id or sha256")
        if sha256 is not None:
            found = await info.context.db.read(browse.notebook_ids_by_sha256, ids=[sha256])
            if not found:
                return None
            return await info.context.loaders.notebook.load(next(iter(found.values())))
        return await info.context.loaders.notebook.load(db_id(id, "Notebook"))

    @strawberry.field(description="One image, by the SHA-256 of its bytes.")
    async def image(self, info: Info, sha256: str) -> t.Image | None:
        return await info.context.loaders.image.load(sha256.lower())

    @strawberry.field(description="Notebooks in ingest order, a page at a time.")
    async def notebooks(
        self, info: Info, first: int | None = None, after: str | None = None, filter: NotebookFilterInput | None = None
    ) -> t.Connection[t.Notebook]:
        ctx = info.context
        first = ctx.page_size(first)
        (after_id,) = ctx.cursor(after, "notebook", (int,)) or (None,)
        flt = _filter(filter)
        rows = await ctx.db.read(browse.notebook_page, filter=flt, first=first, after=after_id)
        return t.make_connection(
            [t.Notebook.from_row(r) for r in rows], [ctx.encode_cursor("notebook", r.id) for r in rows],
            first=first, after=after, count=_count(info, "notebook", flt),
        )

    @strawberry.field(description="Cells of all notebooks, a page at a time.")
    async def cells(
        self, info: Info, first: int | None = None, after: str | None = None, filter: CellFilterInput | None = None
    ) -> t.Connection[t.Cell]:
        ctx = info.context
        first = ctx.page_size(first)
        (after_id,) = ctx.cursor(after, "cell", (int,)) or (None,)
        flt = _filter(filter)
        rows = await ctx.db.read(browse.cell_page, filter=flt, first=first, after=after_id)
        return t.make_connection(
            [t.Cell.from_row(r) for r in rows], [ctx.encode_cursor("cell", r.id) for r in rows],
            first=first, after=after, count=_count(info, "cell", flt),
        )

    @strawberry.field(description="Outputs of all cells, a page at a time.")
    async def outputs(
        self, info: Info, first: int | None = None, after: str | None = None, filter: OutputFilterInput | None = None
    ) -> t.Connection[t.Output]:
        ctx = info.context
        first = ctx.page_size(first)
        (after_id,) = ctx.cursor(after, "output", (int,)) or (None,)
        flt = _filter(filter)
        rows = await ctx.db.read(browse.output_page, filter=flt, first=first, after=after_id)
        return t.make_connection(
            [t.Output.from_row(r) for r in rows], [ctx.encode_cursor("output", r.id) for r in rows],
            first=first, after=after, count=_count(info, "output", flt),
        )

    @strawberry.field(description="Distinct images, a page at a time (in SHA-256 order).")
    async def images(
        self, info: Info, first: int | None = None, after: str | None = None, filter: ImageFilterInput | None = None
    ) -> t.Connection[t.Image]:
        ctx = info.context
        first = ctx.page_size(first)
        (after_sha,) = ctx.cursor(after, "image", (str,)) or (None,)
        flt = _filter(filter)
        rows = await ctx.db.read(browse.image_page, filter=flt, first=first, after=after_sha)
        return t.make_connection(
            [t.Image.from_row(r) for r in rows], [ctx.encode_cursor("image", r.sha256) for r in rows],
            first=first, after=after, count=_count(info, "image", flt),
        )

    @strawberry.field(
        description=(
            "Full-text search over markdown (English stemming) and code cells, best first. The query is "
            'written as in a web search engine: words, "a phrase", -excluded, or.'
        )
    )
    async def search(
        self,
        info: Info,
        query: str,
        kinds: list[t.SearchKind] | None = None,
        filter: NotebookFilterInput | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> t.Connection[t.SearchHit]:
        ctx = info.context
        first = ctx.page_size(first)
        cursor = ctx.cursor(after, "hit", (float, int))
        searched = {"query": query, "kinds": [k.value for k in kinds] if kinds else search.KINDS, "notebook": _filter(filter)}
        rows = await ctx.db.read(search.search_cells, first=first, after=cursor, **searched)

        async def count() -> int:
            return await ctx.db.read(search.search_count, **searched)

        return t.make_connection(
            [t.SearchHit.from_row(r) for r in rows], [ctx.encode_cursor("hit", r.rank, r.id) for r in rows],
            first=first, after=after, count=count,
        )

    @strawberry.field(description="How the matching notebooks spread over one field: value/count pairs, most frequent first.")
    async def facets(
        self, info: Info, field: t.FacetField, filter: NotebookFilterInput | None = None, first: int | None = None
    ) -> list[t.FacetValue]:
        first = info.context.page_size(first, default=info.context.max_page_size)
        # strawberry hands enum_value() members over as their values
        name = field.value if isinstance(field, t.FacetField) else field
        pairs = await info.context.db.read(facets.facet_counts, field=name, filter=_filter(filter), first=first)
        return [t.FacetValue(value=v, count=n) for v, n in pairs]

    @strawberry.field(description="Counts of everything in the corpus.")
    async def stats(self, info: Info) -> t.Stats:
        from db.queries.stats import corpus_stats

        counts = await info.context.db.read(corpus_stats)
        return t.Stats(**{f.name: counts[f.name] for f in dataclasses.fields(t.Stats)})


@strawberry.type(description="Changes to the corpus. Only the private (owner's) server has them.")
class Mutation:
    @strawberry.mutation(
        description="Remove notebooks with their cells, outputs and sources (and images nothing else shows)."
    )
    async def delete_notebooks(self, info: Info, ids: list[strawberry.ID]) -> t.DeleteNotebooksPayload:
        deleted = await info.context.db.write(curate.delete_notebooks, ids=[db_id(i, "Notebook") for i in ids])
        return t.DeleteNotebooksPayload(deleted=[t.global_id("Notebook", i) for i in deleted])


class QuerySizeLimiter(SchemaExtension):
    """Refuses a GraphQL document longer than ``max_bytes`` before it is parsed."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def on_parse(self) -> Iterator[None]:
        query = self.execution_context.query or ""
        size = len(query.encode("utf-8"))
        if size > self.max_bytes:
            raise UserError(f"the query is {size:,} bytes; this server accepts at most {self.max_bytes:,}")
        yield


def _is_for_the_client(error: GraphQLError) -> bool:
    """Parse and validation errors (depth, aliases, unknown fields...) and UserErrors are clear and
    safe to show; anything else (SQL, paths, tracebacks) is masked."""
    original = error.original_error
    return original is None or isinstance(original, UserError | GraphQLError)


def _ignore_type_nesting(ignore: IgnoreContext) -> bool:
    # introspection's `ofType` chains (List of NonNull of ...) are deep but never fan out, and
    # GraphiQL's own introspection query needs them
    return ignore.field_name == "ofType"


class PublicErrors(MaskErrors):
    """MaskErrors, plus plain words for graphql-core's terse "Validation aborted." (a query with so
    many same-named fields that checking they can be merged would cost too much)."""

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        out = []
        for error in super()._process_errors(errors):
            if error.message == "Validation aborted.":
                error = GraphQLError(
                    "the query is too complex to validate (too many fields of the same name): split it",
                    nodes=error.nodes,
                )
            out.append(error)
        return out


# graphql-core bounds the (quadratic) check that same-named fields can be merged by a budget of
# comparisons; the default lets one crafted query cost ~0.3 s of CPU, this ~30 ms, and no real query
# comes near it
PUBLIC_VALIDATION_BUDGET = 50_000


def public_extensions(settings: Settings) -> list:
    from graphql.validation.rules import overlapping_fields_can_be_merged

    overlapping_fields_can_be_merged.MAX_COMPLEXITY_BUDGET = PUBLIC_VALIDATION_BUDGET
    # factories, not instances: an extension keeps per-request state, and requests run concurrently
    return [
        lambda: QuerySizeLimiter(settings.max_query_bytes),
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        lambda: QueryDepthLimiter(max_depth=settings.max_query_depth, should_ignore=_ignore_type_nesting),
        lambda: MaxAliasesLimiter(max_alias_count=settings.max_aliases),
        lambda: ResultSizeLimiter(max_nodes=settings.max_result_nodes, page_size=settings.max_page_size),
        lambda: PublicErrors(
            should_mask_error=lambda e: not _is_for_the_client(e),
            error_message="internal error (details are in the server's log)",
        ),
    ]


def private_extensions() -> list:
    # an analysis script sends the same few documents over and over (paging through a connection
    # changes only the variables): parse and validate each once
    return [lambda: ParserCache(maxsize=256), lambda: ValidationCache(maxsize=256)]


class _Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context=None) -> None:
        # the client's own mistakes are answered, not logged: a public server would otherwise echo
        # every oversized or malformed query into its log
        internal = [e for e in errors if not _is_for_the_client(e)]
        if internal:
            super().process_errors(internal, execution_context)


def build_schema(*, public: bool, settings: Settings | None = None) -> strawberry.Schema:
    settings = settings or Settings()
    query, mutation = Query, None if public else Mutation
    if not public:  # the study (samples, codebooks, coding) exists only on the private server
        from api.workbench.graphql import with_study

        query, mutation = with_study(query, mutation)
    return _Schema(
        query=query,
        mutation=mutation,
        types=[t.Notebook, t.Cell, t.Output, t.Image, t.Source],
        extensions=public_extensions(settings) if public else private_extensions(),
        config=StrawberryConfig(scalar_map=t.SCALARS),
        execution_context_class=FastExecutionContext,
    )


def sdl(*, public: bool) -> str:
    return build_schema(public=public).as_str() + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--write" in argv:
        SCHEMA_FILE.write_text(sdl(public=False))
        PUBLIC_SCHEMA_FILE.write_text(sdl(public=True))
        print(f"wrote {SCHEMA_FILE} and {PUBLIC_SCHEMA_FILE}")
    else:
        sys.stdout.write(sdl(public="--public" in argv))


if __name__ == "__main__":
    main()
