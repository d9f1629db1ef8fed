"""ASGI middlewares guarding the server: bearer token (private), rate limit and body size (public).

They are plain ASGI (not Starlette's BaseHTTPMiddleware) so a refused request costs microseconds and
never reaches FastAPI, and a streamed response is never buffered.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import math
import time
from collections import OrderedDict
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.workbench.auth import REQUESTED_WITH, is_same_origin

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


LOGIN_PATH = "/auth/token"
COOKIE = "nbatlas_api"
COOKIE_MAX_AGE = 30 * 24 * 3600

_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nbatlas: API token</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px system-ui,sans-serif;max-width:28em;margin:4em auto;padding:0 1em}}
input{{font:inherit;padding:.3em;width:100%;box-sizing:border-box;margin:.5em 0}}.error{{color:#a00}}</style>
</head><body><h1>This server needs its API token</h1>
<p>It was started with <code>NBATLAS_API_TOKEN</code> set. Enter that token to use the workbench in this
browser (it is kept in an HttpOnly cookie). Scripts send <code>Authorization: Bearer &lt;token&gt;</code>.</p>
{error}<form method="post" action="{action}"><input type="hidden" name="next" value="{next}">
<label>API token <input type="password" name="token" autocomplete="current-password" autofocus required></label>
<input type="submit" value="Continue"></form></body></html>
"""


