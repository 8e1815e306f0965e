"""Security on a real PostgreSQL: headers and CSP, Host allow-list, access control on every
route, centralized same-origin check, bounded requests, no path traversal, huge values.
"""

from __future__ import annotations

import base64
import html
import os
import re
import time
from pathlib import Path

import pytest

from app.config import load_settings
from app.http.security import PAGE_CSP
from app.render import urls
from tests.fleet import ALIVE, mid
from tests.support import BASE_URL, execute, route_of, run_sync, url_module_paths, webug_client

APP = Path(__file__).resolve().parents[1] / "app"

PAGES = [
    "/",
    f"/machine/{mid(1)}",
    f"/machine/{mid(2)}/live",
    f"/machine/{mid(2)}/history",
    "/overview",
    "/sessions",
    f"/session/{ALIVE}",
    f"/session/{ALIVE}/live",
    "/schema",
    "/search?q=eq-",
    f"/watch?ids={mid(1)},{mid(2)}",
    "/failures",
    "/activity",
    "/api",
    "/work",
    "/backoffs",
    "/tags",
    "/tags/Provided",
    "/forecast",
]
# The routes not in PAGES, and why: they answer no HTML page of their own.
NOT_HTML = {
    urls.MACHINE_TAG_VALUE: "a value's download",
    urls.PROVIDER: "a redirect to the machine",
    urls.WATCH_FILTERED: "a redirect to /watch",
    urls.SCHEMA_REFRESH: "a POST answered with a redirect",
    urls.HEALTH: "plain text",
    urls.METRICS: "Prometheus text",
    urls.OPENAPI: "JSON",
    urls.STATIC: "files, checked by name below",
    urls.FAVICON: "the SVG icon",
}


def test_pages_cover_every_route_that_answers_html():
    routes = url_module_paths()
    in_pages = {route_of(url, routes) for url in PAGES}
    assert routes - in_pages - NOT_HTML.keys() == set()


@pytest.fixture(scope="module")
def client(small_fleet_dsn):
    with webug_client(small_fleet_dsn) as c:
        yield c


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def directives(csp: str) -> dict[str, str]:
    return {d.split()[0]: d.partition(" ")[2] for d in (p.strip() for p in csp.split(";")) if d}


# ------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    "url",
    [*PAGES, "/static/webug.css", "/openapi.json", "/healthz", "/nope", "/machine/xyz"],
)
def test_every_response_has_the_security_headers(client, url):
    response = client.get(url)
    assert response.status_code < 500
    csp = directives(response.headers["content-security-policy"])
    assert csp["script-src"] == "'self'"  # no inline script, no eval
    assert csp["style-src"] == "'self'"
    assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
    assert csp["base-uri"] == "'none'" and csp["form-action"] == "'self'"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-frame-options"] == "DENY"


def test_nothing_from_the_bmdb_is_stored_or_served_as_another_variant(client):
    """HTML, JSON and htmx answers share URLs: no cache may store one for another (a
    fragment shown as the whole page on Back), nor keep BMDB data on disk."""
    fragment = client.get(f"/machine/{mid(2)}/live", headers={"HX-Request": "true"})
    responses = {
        "page": client.get(f"/machine/{mid(2)}"),
        "fragment": fragment,
        "unchanged fragment (304)": client.get(
            f"/machine/{mid(2)}/live",
            headers={"HX-Request": "true", "HX-PTag": fragment.headers["HX-PTag"]},
        ),
        "JSON twin": client.get("/sessions", headers={"Accept": "application/json"}),
        "?format=json": client.get("/?format=json"),
        "list fragment": client.get("/", headers={"HX-Request": "true"}),
        "not found": client.get("/machine/00000000-0000-4000-8000-0000000000ff"),
        "bad request": client.get("/machine/nope"),
        "refused": client.get("/", headers={"Host": "evil.example"}),
        "api": client.get("/api"),
        "healthz": client.get("/healthz"),
    }
    assert responses["unchanged fragment (304)"].status_code == 304
    for name, response in responses.items():
        assert response.headers.get("cache-control") == "no-store", name
        vary = {v.strip().lower() for v in response.headers.get("vary", "").split(",")}
        assert {"accept", "hx-request"} <= vary, name
    static = client.get("/static/webug.css")  # app files keep their caching
    assert "cache-control" not in static.headers and "vary" not in static.headers
    revalidated = client.get("/static/webug.css", headers={"If-None-Match": static.headers["etag"]})
    assert revalidated.status_code == 304


