"""Security for every route: response headers, Host allow-list, access control, same-origin POST.

One pure ASGI middleware, outside the routes (and outside the error pages), so it also
covers /static, /openapi.json and the JSON twins. In order, for each request:

1. Host allow-list (DNS rebinding): a page on another site whose name was made to resolve
   to 127.0.0.1 reaches webug with that site's name in `Host`: 400. Allowed: localhost,
   127.0.0.1, [::1] and WEBUG_ALLOWED_HOSTS.
2. Oversized request lines: path over 2 KiB or query over 8 KiB (/search: 49 KiB, a
   pasted text of 16 KiB percent-encoded): 414.
3. Access control, when configured (WEBUG_AUTH_TOKEN, WEBUG_BASIC_AUTH,
   WEBUG_TRUSTED_USER_HEADER; any one that matches lets the request in): otherwise 401.
4. State-changing methods (anything but GET/HEAD/OPTIONS) from another origin: 403.

/healthz skips 1-3 (probes know neither the name nor the credentials; it tells only
"ok" or "BMDB unreachable"); /metrics skips 1 (Prometheus scrapes by address) but not
the access control.

Every response, refusals and 500s included, carries the security headers: a
Content-Security-Policy without inline script or eval (the same strict one on every
path), nosniff, a referrer policy and no framing. Every one but /static's also has
`Cache-Control: no-store` and `Vary: Accept, HX-Request`: one URL answers HTML, JSON and
htmx fragments of BMDB data. A page's crash is app/http/errors.py's error page, inside this
middleware; a crash in a middleware is `last_resort_error`, which Starlette answers from
outside every middleware, so it sets the headers itself.

Refusals are small standalone pages: they never show the BMDB address or schema to a
client that has not been let in.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import secrets
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.render import urls
from app.render.templating import wants_json

log = logging.getLogger(__name__)

# Every response: scripts only from /static (no inline script, no eval: webug.js hands htmx
# precompiled trigger filters), styles only from /static, no framing, no plugins.
PAGE_CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "manifest-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
])  # fmt: skip

# Every answer but /static is BMDB data of the moment (or about it), and the HTML page, its
# JSON twin and its htmx fragment share one URL. `no-store` rather than `no-cache,
# private`: browsers reuse a stored answer on Back/Forward without revalidating, which is
# how an htmx fragment comes back as the whole page, and nothing of the BMDB stays on
# disk. The hx-ptag 304s are unaffected: htmx sends HX-PTag from its own memory, not
# from the HTTP cache. Vary, for any cache that stores anyway.
NO_STORE = {"cache-control": "no-store"}
VARY = "Accept, HX-Request"
STATIC_PREFIX = urls.STATIC + "/"  # app files: they keep StaticFiles' ETag and Last-Modified

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}

# Loopback only. No single-label name (Starlette's test client sends `testserver`): LLMNR,
# mDNS or a DNS search domain can make one resolve to a machine of someone else's.
DEFAULT_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
OPEN_PATHS = frozenset({urls.HEALTH})  # no Host check, no credentials
# Scraped by address (Host: 10.1.2.3:8000), with credentials when access control is on.
ANY_HOST_PATHS = OPEN_PATHS | {urls.METRICS}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_PATH_BYTES = 2048
MAX_QUERY_BYTES = 8192
# /search?q= takes a pasted alert or log excerpt of up to 16 KiB (app/model/search.py's
# MAX_QUERY); percent-encoding makes each byte at most three. Only there: every other
# query string stays short. (Behind a proxy that caps request lines, POST /search.)
QUERY_BYTES_BY_PATH = {urls.SEARCH: 3 * 16 * 1024 + 1024}


# ------------------------------------------------------------------ cross origin


def _origin(url: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of a URL, default ports made explicit; None if unparseable."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def cross_origin_reason(request: Request) -> str | None:
    """Why a state-changing request must be refused as cross-site, or None to allow it.

    With an Origin header, it must be this server's own scheme, host and port. Without
    one (curl, old browsers), Sec-Fetch-Site must be absent or "same-origin", and a
    Referer, if sent, must be of this server too. Browsers send Origin on every POST, so
    a page elsewhere cannot make a visitor's browser change anything here.
    """
    own = f"{request.url.scheme}://{request.url.netloc}"
    origin = request.headers.get("origin")
    if origin is not None:
        if _origin(origin) is not None and _origin(origin) == _origin(own):
            return None
        return f"the request came from {origin[:200]!r}, not from this site ({own})"
    site = request.headers.get("sec-fetch-site")
    if site not in (None, "same-origin"):
        return f"the browser says the request is {site[:50]!r}, not same-origin"
    referer = request.headers.get("referer")
    if referer is not None and _origin(referer) != _origin(own):
        return f"the request was sent from {referer[:200]!r}, not from this site ({own})"
    return None


# ------------------------------------------------------------------------- hosts


def host_name(host_header: str) -> str:
    """The name part of a Host header, lower-case: `[::1]:8000` -> `[::1]`, `a.b.:80` -> `a.b`."""
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.rstrip(".")


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """The accepted host names; None when any is (WEBUG_ALLOWED_HOSTS=*)."""
    extra = {h.strip().lower() for h in settings.allowed_hosts.split(",") if h.strip()}
    if "*" in extra:
        return None
    return DEFAULT_HOSTS | {host_name(h) for h in extra}


# ---------------------------------------------------------------- authentication


def _equal(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode(), b.encode())


class Authenticator:
    """Who may come in: bearer token, basic auth, trusted proxy header; None = everyone."""

    def __init__(self, settings: Settings) -> None:
        self.token = settings.auth_token.get_secret_value() if settings.auth_token else None
        self.basic: tuple[str, str] | None = None
        if settings.basic_auth is not None:
            user, _, password = settings.basic_auth.get_secret_value().partition(":")
            self.basic = (user, password)
        self.user_header = settings.trusted_user_header

    @property
    def enabled(self) -> bool:
        return bool(self.token or self.basic or self.user_header)

    @property
    def challenge(self) -> str | None:
        """WWW-Authenticate: Basic whenever a browser can log in with a password."""
        if self.token or self.basic:
            return 'Basic realm="webug", charset="UTF-8"'
        return None

    def user(self, headers: Headers) -> str | None:
        """The authenticated user's name ("token" for the bearer token), or None."""
        if self.user_header:
            name = headers.get(self.user_header, "").strip()
            if name:
                return name[:200]
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        scheme, credentials = scheme.lower(), credentials.strip()
        if scheme == "bearer" and self.token and _equal(credentials, self.token):
            return "token"
        if scheme == "basic" and (self.basic or self.token):
            try:
                decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
            except ValueError:  # not ASCII, not base64 (binascii.Error), not UTF-8
                return None
            user, sep, password = decoded.partition(":")
            if not sep:
                return None
            if self.basic and _equal(user, self.basic[0]) & _equal(password, self.basic[1]):
                return user
            # A browser can use the token too: any user name, the token as password.
            if self.token and _equal(password, self.token):
                return user or "token"
        return None


