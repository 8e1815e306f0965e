"""/tags and /tags/{TagName} on a real PostgreSQL, with a tag table of unusual types
(jsonb, inet, text[], numeric, bool, an enum, timestamptz, bytea) made in the test's own
database: exactly the machines with the tag, sorted by every field both ways (NULLs
last) across keyset pages, filtered by every kind of filter, the CSV equal to the pages,
and a 400 for a tag, field or value reflection does not know."""

from __future__ import annotations

import html
import ipaddress
import json
import re
from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.fleet import machines_sql, mid
from tests.support import (
    csv_rows,
    execute,
    fleet_client,
    keyset_pages,
    run_sync,
    webug_client,
)

SAME_ORIGIN = {"Origin": "http://localhost"}  # a POST webug accepts (app/http/security.py)
MOODS = ("calm", "busy", "angry")  # the enum's order
# machine -> (doc's n, addr, labels, amount, flag, hours since seen, mood, raw bytes, note);
# None is NULL. Machine 7 has no OddValues tag.
ROWS = {
    1: (2, "10.0.0.2", ["banana"], "10.5", True, 1, "busy", 2, "b <b>"),
    2: (10, "10.0.0.10", ["apple", "pear"], "2", False, 2, "calm", None, "a"),
    3: (None,) * 9,
    4: (1, "192.168.1.1", ["cherry"], "-3.25", True, 3, "angry", 1, "c"),
    5: (None, "10.0.0.2", None, "10.5", None, 1.5, "busy", 10_000, None),
    6: (2, None, ["avocado"], None, False, None, None, None, "a"),
}
FIELDS = ("doc", "addr", "labels", "amount", "flag", "seen", "mood", "raw", "note")


def _sql(value: object, column: str) -> str:
    if value is None:
        return "NULL"
    if column == "doc":
        return f"""'{{"n": {value}}}'::jsonb"""
    if column == "labels":
        return "ARRAY[" + ", ".join(f"'{v}'" for v in value) + "]"  # type: ignore[union-attr]
    if column == "seen":
        return f"now() - interval '{value} hours'"
    if column == "raw":
        return f"decode(repeat('ab', {value}), 'hex')"
    if column == "flag":
        return "true" if value else "false"
    return f"'{value}'"


FLEET = [
    machines_sql(1, 7),
    "CREATE TYPE odd_mood AS ENUM ('calm', 'busy', 'angry')",
    """CREATE TABLE machine_odd_values (
        machine_id UUID PRIMARY KEY REFERENCES machines (machine_id),
        doc JSONB, addr INET, labels TEXT[], amount NUMERIC, flag BOOL, seen TIMESTAMPTZ,
        mood odd_mood, raw BYTEA, note TEXT)""",
    "INSERT INTO machine_odd_values VALUES " + ", ".join(
        f"('{mid(m)}', " + ", ".join(_sql(v, c) for v, c in zip(values, FIELDS, strict=True)) + ")"
        for m, values in ROWS.items()
    ),
]


def sort_key(column: str, value: object) -> object:
    """What the BMDB orders a field by: jsonb by value, arrays by their text, blobs by
    their size, enums in their order, times by age (older first: larger hours first)."""
    if column == "addr":
        return ipaddress.ip_address(value)
    if column == "labels":
        return "{" + ",".join(value) + "}"  # type: ignore[arg-type]
    if column == "amount":
        return Decimal(value)  # type: ignore[arg-type]
    if column == "seen":
        return -value  # type: ignore[operator]
    if column == "mood":
        return MOODS.index(value)  # type: ignore[arg-type]
    return value


def ordered(machines: list[int], sort: str) -> list[str]:
    name, descending = sort.removeprefix("-"), sort.startswith("-")
    if name == "machine_id":
        return [str(mid(m)) for m in sorted(machines, reverse=descending)]
    i = FIELDS.index(name)
    keyed = sorted((m for m in machines if ROWS[m][i] is not None),
                   key=lambda m: (sort_key(name, ROWS[m][i]), m), reverse=descending)  # fmt: skip
    unkeyed = sorted((m for m in machines if ROWS[m][i] is None), reverse=descending)
    return [str(mid(m)) for m in keyed + unkeyed]


@pytest.fixture(scope="module")
def client(pg_server_dsn, migrated_template) -> Iterator:
    with fleet_client(pg_server_dsn, migrated_template, *FLEET) as c:
        yield c


def machine_ids(rows: list[dict]) -> list[str]:
    return [r["machine_id"] for r in rows]


@pytest.mark.parametrize("sort", [f"{d}{f}" for f in ("machine_id", *FIELDS) for d in ("", "-")])
@pytest.mark.parametrize("limit", [1, 4])
def test_a_tag_table_sorts_by_every_field_both_ways_nulls_last_across_pages(client, sort, limit):
    rows = keyset_pages(client, f"/tags/OddValues?sort={sort}", "rows", limit)
    assert machine_ids(rows) == ordered(list(ROWS), sort)