def assert_security_headers(response) -> None:
    csp = directives(response.headers["content-security-policy"])
    assert csp["script-src"] == "'self'" and csp["default-src"] == "'none'"
    assert csp["frame-ancestors"] == "'none'"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["cache-control"] == "no-store"


def test_a_crashing_page_is_a_500_with_the_security_headers(small_fleet_dsn):
    async def boom():
        raise RuntimeError("secret internals")

    with webug_client(small_fleet_dsn) as c:  # the client would raise what reached the server
        c.app.add_api_route("/boom", boom)
        for headers in ({}, {"Accept": "application/json"}, {"HX-Request": "true"}):
            response = c.get("/boom", headers=headers)
            assert response.status_code == 500
            assert_security_headers(response)
            assert "x-request-id" in response.headers
            assert "secret internals" not in response.text and "Traceback" not in response.text
        assert "Internal error" in c.get("/boom").text


def test_a_crash_in_the_middleware_is_a_500_with_the_security_headers(small_fleet_dsn, monkeypatch):
    """The last resort, outside every middleware: still the headers, nothing of the BMDB."""
    from fastapi.testclient import TestClient

    from app.config import Settings
    from app.http.security import Authenticator
    from app.main import create_app

    def broken(self, headers):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(Authenticator, "user", broken)
    app = create_app(Settings(dsn=small_fleet_dsn, auth_token="s3cret-token-value"))
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as c:
        for headers in ({}, {"Accept": "application/json"}):
            response = c.get("/", headers=headers)
            assert response.status_code == 500
            assert_security_headers(response)
            assert "secret internals" not in response.text and "Traceback" not in response.text
            assert "webug_test_" not in response.text and "s3cret" not in response.text
        assert c.get("/", headers={"Accept": "application/json"}).json()["status"] == 500


def strict_csp(response) -> bool:
    return response.headers["content-security-policy"] == PAGE_CSP


@pytest.mark.parametrize("url", ["/docs", "/redoc", "/docsfoo", "/docs/oauth2-redirect"])
def test_no_third_party_script_pages(client, url):
    """FastAPI's /docs and /redoc ran a CDN's JavaScript on webug's origin: gone."""
    response = client.get(url)
    assert response.status_code == 404 and strict_csp(response)


def test_api_page_documents_the_json_twins_without_script(client):
    page = client.get("/api")
    assert page.status_code == 200 and strict_csp(page)
    assert "/machine/{machine_id}" in page.text and "/sessions" in page.text
    assert "MachinePage" in page.text and 'href="/openapi.json' in page.text
    assert "poll interval, seconds" in page.text  # a query parameter's description
    assert "/schema/refresh" not in page.text  # GET routes only
    scripts = re.findall(r"<script[^>]*>", page.text)
    assert scripts and all(
        re.fullmatch(r'<script src="/static/[\w.-]+" defer>', s) for s in scripts
    )
    assert client.get("/openapi.json").json()["paths"]["/machine/{machine_id}"]


# webug.js's EXPRESSIONS: the hx-trigger filters it compiles without 'unsafe-eval'.
PRECOMPILED = set(re.findall(
    r'^    "([^"]+)":\s*\(\) =>', (APP / "static" / "webug.js").read_text(), re.M
))  # fmt: skip


def test_the_precompiled_expressions_are_found():
    assert {
        "document.visibilityState === 'visible'",
        "document.visibilityState === 'visible' && !document.querySelector('.live-bar .paused')",
    } == PRECOMPILED


@pytest.mark.parametrize("url", PAGES)
def test_pages_have_no_inline_script_handlers_or_styles(client, url):
    text = client.get(url).text
    assert not re.search(r"<script(?![^>]*\bsrc=)", text), "inline <script>"
    assert not re.search(r"\son[a-z]+\s*=", text, re.I), "inline event handler"
    assert not re.search(r"\sstyle\s*=", text, re.I), "inline style (blocked by style-src)"
    assert "javascript:" not in text.lower()
    # The only hx-trigger filter expressions are the ones webug.js precompiles.
    filters = {html.unescape(f) for f in re.findall(r'hx-trigger="[^"]*\[([^\]]*)\]', text)}
    assert filters <= PRECOMPILED, filters