# ---------------------------------------------------------------------- refusals


def _standalone_page(scope: Scope, status: int, title: str, detail: str) -> tuple[bytes, str]:
    """A minimal page (or JSON) that shows nothing of the BMDB: (body, content type)."""
    request = Request(scope)
    if wants_json(request.headers, request.query_params.get("format")):
        body = json.dumps({"status": status, "error": title, "detail": detail}).encode()
        content_type = "application/json"
    else:
        body = (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{status} {html.escape(title)} · webug</title></head>\n"
            f'<body><section class="error-page"><h1><span class="status">{status}</span> '
            f"{html.escape(title)}</h1>\n<p>{html.escape(detail)}</p></section></body></html>\n"
        ).encode()
        content_type = "text/html; charset=utf-8"
    return body, content_type


async def refuse(
    scope: Scope,
    send: Send,
    status: int,
    title: str,
    detail: str,
    extra_headers: dict[str, str] | None = None,
) -> None:
    """A refusal, as a standalone page that shows nothing of the BMDB."""
    body, content_type = _standalone_page(scope, status, title, detail)
    raw = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    raw += [(k.lower().encode(), v.encode()) for k, v in (extra_headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


# -------------------------------------------------------------------- middleware


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.hosts = allowed_hosts(settings)
        self.auth = Authenticator(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["content-security-policy"] = PAGE_CSP
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if not path.startswith(STATIC_PREFIX):
                    headers.update(NO_STORE)
                    headers.add_vary_header(VARY)
            await send(message)

        if path not in OPEN_PATHS and (refusal := self._check(scope, path)) is not None:
            status, title, detail, extra = refusal
            await refuse(scope, send_with_headers, status, title, detail, extra)
            return
        await self.app(scope, receive, send_with_headers)

    def _check(self, scope: Scope, path: str) -> tuple[int, str, str, dict[str, str]] | None:
        headers = Headers(scope=scope)
        host = headers.get("host")
        if (
            self.hosts is not None
            and host is not None
            and host_name(host) not in self.hosts
            and path not in ANY_HOST_PATHS
        ):
            return (
                400,
                "Bad request: unknown host",
                f"webug does not answer to the name {host[:100]!r}. If it should, add it to "
                "WEBUG_ALLOWED_HOSTS.",
                {},
            )
        if (
            len(scope.get("raw_path") or scope["path"].encode()) > MAX_PATH_BYTES
            or len(scope.get("query_string", b""))
            > QUERY_BYTES_BY_PATH.get(path, MAX_QUERY_BYTES)
        ):
            return (414, "URI too long", "The address of this request is too long.", {})
        if self.auth.enabled:
            user = self.auth.user(headers)
            if user is None:
                challenge = self.auth.challenge
                return (
                    401,
                    "Authentication required",
                    "This webug requires credentials (see its WEBUG_AUTH_TOKEN, WEBUG_BASIC_AUTH"
                    " or WEBUG_TRUSTED_USER_HEADER setting).",
                    {"www-authenticate": challenge} if challenge else {},
                )
            scope.setdefault("state", {})["user"] = user
        if scope["method"] not in SAFE_METHODS:
            reason = cross_origin_reason(Request(scope))
            if reason is not None:
                log.warning("refused %s %s: %s", scope["method"], scope["path"], reason)
                return (
                    403,
                    "Cross-origin request refused",
                    f"{scope['method']} {scope['path'][:200]} refused: {reason}. Use the"
                    " buttons on webug's own pages.",
                    {},
                )
        return None


async def last_resort_error(request: Request, exc: Exception) -> Response:
    """A crash in a middleware (this one included): Starlette's outermost layer answers
    with this, outside SecurityMiddleware, so the page carries the headers itself.

    Errors of the pages are app/http/errors.py's error page, inside this middleware. The
    exception is logged by the server, which Starlette re-raises it to.
    """
    body, content_type = _standalone_page(
        request.scope, 500, "Internal error", "webug failed to answer; the error is in its log."
    )
    headers = {"content-security-policy": PAGE_CSP, **SECURITY_HEADERS, **NO_STORE, "vary": VARY}
    return Response(body, 500, headers=headers, media_type=content_type)


def install_security(app: FastAPI, settings: Settings) -> None:
    """Headers, Host allow-list, access control and same-origin checks for every route."""
    app.add_middleware(SecurityMiddleware, settings=settings)
    app.add_exception_handler(Exception, last_resort_error)