@pytest.mark.parametrize(
    ("query", "machines"),
    [
        ("flag=true", [1, 4]),
        ("flag=0", [2, 6]),
        ("mood=busy", [1, 5]),
        ("mood=busy&mood=calm", [1, 2, 5]),  # one field's values are alternatives
        ("amount__gt=2", [1, 5]),
        ("amount__lt=2", [4]),
        ("amount=10.50", [1, 5]),
        ("amount__gt=-4&amount__lt=3", [2, 4]),
        ("addr=10.0.0.2", [1, 5]),
        ("doc=%7B%22n%22%3A2%7D", [1, 6]),  # {"n":2}, equal as JSONB
        ("labels=%7Bbanana%7D", [1]),  # arrays compare as their text
        ("seen__gt=2000-01-01", [1, 2, 4, 5]),
        ("seen__lt=2000-01-01T00:00:00Z", []),
        ("raw__isnull=1", [2, 3, 6]),
        ("note__isnull=0", [1, 2, 4, 6]),
        ("note=a", [2, 6]),
        ("flag=true&amount__gt=0", [1]),
    ],
)
def test_a_tag_table_filters_by_fields_of_every_type(client, query, machines):
    for sort in ("machine_id", "-amount"):
        rows = keyset_pages(client, f"/tags/OddValues?{query}&sort={sort}", "rows", 2)
        assert machine_ids(rows) == ordered(machines, sort), (query, sort)
    page = client.get(f"/tags/OddValues?{query}&format=json").json()
    assert page["total"] == len(machines)


def test_values_keep_their_types_in_the_json_twin_and_facets_count_them(client):
    page = client.get("/tags/OddValues?format=json").json()
    assert page["tag"] == "OddValues" and page["table"] == "machine_odd_values"
    assert [f["name"] for f in page["fields"]] == list(FIELDS)
    assert machine_ids(page["rows"]) == [str(mid(m)) for m in ROWS]  # not machine 7
    first = page["rows"][0]
    assert first["values"]["doc"] == {"n": 2} and first["values"]["addr"] == "10.0.0.2"
    assert first["values"]["labels"] == ["banana"] and first["values"]["amount"] == "10.5"
    assert first["values"]["flag"] is True and first["values"]["mood"] == "busy"
    assert first["values"]["raw"]["length"] == 2
    assert first["downloads"] == {"raw": f"/machine/{mid(1)}/tag/OddValues/raw"}
    assert page["values"] == {
        "flag": {"true": 2, "false": 2, "NULL": 2},
        "mood": {"busy": 2, "angry": 1, "calm": 1, "NULL": 2},
    }
    assert page["nulls"] == {f: sum(ROWS[m][i] is None for m in ROWS) for i, f in enumerate(FIELDS)}
    # A facet is counted under the other fields' filters only.
    busy = client.get("/tags/OddValues?mood=busy&format=json").json()
    assert busy["values"]["mood"] == page["values"]["mood"]
    assert busy["values"]["flag"] == {"true": 1, "NULL": 1}


def test_the_page_renders_each_value_by_type_on_one_line_with_the_whole_on_hover(client):
    page = client.get("/tags/OddValues").text
    rows = re.findall(r'<tr id="t-([0-9a-f-]{36})"', page)
    assert rows == [str(mid(m)) for m in ROWS]
    assert "b &lt;b&gt;" in page and "b <b>" not in page
    assert '<span class="enum" title="enum odd_mood: calm, busy, angry">busy</span>' in page
    assert '<code class="addr">10.0.0.2</code>' in page
    assert 'title="10,000 bytes"' in page  # a blob's size on hover
    assert f'href="/machine/{mid(5)}/tag/OddValues/raw" download' in page
    assert "<time datetime=" in page  # a timestamp field
    assert 'title="{&#34;n&#34;: 2}"' in page or 'title="{&#34;n&#34;:2}"' in page
    assert 'href="/tags/OddValues?mood=busy"' in page  # a facet value
    assert 'href="/tags/OddValues?flag__isnull=1"' in page  # its NULLs
    assert 'href="/tags/OddValues?sort=amount"' in page  # a sortable header