def test_database_and_request_text_is_escaped(client):
    backoff = client.get(f"/machine/{mid(2)}").text  # a cause with <script> in the fleet
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in backoff and "<script>alert" not in backoff
    bad_id = client.get("/machine/<img src=x onerror=alert(1)>")
    assert bad_id.status_code == 400 and "<img src=x" not in bad_id.text
    search = client.get("/search", params={"q": '"><script>alert(1)</script>'})
    assert search.status_code < 500 and "<script>alert" not in search.text


# --------------------------------------------------------------------------- hosts


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST"])
def test_loopback_host_names_are_accepted(client, host):
    assert client.get("/", headers={"Host": host}).status_code == 200


# testserver (Starlette's test client) and other single-label names can be answered by
# LLMNR, mDNS or a search domain: not accepted unless configured.
@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "127.0.0.1.nip.io", "testserver", "webug"]
)
def test_other_host_names_are_refused_against_dns_rebinding(client, host):
    response = client.get("/", headers={"Host": host})
    assert response.status_code == 400 and "unknown host" in response.text
    assert "webug_test_" not in response.text  # nothing of the BMDB to a rebinding page
    as_json = client.get("/?format=json", headers={"Host": host})
    assert as_json.status_code == 400 and as_json.json()["status"] == 400
    static = client.get("/static/webug.js", headers={"Host": host})
    assert static.status_code == 400 and "unknown host" in static.text
    assert client.get("/healthz", headers={"Host": host}).status_code == 200  # probes
    assert client.get("/metrics", headers={"Host": host}).status_code == 200  # scraped by IP


def test_allowed_hosts_setting_adds_names_or_accepts_any(small_fleet_dsn):
    with webug_client(small_fleet_dsn, allowed_hosts="webug.example.com, ops.example") as c:
        assert c.get("/", headers={"Host": "webug.example.com"}).status_code == 200
        assert c.get("/", headers={"Host": "ops.example:443"}).status_code == 200
        refused = c.get("/", headers={"Host": "evil.example"})
        assert refused.status_code == 400 and "unknown host" in refused.text
    with webug_client(small_fleet_dsn, allowed_hosts="*") as c:
        assert c.get("/", headers={"Host": "anything.example"}).status_code == 200


# ------------------------------------------------------------------ access control

# A value for each route parameter, so that every route answers (the small fleet's).
ROUTE_VALUES = {
    "machine_id": mid(1), "session_id": ALIVE, "tag": "AgentStarted",
    "field": "agent_public_key", "provider": "Lumen", "provider_id": "lumen-0002",
}  # fmt: skip


def route_urls() -> dict[str, int]:
    """One URL for every route but /healthz (open to probes), with the status it answers
    an allowed GET."""
    answers = {}
    for path in sorted(url_module_paths() - {urls.HEALTH}):
        url = "/static/webug.css" if path == urls.STATIC else path.format(**ROUTE_VALUES)
        answers[url] = 405 if path == urls.SCHEMA_REFRESH else 200  # a POST: GET is refused
    return answers


PROTECTED = {**route_urls(), "/?format=json": 200}


