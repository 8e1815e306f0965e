"""text= on the machine list, on a real PostgreSQL: each source it searches, any letter
case, wildcards taken literally, and the page naming the columns it searched.

The small fleet (tests/fleet.py) plus a tag table of this module's own (as a migration
would add one) with a text, an inet and a jsonb column, which reflection must find, and
an enum and a bytea column, which are not text.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

from tests.fleet import SMALL_FLEET, mid
from tests.support import cloned_database, webug_client

ROW = re.compile(r'<tr id="m-([0-9a-f-]{36})"')

EXTRA_TAG = [
    "CREATE TABLE machine_rack_note (machine_id UUID PRIMARY KEY REFERENCES machines,"
    " note TEXT, mgmt_ip INET, labels JSONB, vendor provider, photo BYTEA)",
    f"""INSERT INTO machine_rack_note VALUES
        ('{mid(5)}', 'Fan FAILURE in row 7', '192.168.77.5', '{{"owner": "Team-Blue"}}',
         'Lumen', '\\x4e6f7465'),
        ('{mid(6)}', 'progress: 50%_done', NULL, NULL, 'Equinix', NULL),
        ('{mid(7)}', 'progress: 50 percent done', NULL, '{{"lumen": 1}}', NULL, NULL)""",
]


@pytest.fixture(scope="module")
def client(pg_server_dsn, migrated_template):
    with (
        cloned_database(pg_server_dsn, migrated_template, *SMALL_FLEET, *EXTRA_TAG) as dsn,
        webug_client(dsn) as c,
    ):
        yield c


def found(client, text: str, extra: str = "") -> list[int]:
    response = client.get(f"/?{urlencode({'text': text})}&{extra}")
    assert response.status_code == 200, response.text[:500]
    by_id = {str(mid(n)): n for n in range(1, 13)}
    return [by_id[m] for m in ROW.findall(response.text)]


@pytest.mark.parametrize(
    ("text", "expected", "source"),
    [
        ("connection refused", [2], "an active backoff's cause"),
        ("old failure", [3], "an expired backoff's cause (expired backoffs stay visible)"),
        ("pid 42", [1], "the runtime info of the session holding its work"),
        ("pid 7", [2], "... an expired session's, too: stale work"),
        ("lumen-0002", [2], "Provided.provider_id (varchar)"),
        ("10.0.0.", [1, 2], "Provided.provider_ip_address"),
        ("ny7", [2], "Provided.provider_location"),
        ("row 7", [5], "a text column of a tag reflection found"),
        ("168.77", [5], "an inet column"),
        ("team-blue", [5], "a jsonb column, as its text"),
        ('"owner"', [5], "... keys included"),
    ],
)
def test_each_source_is_searched(client, text, expected, source):
    assert found(client, text) == expected, source


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CONNECTION REFUSED", [2]),
        ("fan failure", [5]),
        ("Fan Failure IN ROW", [5]),
        ("LUMEN-0002", [2]),
        ("TEAM-BLUE", [5]),
    ],
)
def test_letter_case_does_not_matter(client, text, expected):
    assert found(client, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50%_done", [6]),  # both wildcards literal: "50 percent done" does not match
        ("50%", [6]),
        ("%", [6]),
        ("_", [6]),  # only machine 6 has an underscore in a searched column
        ("\\", []),
        ("pid_42", []),
    ],
)
def test_wildcards_in_the_text_are_literal(client, text, expected):
    assert found(client, text) == expected


def test_enums_and_blobs_are_not_searched(client):
    assert found(client, "Equinix") == []  # Provided.provider and rack_note.vendor are enums
    assert found(client, "Note") == [] and found(client, "4e6f7465") == []  # photo's bytes


def test_html_is_escaped_in_a_match(client):
    page = client.get("/", params={"text": "<script>"}).text
    assert ROW.findall(page) == [str(mid(2))]
    assert "<script>alert(1)</script>" not in page


def test_the_page_names_the_columns_it_searched(client):
    page = client.get("/", params={"text": "pid"}).text
    note = re.search(r'<p class="muted small" id="text-searched">(.*?)</p>', page, re.S)
    assert note, "no note of the searched columns"
    searched = note.group(1)
    assert "text “pid” searched" in searched
    for column in (
        "work_backoff.cause",
        "sessions.session_runtime_info",
        "Provided.provider_id",
        "Provided.provider_ip_address",
        "RackNote.note",
        "RackNote.mgmt_ip",
        "RackNote.labels",
    ):
        assert column in searched, column
    for column in ("Provided.provider,", "RackNote.vendor", "RackNote.photo", "hardware_report"):
        assert column not in searched, column
    assert 'name="text" value="pid"' in page  # the box keeps it
    assert "text: pid ×" in page  # a chip removes it
    assert 'id="text-searched"' not in client.get("/").text
    twin = client.get("/", params={"text": "pid", "format": "json"}).json()
    assert "RackNote.labels" in twin["text_searched"] and twin["filters"]["text"] == ["pid"]
    assert client.get("/?format=json").json()["text_searched"] is None


def test_text_combines_with_other_filters_and_counts(client):
    assert found(client, "10.0.0.", "provider=Lumen") == [2]
    assert found(client, "refused", "lacks=Provided") == []
    page = client.get("/", params={"text": "10.0.0."}).text
    assert re.search(r'class="count">2 matching', page)


def test_empty_or_overlong_text(client):
    assert found(client, "") == list(range(1, 13))
    assert client.get("/", params={"text": "x" * 201}).status_code == 400
