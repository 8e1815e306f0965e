"""Database text is shown escaped on every page and fragment, without a browser.

Every text column webug shows, enum labels (added with ALTER TYPE ... ADD VALUE), a
column name, a jsonb value and a string inside a protobuf blob hold markup that would
run a script, break out of an attribute or a <textarea>, or be evaluated by a template
engine. Each page must show the escaped text where the value belongs and contain none
of the raw markup (e2e/test_hostile.py checks the same data is inert in Chromium).
"""

from __future__ import annotations

import json
from urllib.parse import quote
from uuid import UUID

import pytest
from markupsafe import escape

from app.demo.protobuf_wire import f_string
from tests.support import cloned_database, webug_client

HTMX = {"HX-Request": "true"}
# Never in a page: only from the database (the search page's own text area ends in a
# plain "</textarea>", never followed by the hostile value's "{{").
RAW = ("<script>", "<img", "</textarea>{{")
DOUBLE_ESCAPED = ("&amp;lt;", "&amp;#")


def hostile(what: str) -> str:
    """Markup in every context a value can land in; `what` tells the values apart."""
    return f"<script>alert('{what}')</script>\"><img src=x onerror=alert(1)></textarea>{{{{7*7}}}}"


def hostile_label(what: str) -> str:
    """Shorter, for names (PostgreSQL cuts identifiers and enum labels at 63 bytes)."""
    return f"<script>{what}</script><img src=x>{{{{7*7}}}}"


MACHINE = UUID("0000bad1-0000-4000-8000-000000000001")
TWIN = UUID("0000bad1-0000-4000-8000-000000000002")  # so an ID prefix lists, not redirects
SESSION = UUID("0000bad5-0000-4000-8000-000000000005")

PROVIDER_ID, RESERVATION, IP, LOCATION = (hostile(w) for w in ("pid", "res", "ip", "loc"))
COMPONENT, RUNTIME = hostile("component"), hostile("runtime")
BACKOFF_CAUSE, FAILED_CAUSE = hostile("backoff"), hostile("failed")
PROTOBUF_STRING, NOTE, COLUMN_VALUE = hostile("protobuf"), hostile("note"), hostile("colval")
JSON_VALUE = {"k": [hostile("json")]}
PROVIDER, STATUS, PROCESS, EVENT, MOOD, COLUMN = (
    hostile_label(w) for w in ("provider", "status", "process", "event", "mood", "column")
)


def lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


HOSTILE_BMDB = [
    f"ALTER TYPE provider ADD VALUE {lit(PROVIDER)}",
    f"ALTER TYPE provider_status ADD VALUE {lit(STATUS)}",
    f"ALTER TYPE process ADD VALUE {lit(PROCESS)}",
    f"ALTER TYPE work_history_event ADD VALUE {lit(EVENT)}",
    f"CREATE TYPE mood AS ENUM ('calm', {lit(MOOD)})",
    # A tag type webug discovers by reflection: text, jsonb, an enum and a hostile name.
    "CREATE TABLE machine_hostile_note (machine_id uuid PRIMARY KEY REFERENCES machines,"
    f" note text, extra jsonb, mood mood, {ident(COLUMN)} text)",
    f"INSERT INTO machines VALUES ('{MACHINE}', now() - interval '1 day'),"
    f" ('{TWIN}', now() - interval '2 days')",
    f"INSERT INTO sessions VALUES ('{SESSION}', {lit(COMPONENT)}, {lit(RUNTIME)},"
    " now() - interval '1 hour', 60, now() - interval '1 minute')",
    "INSERT INTO machine_provided (machine_id, provider, provider_id, provider_reservation_id,"
    " provider_ip_address, provider_location, provider_status) VALUES"
    f" ('{MACHINE}', {lit(PROVIDER)}, {lit(PROVIDER_ID)}, {lit(RESERVATION)}, {lit(IP)},"
    f" {lit(LOCATION)}, {lit(STATUS)}),"
    f" ('{TWIN}', {lit(PROVIDER)}, {lit(PROVIDER_ID + ' twin')}, NULL, NULL, NULL, NULL)",
    f"INSERT INTO machine_agent_started VALUES ('{MACHINE}', now(),"
    f" '\\x{b'<script>alert(1)</script>'.hex()}')",
    f"INSERT INTO machine_os_installation_request VALUES ('{MACHINE}', 1,"
    f" '\\x{f_string(1, PROTOBUF_STRING).hex()}')",
    f"INSERT INTO machine_hostile_note VALUES ('{MACHINE}', {lit(NOTE)},"
    f" {lit(json.dumps(JSON_VALUE))}, {lit(MOOD)}, {lit(COLUMN_VALUE)})",
    f"INSERT INTO work VALUES ('{MACHINE}', '{SESSION}', {lit(PROCESS)})",
    f"INSERT INTO work_backoff VALUES ('{MACHINE}', {lit(PROCESS)}, now() + interval '1 hour',"
    f" {lit(BACKOFF_CAUSE)}, 60)",
    f"INSERT INTO work_history VALUES ('{MACHINE}', {lit(PROCESS)}, 'Started',"
    " now() - interval '20 minutes', NULL),"
    f" ('{MACHINE}', {lit(PROCESS)}, 'Failed', now() - interval '10 minutes', {lit(FAILED_CAUSE)}),"
    f" ('{MACHINE}', 'ShepherdAccess', {lit(EVENT)}, now() - interval '5 minutes', NULL)",
]