def test_bearer_token_guards_every_route_but_healthz(small_fleet_dsn):
    token = "s3cret-token-value"
    with webug_client(small_fleet_dsn, auth_token=token) as c:
        for url, allowed in PROTECTED.items():
            refused = c.get(url)
            assert refused.status_code == 401, url
            assert refused.headers["www-authenticate"].startswith("Basic realm=")
            assert token not in refused.text and "webug_test_" not in refused.text
            wrong = c.get(url, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            bearer = c.get(url, headers={"Authorization": f"Bearer {token}"})
            assert bearer.status_code == allowed, url
            # A browser logs in with the token as the password (any user name).
            assert c.get(url, headers=basic("me", token)).status_code == allowed
        assert c.get("/?format=json").json()["status"] == 401
        assert c.get("/healthz").status_code == 200  # open: load balancers, probes
        assert c.get("/metrics").status_code == 401  # Prometheus sends the token
        assert c.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_basic_auth_guards_every_route(small_fleet_dsn):
    with webug_client(small_fleet_dsn, basic_auth="admin:pa:ss") as c:
        for url, allowed in PROTECTED.items():
            assert c.get(url).status_code == 401
            assert c.get(url, headers=basic("admin", "pa:ss")).status_code == allowed, url
            assert c.get(url, headers=basic("admin", "wrong")).status_code == 401
            assert c.get(url, headers=basic("root", "pa:ss")).status_code == 401
        assert c.get("/", headers={"Authorization": "Basic !!!notbase64"}).status_code == 401
        assert c.get("/", headers={"Authorization": "Bearer pa:ss"}).status_code == 401


MALFORMED_BASIC = [
    b"Basic \xff\xfe",  # not ASCII (a raw byte, as a hostile client can send)
    b"Basic " + base64.b64encode("m\u00e9:s3cret-token-value".encode("latin-1")),  # not UTF-8
    b"Basic " + base64.b64encode(b"no-colon"),
    b"Basic !!!notbase64",
    b"Basic abc",  # bad padding
    b"Basic",
    b"Bearer \xff",
]


@pytest.mark.parametrize("auth", MALFORMED_BASIC)
def test_malformed_credentials_are_a_401_never_a_500(small_fleet_dsn, auth):
    for settings in ({"auth_token": "s3cret-token-value"}, {"basic_auth": "admin:pw"}):
        with webug_client(small_fleet_dsn, **settings) as c:
            response = c.get("/", headers=[(b"authorization", auth)])
            assert response.status_code == 401, (settings, auth)
            assert "webug_test_" not in response.text  # nothing of the BMDB
            assert response.headers["www-authenticate"].startswith("Basic realm=")


def test_trusted_proxy_header_is_required(small_fleet_dsn):
    with webug_client(small_fleet_dsn, trusted_user_header="X-Forwarded-User") as c:
        for url, allowed in PROTECTED.items():
            refused = c.get(url)
            assert refused.status_code == 401 and "www-authenticate" not in refused.headers
            assert c.get(url, headers={"X-Forwarded-User": "alice"}).status_code == allowed, url
            assert c.get(url, headers={"X-Forwarded-User": " "}).status_code == 401


def test_invalid_credentials_setting_stops_start_without_echoing_the_secret(monkeypatch):
    for key in list(os.environ):
        if key.startswith("WEBUG_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("WEBUG_BASIC_AUTH", "no-colon-secret")
    with pytest.raises(SystemExit) as stop:
        load_settings()
    assert "WEBUG_BASIC_AUTH" in str(stop.value) and "no-colon-secret" not in str(stop.value)


@pytest.mark.parametrize(
    ("variable", "value", "secret"),
    [
        ("WEBUG_AUTH_TOKEN", "", None),  # would silently mean "no access control"
        ("WEBUG_AUTH_TOKEN", "   ", None),
        ("WEBUG_BASIC_AUTH", "admin-name:", "admin-name"),  # empty password
        ("WEBUG_BASIC_AUTH", ":pass-word", "pass-word"),  # empty user name
        ("WEBUG_BASIC_AUTH", ":", None),
    ],
)
def test_empty_secrets_stop_start_naming_the_variable(monkeypatch, variable, value, secret):
    for key in list(os.environ):
        if key.startswith("WEBUG_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as stop:
        load_settings()
    message = str(stop.value)
    assert message.startswith("webug: invalid configuration: ") and "\n" not in message
    assert variable in message and "empty" in message
    assert secret is None or secret not in message


# ---------------------------------------------------------- cross-origin, methods


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_state_changing_methods_from_another_origin_are_refused_everywhere(client, method):
    for url in ("/", "/schema/refresh", f"/machine/{mid(1)}"):
        refused = client.request(method, url, headers={"Origin": "http://evil.example"})
        assert refused.status_code == 403 and "Cross-origin request refused" in refused.text
    same = client.request(method, "/", headers={"Origin": "http://localhost"})
    assert same.status_code == 405  # allowed through to the router, which has no such route


# ----------------------------------------------------------------- bounded input


def test_oversized_request_lines_are_refused(client):
    assert client.get("/machine/" + "a" * 3000).status_code == 414
    assert client.get("/", params={"q": "x" * 9000}).status_code == 414
    long_id = client.get("/machine/" + "a" * 1500)
    assert long_id.status_code in (400, 404) and len(long_id.text) < 100_000


TRAVERSALS = [
    "/static/../main.py",
    "/static/../../app/main.py",
    "/static/..%2fmain.py",
    "/static/%2e%2e/main.py",
    "/static/%2e%2e%2fmain.py",
    "/static/%252e%252e/main.py",
    "/static/..%5cmain.py",
    "/static/....//main.py",
    "/static//etc/passwd",
    "/static/../../../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/webug.css%00.py",
    "/static/",
]


@pytest.mark.parametrize("raw", TRAVERSALS)
def test_no_path_traversal_through_static(client, raw):
    """The raw path as a client sends it, percent-decoded as uvicorn would, not normalized."""
    from urllib.parse import unquote

    async def get(app) -> tuple[int, bytes]:
        sent: list[dict] = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": unquote(raw),
            "raw_path": raw.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1:8000")],
            "client": ("127.0.0.1", 1234),
            "server": ("127.0.0.1", 8000),
        }
        await app(scope, receive, send)
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return sent[0]["status"], body

    status, body = client.portal.call(get, client.app)
    assert status in (400, 404), (raw, status)
    assert b"create_app" not in body and b"root:" not in body
    assert client.get(raw).status_code in (400, 404)  # and as the test client sends it


# ------------------------------------------------------------- links from BMDB data


def test_provider_id_is_url_encoded_in_the_console_link(migrated_db_dsn):
    """A provider ID cannot change which console page (or site) the link opens."""
    hostile = 'x/../../evil?next=//evil.example#frag "quoted" 100%'
    run_sync(
        execute(
            migrated_db_dsn,
            f"INSERT INTO machines VALUES ('{mid(1)}', now())",
            f"""INSERT INTO machine_provided (machine_id, provider, provider_id)
                VALUES ('{mid(1)}', 'Equinix', $${hostile}$$)""",
        )
    )
    expected = (
        "https://console.equinix.com/devices/x%2F..%2F..%2Fevil%3Fnext%3D%2F%2Fevil.example"
        "%23frag%20%22quoted%22%20100%25/overview"
    )
    with webug_client(migrated_db_dsn) as c:
        page = c.get(f"/machine/{mid(1)}").text
        as_json = c.get(f"/machine/{mid(1)}?format=json").json()
    assert f'href="{expected}"' in page
    assert as_json["console_url"] == expected


# ---------------------------------------------------------------------- huge values

MB = 1024 * 1024


def test_megabytes_in_a_tag_keep_the_page_bounded(migrated_db_dsn):
    run_sync(
        execute(
            migrated_db_dsn,
            f"INSERT INTO machines VALUES ('{mid(1)}', now())",
            f"""INSERT INTO machine_hardware_report VALUES
                ('{mid(1)}', decode(repeat('ab', {4 * MB}), 'hex'))""",
            f"""INSERT INTO machine_os_installation_request VALUES
                ('{mid(1)}', 1, decode(repeat('0a05', {2 * MB}), 'hex'))""",
        )
    )
    with webug_client(migrated_db_dsn) as client:
        sizes = {}
        for url in (f"/machine/{mid(1)}", f"/machine/{mid(1)}/live", "/"):
            started = time.perf_counter()
            response = client.get(url, headers={"HX-Request": "true"} if "live" in url else {})
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, url
            sizes[url] = len(response.content)
            print(f"\n{url}: {len(response.content) / MB:.2f} MB in {elapsed * 1000:.0f} ms")
        page = client.get(f"/machine/{mid(1)}").text
    assert "4.0 MiB" in page or "4,194,304" in page  # the size is shown, not all the bytes
    # 8 MB of tag bytes in the database: at most 256 KiB of each as hex in the page.
    assert sizes[f"/machine/{mid(1)}"] < 1.5 * MB, sizes
    assert sizes[f"/machine/{mid(1)}/live"] < 1.5 * MB, sizes
    assert sizes["/"] < 200_000, sizes
