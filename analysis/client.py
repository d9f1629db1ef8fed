"""A small typed client of the nbatlas API, for analysis scripts (and the tests).

    from analysis.client import NbatlasClient

    with NbatlasClient("http://127.0.0.1:8000") as api:
        print(api.query("{ stats { notebooks images } }")["stats"])
        query = '''query($first: Int, $after: String, $filter: CellFilter) {
            cells(first: $first, after: $after, filter: $filter) {
                nodes { id source }
                pageInfo { hasNextPage endCursor }
            }
        }'''
        for cell in api.paginate(query, "cells", {"filter": {"cellType": ["markdown"]}}):
            ...

``paginate`` walks any connection: the query declares ``$first: Int`` and ``$after: String``, passes
them to the connection at ``path`` (dotted, e.g. ``"notebook.cells"``), and selects
``pageInfo { hasNextPage endCursor }`` with ``nodes`` (or ``edges { node }``) there, in pages no larger
than the server takes (``page_cap()``: 100 on a public server, 1000 on a private one by default). A
public server's rate limit (429) is waited out as its ``Retry-After`` asks.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

Json = dict[str, Any]

# the largest `first` a GraphQL Int can carry: a server with no page size limit takes it
NO_LIMIT = 2**31 - 1
# pages of this size when the server does not say its limit (the public default)
FALLBACK_PAGE_CAP = 100
# a `first` the server refuses makes it name its limit ("first must be between 1 and 100 (this
# server's page size limit), not ..."); plotCounts checks it before any SQL runs
_CAP_PROBE = "query($first: Int) { plotCounts(by: [STAGE], first: $first) { count } }"
_CAP_SAID = re.compile(r"first must be between 1 and (\d+)")


class NbatlasError(RuntimeError):
    """The server refused the request (HTTP error) or answered with GraphQL errors."""


class GraphQLErrors(NbatlasError):
    def __init__(self, errors: list[Json], data: Json | None = None) -> None:
        self.errors = errors
        self.data = data
        lines = []
        for e in errors:
            where = ".".join(str(p) for p in e.get("path") or [])
            lines.append(f"{e.get('message', e)}" + (f" (at {where})" if where else ""))
        super().__init__("; ".join(lines))


class NbatlasClient:
    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        token: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base = url.rstrip("/")
        self.base_url = base.removesuffix("/graphql")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.max_retries = max_retries
        self._page_cap: int | None = None
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    # --- GraphQL ---------------------------------------------------------------------------------

    def query(self, query: str, variables: Mapping[str, Any] | None = None) -> Json:
        """Run a query; its ``data``. Raises GraphQLErrors when the server reports any error."""
        body: Json = {"query": query}
        if variables:
            body["variables"] = dict(variables)
        response = self._send("POST", "/graphql", json=body)
        try:
            payload = response.json()
        except ValueError:
            raise NbatlasError(f"the server answered {response.status_code} without JSON: {response.text[:200]}") from None
        if payload.get("errors"):
            raise GraphQLErrors(payload["errors"], payload.get("data"))
        if response.status_code >= 400 or "data" not in payload:
            raise NbatlasError(f"HTTP {response.status_code}: {payload}")
        return payload["data"]

    def page_cap(self) -> int:
        """The largest page (``first``) this server takes, asked once: a server names its limit when
        it refuses a larger one. ``NO_LIMIT`` when it takes any; 100 when it refuses without saying."""
        if self._page_cap is None:
            try:
                self.query(_CAP_PROBE, {"first": NO_LIMIT})
                self._page_cap = NO_LIMIT
            except GraphQLErrors as exc:
                said = _CAP_SAID.search(str(exc))
                self._page_cap = int(said.group(1)) if said else FALLBACK_PAGE_CAP
        return self._page_cap

    def paginate(
        self,
        query: str,
        path: str,
        variables: Mapping[str, Any] | None = None,
        page_size: int = 100,
    ) -> Iterator[Json]:
        """Every node of the connection at ``path``, page after page, following ``endCursor``; pages
        of ``page_size`` nodes, or of the server's limit when that is smaller."""
        page_size = min(page_size, self.page_cap())
        after: str | None = None
        while True:
            data = self.query(query, {**(variables or {}), "first": page_size, "after": after})
            connection: Any = data
            for key in path.split("."):
                if not isinstance(connection, dict) or key not in connection:
                    raise NbatlasError(f"no {key!r} in the answer while following path {path!r}")
                connection = connection[key]
            if connection is None:
                return
            if "nodes" in connection:
                yield from connection["nodes"]
            elif "edges" in connection:
                yield from (edge["node"] for edge in connection["edges"])
            else:
                raise NbatlasError(f"select `nodes` or `edges {{ node }}` on the connection at {path!r}")
            info = connection.get("pageInfo")
            if not info or "hasNextPage" not in info or "endCursor" not in info:
                raise NbatlasError(f"select `pageInfo {{ hasNextPage endCursor }}` on the connection at {path!r}")
            if not info["hasNextPage"]:
                return
            after = info["endCursor"]

    # --- plain routes ----------------------------------------------------------------------------

    def image(self, sha256: str, width: int | None = None) -> bytes:
        """An image's bytes (or a PNG thumbnail ``width`` pixels wide)."""
        params = {"width": width} if width else None
        return self._send("GET", f"/images/{sha256}", params=params).content

    def export(self, table: str, path: str | Path, *, fmt: str | None = None, **filters: Any) -> Path:
        """Download /export/TABLE.FORMAT to ``path`` (format from the extension unless given).
        Filters are the export's query parameters: ``cell_type="code"``, ``notebook__language="python"``
        (``__`` for the dot of a nested filter), lists for several values."""
        path = Path(path)
        fmt = fmt or ("ndjson" if path.suffix in (".ndjson", ".jsonl") else "parquet")
        params: list[tuple[str, str]] = []
        for name, value in filters.items():
            for v in value if isinstance(value, list | tuple) else [value]:
                params.append((name.replace("__", "."), str(v).lower() if isinstance(v, bool) else str(v)))
        tmp = path.with_name(path.name + ".part")
        for attempt in range(self.max_retries + 1):
            with self._http.stream("GET", f"/export/{table}.{fmt}", params=params) as response:
                if response.status_code == 429 and attempt < self.max_retries:
                    time.sleep(_retry_after(response))
                    continue
                if response.status_code >= 400:
                    response.read()
                    raise NbatlasError(f"export {table}.{fmt}: HTTP {response.status_code}: {_error_text(response)}")
                with open(tmp, "wb") as f:
                    for chunk in response.iter_bytes():
                        f.write(chunk)
                break
        tmp.replace(path)
        return path

    def health(self) -> Json:
        return self._send("GET", "/health").json()

    # --- plumbing --------------------------------------------------------------------------------

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(self.max_retries + 1):
            response = self._http.request(method, url, **kwargs)
            if response.status_code == 429 and attempt < self.max_retries:
                time.sleep(_retry_after(response))
                continue
            if response.status_code >= 400 and not _is_graphql_answer(response):
                raise NbatlasError(f"{method} {url}: HTTP {response.status_code}: {_error_text(response)}")
            return response
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NbatlasClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(60.0, max(0.1, float(response.headers.get("retry-after", "1"))))
    except ValueError:
        return 1.0


def _is_graphql_answer(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("application/json") and "errors" in response.text[:20]


def _error_text(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300]
    return str(payload.get("error") or payload.get("detail") or payload)