# What the JSON value looks like on the page: pretty-printed, as written.
JSON_SHOWN = json.dumps(JSON_VALUE, indent=2, ensure_ascii=False)
ROW = [PROVIDER_ID, IP, LOCATION, PROVIDER, STATUS, PROCESS, BACKOFF_CAUSE, COMPONENT, MOOD]
TAGS = [PROVIDER_ID, RESERVATION, IP, LOCATION, PROVIDER, STATUS, PROTOBUF_STRING]
TAGS += [NOTE, JSON_SHOWN, MOOD, COLUMN, COLUMN_VALUE]
LIVE = [PROCESS, COMPONENT, RUNTIME, BACKOFF_CAUSE, *TAGS]
WATCHED = [PROVIDER, PROVIDER_ID, STATUS, PROCESS, COMPONENT, BACKOFF_CAUSE]
HISTORY = [PROCESS, FAILED_CAUSE, EVENT, BACKOFF_CAUSE]  # the cause: the timeline's backoff


def page(name: str, url: str, shown: list[str], *, htmx: bool = False):
    """A page (or with `htmx`, its fragment) and the database values it shows."""
    return pytest.param(url, htmx, shown, id=name + (" fragment" if htmx else ""))


PAGES = [
    page("list", "/", ROW),
    page("list", "/", ROW, htmx=True),
    page("list by location", "/?location=" + quote(LOCATION), ROW),  # the filter chip too
    page("machine", f"/machine/{MACHINE}", LIVE),
    page("machine live", f"/machine/{MACHINE}/live", LIVE, htmx=True),
    page("history", f"/machine/{MACHINE}/history", HISTORY),
    page("history", f"/machine/{MACHINE}/history", HISTORY, htmx=True),
    page("sessions", "/sessions", [COMPONENT, RUNTIME, PROCESS]),
    page("sessions", "/sessions", [COMPONENT, RUNTIME, PROCESS], htmx=True),
    page("session", f"/session/{SESSION}", [COMPONENT, RUNTIME, PROCESS, FAILED_CAUSE, EVENT]),
    page("session live", f"/session/{SESSION}/live", [PROCESS], htmx=True),
    page("search by ID", "/search?q=0000bad", [PROVIDER, PROVIDER_ID, RESERVATION, IP, COMPONENT]),
    page("search", "/search?q=" + quote(PROVIDER_ID[:20]), [PROVIDER_ID, PROVIDER_ID[:20]]),
    page("machine ID prefix", "/machine/0000bad1", [PROVIDER, PROVIDER_ID, RESERVATION, IP]),
    page("pasted text", "/search?q=" + quote(f"alert: {SESSION} on {MACHINE}"),
         [PROVIDER, PROVIDER_ID, RESERVATION, IP, COMPONENT]),  # fmt: skip
    page("watch", f"/watch?ids={MACHINE},0000bad", WATCHED),
    page("watch", f"/watch?ids={MACHINE},0000bad", WATCHED, htmx=True),
    page("overview", "/overview", [PROVIDER, STATUS, PROCESS, COMPONENT]),
    page("overview", "/overview", [PROVIDER, STATUS, PROCESS, COMPONENT], htmx=True),
    page("schema", "/schema", [PROVIDER, STATUS, MOOD, COLUMN]),
    page("failures", "/failures", [PROCESS, BACKOFF_CAUSE, FAILED_CAUSE]),  # as examples
    page("activity", "/activity", [PROCESS, EVENT], htmx=True),
]
# Pages that echo what was typed in the URL (not from the database) escape it as well.
TYPED = '<script>alert(1)"><img src=x onerror=alert(1)>{{7*7}}'  # no "/": it is a path
ECHOES = [
    "/machine/" + quote(TYPED, safe=""),
    "/session/" + quote(TYPED, safe=""),
    "/provider/Equinix/" + quote(TYPED, safe=""),
    "/search?q=" + quote(TYPED),
]


@pytest.fixture(scope="module")
def client(pg_server_dsn, migrated_template):
    with (
        cloned_database(pg_server_dsn, migrated_template, *HOSTILE_BMDB) as dsn,
        webug_client(dsn) as c,
    ):
        yield c


def assert_inert(body: str) -> None:
    for raw in RAW:
        assert raw not in body
    for twice in DOUBLE_ESCAPED:
        assert twice not in body  # escaped once: shown as typed into the database


@pytest.mark.parametrize(("url", "fragment", "shown"), PAGES)
def test_database_text_is_escaped_where_it_is_shown(client, url, fragment, shown):
    response = client.get(url, headers=HTMX if fragment else {})
    assert response.status_code == 200, response.text[:1000]
    body = response.text
    assert body.startswith("<!doctype html>") != fragment
    assert_inert(body)
    missing = [value for value in shown if str(escape(value)) not in body]
    assert missing == []


@pytest.mark.parametrize("url", ECHOES)
def test_what_the_url_said_is_escaped_on_error_pages(client, url):
    response = client.get(url)
    assert response.status_code in (400, 404), response.status_code
    assert_inert(response.text)
    assert "&lt;script&gt;alert(1)" in response.text  # repeated, as text


def test_json_twins_carry_the_text_unescaped(client):
    machine = client.get(f"/machine/{MACHINE}?format=json").json()["machine"]
    provided = machine["tags"]["Provided"]
    assert provided["provider_id"] == PROVIDER_ID and provided["provider"] == PROVIDER
    assert machine["tags"]["HostileNote"][COLUMN] == COLUMN_VALUE
    assert machine["tags"]["HostileNote"]["extra"] == JSON_VALUE
    assert machine["backoffs"][0]["cause"] == BACKOFF_CAUSE
    history = client.get(f"/machine/{MACHINE}/history?format=json").json()["events"]
    assert [e["failed_cause"] for e in history if e["failed_cause"]] == [FAILED_CAUSE]
    session = client.get(f"/session/{SESSION}?format=json").json()["session"]
    assert (session["component"], session["runtime_info"]) == (COMPONENT, RUNTIME)
