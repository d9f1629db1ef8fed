"""Who is coding: an annotator's personal token, from a header (scripts) or a cookie (the browser).

* Scripts send ``X-Annotator-Token: <token>``.
* The browser logs in once (POST /login with the token); the token then lives in an HttpOnly,
  SameSite=Strict cookie. A write authenticated by that cookie is accepted only when the request
  proves it comes from this site's own pages: the workbench script's ``X-Requested-With`` header
  (a cross-site page cannot send a custom header without a CORS preflight, which this server never
  grants), or for a form post, an Origin (or Sec-Fetch-Site) naming this site.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

COOKIE = "nbatlas_annotator"
HEADER = "x-annotator-token"
REQUESTED_WITH = "nbatlas-workbench"


def header_token(request: HTTPConnection) -> str | None:
    token = request.headers.get(HEADER)
    return token.strip() if token and token.strip() else None


def cookie_token(request: HTTPConnection) -> str | None:
    token = request.cookies.get(COOKIE)
    return token.strip() if token and token.strip() else None


def is_same_origin(request: HTTPConnection) -> bool:
    """A browser request sent by this site's own page (not a cross-site form or fetch)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin:
        if origin == "null":
            return False
        host = request.headers.get("host", "")
        return urlsplit(origin).netloc.lower() == host.lower()
    return site is not None  # no Origin: only a browser's own navigation ("none"/"same-origin") passes


def token_for_write(request: HTTPConnection) -> str | None:
    """The token a write may act with: the header's, or the cookie's when the request is the
    workbench's own (script header, or same-origin form post)."""
    token = header_token(request)
    if token:
        return token
    if request.headers.get("x-requested-with") == REQUESTED_WITH or is_same_origin(request):
        return cookie_token(request)
    return None