def _local_path(value: str | None) -> str:
    """A path on this site to go back to: anything else (another site, //host) becomes /."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


class BearerToken:
    """Private mode with NBATLAS_API_TOKEN set: every route but /health wants the token.

    Scripts send ``Authorization: Bearer <token>``. A browser cannot, so it logs in once: the form at
    /auth/token (shown in place of any page it may not see), or a link with ``?token=<token>``, sets
    an HttpOnly cookie holding an HMAC of the token (never the token itself) and goes on to the page.
    A write (anything but GET/HEAD) authenticated by that cookie must also prove it comes from this
    site's own pages (the workbench script's X-Requested-With header, or a same-origin Origin), so
    another site cannot use the cookie behind the owner's back. The GraphiQL page itself (a browser
    GET of /graphql without a query) stays reachable: it is static and holds no data."""

    def __init__(self, app: ASGIApp, *, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.token = token.encode()
        self.cookie = hmac.new(self.token, b"nbatlas api cookie", hashlib.sha256).hexdigest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._is_ide_page(scope):
            return await self.app(scope, receive, send)
        if scope["path"] == LOGIN_PATH:
            return await self._login(scope, receive, send)
        given = _header(scope, b"authorization")
        if given is not None:
            if hmac.compare_digest(given, self.expected):
                return await self.app(scope, receive, send)
            return await self._refuse(scope, send)
        request = HTTPConnection(scope)
        link_token = request.query_params.get("token") if scope["method"] in ("GET", "HEAD") else None
        if link_token is not None:  # ?token=: set the cookie, then the same page without the token
            if not hmac.compare_digest(link_token.encode(), self.token):
                return await self._refuse(scope, send, error="wrong token")
            rest = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
            return await self._enter(scope, send, scope["path"] + (f"?{rest}" if rest else ""))
        cookie = request.cookies.get(COOKIE)
        if cookie is not None and hmac.compare_digest(cookie.encode(), self.cookie.encode()):
            safe = scope["method"] in ("GET", "HEAD", "OPTIONS")
            if safe or request.headers.get("x-requested-with") == REQUESTED_WITH or is_same_origin(request):
                return await self.app(scope, receive, send)
        return await self._refuse(scope, send)

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if scope["method"] != "POST":
            return await self._form(send, 200, next_=_local_path(request.query_params.get("next")))
        form = await request.form()
        next_ = _local_path(str(form.get("next") or "/"))
        if not is_same_origin(request):
            return await self._form(send, 403, next_=next_, error="log in from this site's own form")
        given = str(form.get("token") or "").strip().encode()
        if not given or not hmac.compare_digest(given, self.token):
            return await self._form(send, 401, next_=next_, error="wrong token")
        return await self._enter(scope, send, next_)

    async def _enter(self, scope: Scope, send: Send, location: str) -> None:
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = f"{COOKIE}={self.cookie}; Path=/; Max-Age={COOKIE_MAX_AGE}; HttpOnly; SameSite=Lax{secure}"
        await send({"type": "http.response.start", "status": 303, "headers": [
            (b"location", location.encode("latin-1", "replace")), (b"set-cookie", cookie.encode()),
            (b"cache-control", b"no-store"), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def _refuse(self, scope: Scope, send: Send, error: str = "") -> None:
        accept = _header(scope, b"accept") or b""
        if scope["method"] == "GET" and b"text/html" in accept:  # a browser: the way in, not JSON
            query = scope.get("query_string", b"").decode("latin-1")
            rest = urlencode([(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "token"])
            return await self._form(send, 401, next_=_local_path(scope["path"] + (f"?{rest}" if rest else "")),
                                    error=error)
        return await send_json(
            send, 401, {"error": "this server needs `Authorization: Bearer <NBATLAS_API_TOKEN>`"
                        + (f" ({error})" if error else "")},
            [(b"www-authenticate", b"Bearer")],
        )

    @staticmethod
    async def _form(send: Send, status: int, *, next_: str, error: str = "") -> None:
        body = _LOGIN_PAGE.format(
            action=LOGIN_PATH, next=html.escape(next_, quote=True),
            error=f'<p class="error">{html.escape(error)}</p>' if error else "",
        ).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"), (b"www-authenticate", b"Bearer"),
            (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
            (b"x-frame-options", b"DENY")]})
        await send({"type": "http.response.body", "body": body})

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


class TokenBucket:
    """Per client: ``burst`` requests at once, refilled at ``rate`` per second."""

    def __init__(self, *, rate: float, burst: int, max_clients: int = 100_000) -> None:
        self.rate = rate
        self.burst = float(burst)
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


# image bytes, thumbnails and the workbench's CSS/JS: cheap, cached, and a gallery page asks for
# dozens at once, so they draw on a budget of their own instead of the GraphQL one
ASSET_PATHS = ("/images/", "/static/")


class RateLimit:
    """A token bucket per client for queries and pages, and a larger one for images and static files.

    The buckets live in this process: behind several server processes (uvicorn --workers N) each
    keeps its own, so a client gets up to N times the rate; put the limit in the proxy in front
    when that matters."""

    def __init__(
        self, app: ASGIApp, *, rate: float, burst: int, trust_proxy: bool, image_rate: float | None = None,
        image_burst: int | None = None, max_clients: int = 100_000,
    ) -> None:
        self.app = app
        self.trust_proxy = trust_proxy
        self.queries = TokenBucket(rate=rate, burst=burst, max_clients=max_clients)
        self.assets = TokenBucket(
            rate=image_rate if image_rate is not None else rate,
            burst=image_burst if image_burst is not None else burst,
            max_clients=max_clients,
        )

    def take(self, client: str, now: float | None = None) -> float:
        return self.queries.take(client, now)

    @property
    def buckets(self) -> OrderedDict[str, tuple[float, float]]:
        return self.queries.buckets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        bucket = self.assets if scope["path"].startswith(ASSET_PATHS) else self.queries
        wait = bucket.take(client_address(scope, trust_proxy=self.trust_proxy))
        if wait:
            what = "image and static file requests" if bucket is self.assets else "requests"
            # Retry-After takes whole seconds: the message says the same number, so a person reading
            # "retry in 0.0 s" does not retry at once and get refused again
            seconds = max(1, math.ceil(wait))
            return await send_json(
                send, 429, {"error": f"too many {what}: this server allows {bucket.rate:g} per second per client "
                                     f"(bursts of {bucket.burst:g}); retry in {seconds} s"},
                [(b"retry-after", str(seconds).encode())],
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
