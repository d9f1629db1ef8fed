"""ASGI middlewares guarding the server: bearer token (private), rate limit and body size (public).

They are plain ASGI (not Starlette's BaseHTTPMiddleware) so a refused request costs microseconds and
never reaches FastAPI, and a streamed response is never buffered.
"""

from __future__ import annotations

import hmac
import math
import time
from collections import OrderedDict

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPEN_PATHS = ("/health",)


async def send_json(send: Send, status: int, body: dict, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


class BearerToken:
    """Private mode with NBATLAS_API_TOKEN set: every route but /health wants ``Authorization: Bearer``.
    The GraphiQL page itself (a browser GET of /graphql without a query) stays reachable: it is static
    and holds no data, and it lets the owner paste the header in."""

    def __init__(self, app: ASGIApp, *, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._is_ide_page(scope):
            return await self.app(scope, receive, send)
        given = _header(scope, b"authorization") or b""
        if not hmac.compare_digest(given, self.expected):
            return await send_json(
                send, 401, {"error": "this server needs `Authorization: Bearer <NBATLAS_API_TOKEN>`"},
                [(b"www-authenticate", b"Bearer")],
            )
        return await self.app(scope, receive, send)

    @staticmethod
    def _is_ide_page(scope: Scope) -> bool:
        return (
            scope["method"] == "GET"
            and scope["path"] == "/graphql"
            and b"query=" not in scope.get("query_string", b"")
            and b"text/html" in (_header(scope, b"accept") or b"")
        )


def client_address(scope: Scope, *, trust_proxy: bool) -> str:
    """The client's address. Behind a trusted proxy, the one the proxy appended to X-Forwarded-For
    (the rightmost): the entries left of it are whatever the client chose to send."""
    if trust_proxy:
        forwarded = _header(scope, b"x-forwarded-for")
        if forwarded:
            last = forwarded.decode("latin-1").split(",")[-1].strip()
            if last:
                return last
    client = scope.get("client")
    return client[0] if client else "unknown"


class RateLimit:
    """A token bucket per client: ``burst`` requests at once, refilled at ``rate`` per second."""

    def __init__(self, app: ASGIApp, *, rate: float, burst: int, trust_proxy: bool, max_clients: int = 100_000) -> None:
        self.app = app
        self.rate = rate
        self.burst = float(burst)
        self.trust_proxy = trust_proxy
        self.max_clients = max_clients
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)

    def take(self, client: str, now: float | None = None) -> float:
        """Take a token; returns 0 when allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        tokens, at = self.buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self.buckets[client] = (tokens, now)  # most recently seen last
        while len(self.buckets) > self.max_clients:  # forget the longest idle (their buckets are full by now)
            self.buckets.popitem(last=False)
        return wait

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        wait = self.take(client_address(scope, trust_proxy=self.trust_proxy))
        if wait:
            return await send_json(
                send, 429, {"error": f"too many requests: this server allows {self.rate:g} per second per client "
                                     f"(bursts of {self.burst:g}); retry in {wait:.1f} s"},
                [(b"retry-after", str(math.ceil(wait)).encode())],
            )
        return await self.app(scope, receive, send)


class BodySizeLimit:
    """Refuses a request body larger than ``max_bytes`` (413), declared or streamed."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self) -> dict:
        return {"error": f"the request body is larger than this server accepts ({self.max_bytes:,} bytes)"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                return await send_json(send, 400, {"error": "invalid Content-Length"})
            if too_big:
                return await send_json(send, 413, self._error())
            return await self.app(scope, receive, send)
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        # chunked body: read it here, up to the limit, then replay it to the app
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await send_json(send, 413, self._error())
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)