def test_the_csv_equals_the_pages(client):
    for query in ("", "sort=-amount", "mood=busy&sort=seen"):
        rows = keyset_pages(client, "/tags/OddValues?" + query, "rows", 2)
        cells = csv_rows(client, "/tags/OddValues?format=csv&" + query)
        assert [c["machine_id"] for c in cells] == machine_ids(rows)
        for c, r in zip(cells, rows, strict=True):
            v = r["values"]
            # Text that a spreadsheet would read as a formula gets a ' (numeric is text).
            amount = v["amount"] or ""
            assert c["amount"] == ("'" + amount if amount.startswith("-") else amount)
            assert c["mood"] == (v["mood"] or "")
            doc = json.dumps(v["doc"], separators=(",", ":")) if v["doc"] else ""
            assert c["doc"] == doc
            assert c["raw"] == (str(v["raw"]["length"]) if v["raw"] else "")
            assert c["raw.url"] == (f"http://localhost{r['downloads']['raw']}" if v["raw"] else "")


def test_tags_lists_every_tag_type_with_its_machines_and_fields(client):
    data = client.get("/tags?format=json").json()
    counts = {t["name"]: t["machines"] for t in data["tags"]}
    assert counts["OddValues"] == len(ROWS) and counts["Provided"] == 0
    odd = next(t for t in data["tags"] if t["name"] == "OddValues")
    assert odd["url"] == "/tags/OddValues" and [f["name"] for f in odd["fields"]] == list(FIELDS)
    page = client.get("/tags").text
    assert 'href="/tags/OddValues"' in page and 'href="/tags/AgentStarted"' in page
    assert 'href="/tags"' in client.get("/schema").text  # /schema links here
    assert 'href="/tags/OddValues"' in client.get("/").text  # the list's tag facet
    overview = client.get("/overview").text
    assert 'href="/tags/OddValues"' in overview and 'href="/work"' in overview


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/tags/Nope", "'Nope' is not a tag type of this BMDB: AgentHeartbeat, AgentStarted"),
        ("/tags/machine_odd_values", "is not a tag type"),
        ("/tags/OddValues?colour=red", "its fields are doc, addr, labels, amount, flag"),
        ("/tags/OddValues?amount__near=1", "'amount__near' is not a field of OddValues"),
        ("/tags/OddValues?amount=ten", "amount (numeric): a number"),
        ("/tags/OddValues?amount=1_000", "a number"),
        ("/tags/OddValues?addr=10.0.0.300", "is not a value of addr"),
        ("/tags/OddValues?doc=%7Bn%7D", "is not a value of doc"),
        ("/tags/OddValues?doc=NaN", "is not a value of doc"),
        ("/tags/OddValues?mood=sad", "one of calm, busy, angry"),
        ("/tags/OddValues?flag__gt=1", "__gt and __lt compare numbers and times"),
        ("/tags/OddValues?raw=ab", "filter it with __isnull"),
        ("/tags/OddValues?seen__lt=2024-W01-1", "an ISO 8601 time"),
        ("/tags/OddValues?note__isnull=maybe", "1 (no value) or 0"),
        ("/tags/OddValues?sort=colour", "sort by machine_id or a field of OddValues"),
        ("/tags/OddValues?sort=amount&after=e30", "is not a page of sort=amount"),
    ],
)
def test_what_reflection_does_not_know_is_a_400_that_says_what_is(client, path, says):
    response = client.get(path)
    assert response.status_code == 400, path
    assert says in html.unescape(response.text)


def test_an_edited_cursor_is_a_400_not_a_failed_cast(client):
    import base64

    after = client.get("/tags/OddValues?sort=seen&limit=1&format=json").json()["next_after"]
    raw = json.loads(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)))
    for key, ties in [("2024-13-45 10:00:00+00", raw[3]), (raw[2], ["not-a-uuid"])]:
        edited = json.dumps([raw[0], raw[1], key, ties]).encode()
        token = base64.urlsafe_b64encode(edited).decode().rstrip("=")
        assert client.get(f"/tags/OddValues?sort=seen&after={token}").status_code == 400


def test_a_tag_table_added_by_a_migration_appears_with_the_schema_refresh(migrated_db_dsn):
    with webug_client(migrated_db_dsn) as client:
        assert client.get("/tags/Rack").status_code == 400
        run_sync(execute(
            migrated_db_dsn,
            machines_sql(1, 2),
            "CREATE TABLE machine_rack (machine_id UUID PRIMARY KEY REFERENCES machines,"
            " rack TEXT, slot INT)",
            f"INSERT INTO machine_rack VALUES ('{mid(2)}', 'r1', 4)",
        ))  # fmt: skip
        refreshed = client.post("/schema/refresh", headers=SAME_ORIGIN, follow_redirects=False)
        assert refreshed.status_code == 303
        assert "Rack" in {t["name"] for t in client.get("/tags?format=json").json()["tags"]}
        page = client.get("/tags/Rack?slot__gt=3&format=json").json()
        assert machine_ids(page["rows"]) == [str(mid(2))]
        assert page["rows"][0]["values"] == {"rack": "r1", "slot": 4}
