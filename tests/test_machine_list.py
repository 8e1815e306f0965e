"""The machine list on a real PostgreSQL: filters, facets, keyset pages, fragments, errors."""

from __future__ import annotations

import html
import json
import re
import time
from datetime import datetime
from urllib.parse import quote

import asyncpg
import pytest

from app.bmdb import machines as bmdb
from app.bmdb.connection import Database
from app.bmdb.filters import MAX_TAG_FILTERS, FilterError, MachineFilters, build_where
from app.bmdb.reflection import reflect
from app.bmdb.workflows import compiled
from app.config import Settings
from tests.fleet import MACHINES, mid
from tests.support import execute, run_sync, webug_client

ROW = re.compile(r'<tr id="m-([0-9a-f-]{36})"')


@pytest.fixture(scope="module")
def client(small_fleet_dsn):
    with webug_client(small_fleet_dsn) as c:
        yield c


def listed(client, query: str = "") -> list[str]:
    response = client.get("/?" + query)
    assert response.status_code == 200, response.text
    return ROW.findall(response.text)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("provider=Equinix", [1, 3]),
        ("provider=Lumen", [2]),
        ("status=Running", [1]),
        ("status=NULL", [3]),
        ("location=fr5", [1, 3]),
        ("has=Provided", [1, 2, 3]),
        ("has=AgentStarted&has=Provided", [1]),
        ("lacks=Provided&limit=3", [4, 5, 6]),
        ("has=Provided&lacks=AgentStarted", [2, 3]),
        ("work=ShepherdAccess", [1]),
        ("work=ShepherdAgentStart", [2]),
        ("backoff=ShepherdAccess", [2]),
        ("backoff=ShepherdRecovery", []),  # expired backoffs are not active
        ("stale=1", [2]),
        ("q=00000003", [3]),
        ("q=0000000", list(range(1, 13))),  # a machine ID prefix
        ("q=eq-", [1, 3]),  # provider ID prefix
        ("q=lumen-0002", [2]),
        ("q=%25", []),  # LIKE wildcards are literal
        ("provider=Equinix&status=Running&work=ShepherdAccess", [1]),
    ],
)
def test_each_filter_selects_exactly_its_machines(client, query, expected):
    assert listed(client, query) == [str(mid(n)) for n in expected]


def test_facets_count_the_filtered_machines_and_link_their_filter(client):
    page = client.get("/?provider=Equinix").text
    # Tag facet: 2 Equinix machines have Provided, 1 has AgentStarted.
    assert re.search(r'has=Provided&amp;limit=100"[^>]*>2</a>', page)
    assert re.search(r'has=AgentStarted&amp;limit=100"[^>]*>1</a>', page)
    assert re.search(
        r'provider=Equinix&amp;status=Running&amp;limit=100">Running</a> '
        r'<span class="n">1</span>',
        page,
    )
    assert re.search(r'>NULL</a> <span class="n">1</span>', page)
    whole = client.get("/").text
    assert re.search(r'>Lumen</a> <span class="n">1</span>', whole)
    assert re.search(r'>ShepherdAgentStart</a> <span class="n">1</span>', whole)
    assert re.search(
        r'data-tab="stale" href="/\?stale=1&amp;limit=100">stale work <span class="n">1</span>',
        whole,
    )
    # Active filters are shown with a link that removes them.
    assert 'href="/?limit=100" title="remove this filter">provider: Equinix' in page


def test_keyset_pagination_walks_the_fleet_without_gaps(client):
    seen, query = [], "limit=5"
    for _ in range(MACHINES):
        page = client.get("/?" + query).text
        seen += ROW.findall(page)
        assert f"of {MACHINES}" in page
        nxt = re.search(r'rel="next" href="/\?([^"]+)"', page)
        if not nxt:
            break
        query = nxt.group(1).replace("&amp;", "&")
    assert seen == [str(mid(n)) for n in range(1, MACHINES + 1)]
    assert listed(client, f"after={mid(MACHINES)}") == []


def _row(page: str, n: int) -> str:
    row = page[page.index(f'id="m-{mid(n)}"') :]
    return row[: row.index("</tr>")]


def test_stale_work_and_backoffs_are_marked_and_escaped(client):
    page = client.get("/").text
    row2 = _row(page, 2)
    stale = '<span class="badge bad">ShepherdAgentStart</span> <span class="wstate stale">stale'
    assert stale in row2
    assert 'class="badge warn">ShepherdAccess <span class="countdown"><time' in row2  # active
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # full cause on hover, inert
    assert "old failure" not in _row(page, 3)  # an expired backoff is not in the row


def test_htmx_poll_gets_the_table_fragment_with_filters_and_page_kept(client):
    full = client.get(f"/?provider=Equinix&after={mid(1)}&limit=5")
    assert full.text.startswith("<!doctype html>") and "Tags</h4>" in full.text
    fragment = client.get(
        f"/?provider=Equinix&after={mid(1)}&limit=5", headers={"HX-Request": "true"}
    )
    assert fragment.status_code == 200
    assert fragment.text.startswith('<div id="machine-table"')
    assert "<html" not in fragment.text and "Tags</h4>" not in fragment.text
    assert (
        f'hx-get="/?provider=Equinix&amp;after={mid(1)}&amp;limit=5&amp;every=5"' in fragment.text
    )
    assert "every 5s [document.visibilityState === 'visible']" in fragment.text
    assert ROW.findall(fragment.text) == [str(mid(3))]


def test_paused_table_is_served_without_its_poll_trigger(client):
    fragment = client.get("/?live=0", headers={"HX-Request": "true"}).text
    assert "hx-trigger" not in fragment.split("<table")[0]
    assert "resume live updates" in fragment


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        ("limit=0", 400, "limit"),
        ("limit=abc", 400, "limit"),
        ("after=not-a-uuid", 400, "after"),
        ("has=NoSuchTag", 400, "no tag type"),
        ("every=0", 400, "every"),
        ("q=" + "a" * 500, 400, "q"),
        ("has=Provided&lacks=Provided", 400, "together match no machine"),
        ("has=Provided&lacks=machine_provided", 400, "together match no machine"),
        ("work=a%00b", 400, "contains a NUL character"),  # PostgreSQL refuses it
        ("has=Provided%00", 400, "contains a NUL character"),
    ],
)
def test_bad_list_parameters_get_a_clear_400_page(client, query, status, says):
    response = client.get("/?" + query)
    assert response.status_code == status
    assert says in response.text and "Traceback" not in response.text
    assert "<h1>" in response.text


# heartbeat= and installation= (the small fleet has neither): machines 1..8, known answers.
HEARTBEATS_AND_INSTALLATIONS = [
    """INSERT INTO machines SELECT ('0000000' || g || '-0000-4000-8000-000000000000')::uuid, now()
       FROM generate_series(1, 8) g""",
    f"""INSERT INTO machine_agent_started VALUES
        ('{mid(1)}', now(), '\\x01'), ('{mid(2)}', now(), '\\x02'), ('{mid(3)}', now(), '\\x03')""",
    f"""INSERT INTO machine_agent_heartbeat VALUES
        ('{mid(1)}', now() - interval '1 minute'), ('{mid(2)}', now() - interval '30 minutes'),
        ('{mid(4)}', now() - interval '9 minutes 50 seconds'),
        ('{mid(5)}', now() - interval '10 minutes 10 seconds')""",
    f"""INSERT INTO machine_os_installation_request VALUES
        ('{mid(1)}', 2, '\\x00'), ('{mid(2)}', 2, '\\x00'), ('{mid(3)}', 2, '\\x00'),
        ('{mid(4)}', 2, '\\x00'), ('{mid(5)}', 1, '\\x00'), ('{mid(7)}', 5, '\\x00')""",
    f"""INSERT INTO machine_os_installation_report VALUES
        ('{mid(2)}', 1, 'Success', '\\x00'), ('{mid(3)}', 2, 'Success', '\\x00'),
        ('{mid(4)}', 3, 'Error', '\\x00'), ('{mid(5)}', 1, 'Error', '\\x00'),
        ('{mid(6)}', 1, 'Success', '\\x00'), ('{mid(7)}', 4, 'Error', '\\x00')""",
]


def test_heartbeat_and_installation_filters_select_exactly_their_machines(migrated_db_dsn):

    run_sync(execute(migrated_db_dsn, *HEARTBEATS_AND_INSTALLATIONS))
    expected = {
        "heartbeat=recent": [1, 4],  # within 10 minutes
        "heartbeat=stale": [2, 5],  # older; mid3 (started, never heartbeated) is neither
        "has=AgentStarted&lacks=AgentHeartbeat": [3],
        # A request is answered by a report of the same or a newer generation.
        "installation=pending": [1, 2, 7],  # none, older (gen 1 < 2), older Error (4 < 5)
        "installation=complete": [3],  # same generation, Success
        "installation=failed": [4, 5],  # newer generation Error, same generation Error
        "has=OSInstallationReport&lacks=OSInstallationRequest": [6],  # in none of the three
        "heartbeat=recent&installation=pending": [1],
        "heartbeat=stale&installation=failed": [5],
    }
    with webug_client(migrated_db_dsn) as c:
        for query, machines in expected.items():
            assert listed(c, query) == [str(mid(n)) for n in machines], query
        page = c.get("/?heartbeat=stale&installation=failed").text
        assert (
            'href="/?installation=failed&amp;limit=100" title="remove this filter">heartbeat'
            in page
        )
        assert '<input type="hidden" name="installation" value="failed">' in page
        data = c.get("/?installation=pending&format=json").json()
        assert data["filters"] == {"installation": ["pending"]} and data["total"] == 3


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("heartbeat=soon", "heartbeat"),
        ("heartbeat=", "heartbeat"),
        ("installation=done", "installation"),
    ],
)
def test_bad_heartbeat_or_installation_value_is_a_400(client, query, says):
    response = client.get("/?" + query)
    assert response.status_code == 400 and says in response.text
    assert "recent" in response.text or "pending" in response.text  # says what is allowed


def test_heartbeat_and_installation_filters_need_their_tables(migrated_db_dsn):

    run_sync(
        execute(
            migrated_db_dsn,
            "DROP TABLE machine_agent_heartbeat",
            "ALTER TABLE machine_os_installation_report DROP COLUMN os_installation_result",
        )
    )
    with webug_client(migrated_db_dsn) as c:
        response = c.get("/?heartbeat=recent")
        assert response.status_code == 400
        assert "machine_agent_heartbeat.agent_heartbeat_at" in response.text
        failed = c.get("/?installation=failed")
        assert failed.status_code == 400 and "os_installation_result" in failed.text
        assert c.get("/?installation=pending").status_code == 200


def test_totals_and_facets_are_counted_once_then_reused_by_polls(migrated_db_dsn):
    from tests.fleet import load_small_fleet

    load_small_fleet(migrated_db_dsn)
    with webug_client(migrated_db_dsn) as client:
        first = client.get("/?location=fr5&format=json").json()
        assert first["total"] == 2 and first["facets"]["provider"] == {"Equinix": 2}
        assert any("count(*)" in q["sql"] for q in first["queries"])
        again = client.get("/?location=fr5&format=json").json()
        assert again["total"] == 2
        assert not any("count(*)" in q["sql"] for q in again["queries"])  # from the cache
        assert again["counted_at"] == first["counted_at"]  # as of when they were counted
        page = client.get("/?location=fr5").text
        assert "cached up to 10 s" in page
        note = re.search(r'id="counts-note">Exact counts as of <time datetime="([^"]+)"', page)
        assert datetime.fromisoformat(note[1]) == datetime.fromisoformat(first["counted_at"])
    with webug_client(migrated_db_dsn, count_cache_seconds=0) as client:
        for _ in range(2):  # WEBUG_COUNT_CACHE_SECONDS=0: every request counts
            response = client.get("/?location=fr5&format=json").json()
            assert any("count(*)" in q["sql"] for q in response["queries"])


def test_enum_filters_match_labels_reflected_or_added_since(migrated_db_dsn):
    def add_provider(label: str, machine: int) -> None:
        quoted = label.replace("'", "''")
        run_sync(
            execute(
                migrated_db_dsn,
                f"ALTER TYPE provider ADD VALUE '{quoted}'",
                f"INSERT INTO machines VALUES ('{mid(machine)}', now())",
                f"INSERT INTO machine_provided (machine_id, provider, provider_id)"
                f" VALUES ('{mid(machine)}', '{quoted}', 'x-{machine}')",
            )
        )

    add_provider("O'Brien \\ Sons", 1)  # reflected at start: compared as that enum value
    with webug_client(migrated_db_dsn) as client:
        assert listed(client, "provider=O%27Brien+%5C+Sons") == [str(mid(1))]
        add_provider("Hetzner", 2)  # not reflected yet: the first URL naming it reflects
        assert listed(client, "provider=Hetzner") == [str(mid(2))]
        assert listed(client, "provider=Hetzner&provider=Equinix") == [str(mid(2))]


@pytest.mark.parametrize(
    ("query", "labels"),
    [
        ("provider=Nope", "Equinix, Lumen, None"),
        ("provider=equinix", "Equinix, Lumen, None"),
        ("provider=Lumen&provider=Nope", "Equinix, Lumen, None"),
        ("status=Gone", "Missing, Provisioning, ProvisioningFailedPermanent, Running, Stopped,"
         " Unknown, NULL"),
        ("work=ShepherdNope", "UnitTest1, UnitTest2, ShepherdAccess, ShepherdAgentStart,"
         " ShepherdRecovery"),
        ("backoff=Nope", "UnitTest1, UnitTest2, ShepherdAccess"),
    ],
)
def test_a_value_no_enum_label_matches_is_a_400_listing_the_labels(client, query, labels):
    """Before, /?provider=Foo said "0 matching"; now it says what the values can be."""
    response = client.get(f"/?{query}")
    assert response.status_code == 400
    value = query.rsplit("=", 1)[1]
    said = html.unescape(response.text)
    assert f"={value!r} is not a label of its enum; they are: {labels}" in said


def test_the_history_filter_takes_process_labels(client):
    assert client.get(f"/machine/{mid(2)}/history?process=ShepherdAccess").status_code == 200
    response = client.get(f"/machine/{mid(2)}/history?process=Shepherd")
    assert response.status_code == 400
    assert "process=&#39;Shepherd&#39; is not a label of its enum; they are: UnitTest1" in (
        response.text
    )


def test_a_filter_given_again_is_one_filter_in_the_url_the_chips_and_the_sql(client):
    repeated = "&".join(["has=Provided"] * 25 + ["lacks=AgentStarted"] * 4)
    data = client.get(f"/?{repeated}&format=json").json()
    assert data["filters"] == {"has": ["Provided"], "lacks": ["AgentStarted"]}
    assert [m["machine_id"] for m in data["machines"]] == [str(mid(2)), str(mid(3))]
    page_query = next(q["sql"] for q in data["queries"] if "ORDER BY m.machine_id" in q["sql"])
    assert page_query.count("EXISTS") == 2
    page = client.get(f"/?{repeated}").text
    assert page.count('title="remove this filter">has: Provided') == 1
    assert 'href="/?lacks=AgentStarted&amp;limit=100" title="remove this filter">has' in page


def test_an_enum_filter_given_several_values_lists_machines_with_any_with_a_chip_each(client):
    """status=Running&status=Missing: machine 1 (Running) and machine 2 (Missing); before,
    the last value won and the chip said 'status: Missing' alone."""
    either = "status=Running&status=Missing"
    data = client.get(f"/?{either}&format=json").json()
    assert data["filters"] == {"status": ["Running", "Missing"]}
    assert [m["machine_id"] for m in data["machines"]] == [str(mid(1)), str(mid(2))]
    page = client.get(f"/?{either}").text
    assert ROW.findall(page) == [str(mid(1)), str(mid(2))]
    # A chip each; removing one keeps the other.
    chip = 'href="/?status={}&amp;limit=100" title="remove this filter">status: {}'
    assert chip.format("Missing", "Running") in page and chip.format("Running", "Missing") in page
    assert listed(client, "provider=Equinix&provider=Lumen&status=NULL&status=Running") == [
        str(mid(1)), str(mid(3))
    ]  # fmt: skip
    assert listed(client, "work=ShepherdAccess&work=ShepherdAgentStart") == [
        str(mid(1)), str(mid(2))
    ]  # fmt: skip
    assert listed(client, "backoff=ShepherdAccess&backoff=ShepherdRecovery") == [str(mid(2))]


def test_a_filter_that_takes_one_value_given_two_is_a_400_never_one_dropped(client):
    response = client.get("/?location=fr5&location=ny7")
    assert response.status_code == 400
    assert "location is given 2 times (&#39;fr5&#39;, &#39;ny7&#39;); it takes one value" in (
        response.text
    )
    assert "Repeatable here: provider, status, has, lacks, work, backoff." in response.text
    assert listed(client, "location=fr5&location=fr5") == [str(mid(1)), str(mid(3))]


def test_adding_has_replaces_lacks_of_the_same_tag_and_back():
    lacking = MachineFilters(lacks=("Provided",), provider="Lumen")
    assert lacking.with_("has", "Provided") == MachineFilters(has=("Provided",), provider="Lumen")
    assert lacking.with_("has", "Provided").with_("lacks", "Provided") == lacking


async def planning_ms(conn: asyncpg.Connection, sql: str, params: list) -> float:
    """How long PostgreSQL takes to plan `sql` (EXPLAIN: nothing is executed)."""
    plan = await conn.fetchval("EXPLAIN (FORMAT JSON, SUMMARY) " + sql, *params)
    return json.loads(plan)[0]["Planning Time"]


async def test_no_filter_combination_spends_long_planning(migrated_db_dsn):
    """Every filter at once, tags repeated, on a BMDB with 30 more tag types than upstream:
    each statement of the list page plans in milliseconds, not seconds (before: 25 repeats
    of has=Provided planned for 2.9 s at 100k machines, and hit the 5 s timeout here)."""
    from tests.fleet import SMALL_FLEET

    await execute(
        migrated_db_dsn,
        *SMALL_FLEET,
        *(
            f"CREATE TABLE machine_x{i} (machine_id uuid PRIMARY KEY REFERENCES machines, v text)"
            for i in range(30)
        ),
        "ANALYZE",
    )
    database = Database(migrated_db_dsn, Settings(dsn=migrated_db_dsn))
    await database.open()
    try:
        async with database.connection() as conn:
            schema = await reflect(conn)
            names = [t.name for t in schema.tag_types]
            assert len(names) == 36
            others = [n for n in names if n != "Provided"][: MAX_TAG_FILTERS - 1]
            worst = MachineFilters(
                has=("Provided",) * 25 + tuple(others[::2]),
                lacks=tuple(others[1::2]) * 3,
                provider="Equinix",
                status="Running",
                location="fr5",
                work="ShepherdAccess",
                backoff="ShepherdAccess",
                stale=True,
                heartbeat="recent",
                installation="failed",
                q="00",
            )
            where = build_where(worst, schema)
            layout = bmdb.list_layout(schema, None)
            page = bmdb.list_statement(
                layout, where, after=None, limit=101, with_total=True, known_ptag=None
            )
            facets = bmdb.facets_statement(schema, where, compiled(schema))
            # The list's two statements: the page with its total, and the facets.
            planned = [await planning_ms(conn, sql, params) for sql, params in (page, facets)]
            assert max(planned) < 250, f"planning took {planned} ms"
            with pytest.raises(FilterError, match=f"at most {MAX_TAG_FILTERS}"):
                build_where(MachineFilters(has=tuple(names[: MAX_TAG_FILTERS + 1])), schema)
    finally:
        await database.close()


# With backslash escapes honoured, `\'` ends a literal that quote_literal's doubling meant
# to continue: this label, spliced as '...', ran pg_sleep for every Provided row.
HOSTILE = "x\\' OR pg_sleep(3) IS NULL OR ($1::uuid, $2::int) IS NULL)--"


async def _add_provider(conn: asyncpg.Connection, label: str, machine: int) -> None:
    await conn.execute(
        await conn.fetchval("SELECT format('ALTER TYPE provider ADD VALUE %L', $1::text)", label)
    )
    await conn.execute("INSERT INTO machines VALUES ($1, now())", mid(machine))
    await conn.execute(
        "INSERT INTO machine_provided (machine_id, provider, provider_id)"
        " VALUES ($1, $2::text::provider, $3)",
        mid(machine),
        label,
        f"x-{machine}",
    )


def test_a_hostile_enum_label_is_a_value_not_sql(migrated_db_dsn):
    async def setup(*labels: tuple[str, int]) -> None:
        conn = await asyncpg.connect(migrated_db_dsn)
        try:
            await conn.execute(
                "DO $$ BEGIN EXECUTE format("
                "'ALTER DATABASE %I SET standard_conforming_strings = off', current_database());"
                " END $$"
            )
            for label, machine in labels:
                await _add_provider(conn, label, machine)
        finally:
            await conn.close()

    # An operator's database where backslashes escape, an enum with a label ending in a
    # quote and one that would close the literal after it.
    run_sync(setup(("x'", 1), (HOSTILE, 2)))
    with webug_client(migrated_db_dsn, statement_timeout_ms=2000) as client:
        started = time.perf_counter()
        assert listed(client, "provider=" + quote(HOSTILE)) == [str(mid(2))]
        assert time.perf_counter() - started < 1.5  # no pg_sleep(3), no timeout
        assert listed(client, "provider=" + quote("x'")) == [str(mid(1))]
        # A label added after reflection is matched at run time, bound as well.
        later = HOSTILE.replace("x", "y", 1)
        run_sync(setup((later, 3)))
        started = time.perf_counter()
        assert listed(client, "provider=" + quote(later)) == [str(mid(3))]
        assert time.perf_counter() - started < 1.5


async def test_the_list_is_planned_for_each_provider_not_once_for_all(seeded_db_dsn):
    """Enum labels are bound: each run still gets a plan estimated from its values (no
    generic plan after five runs), so a rare provider is not planned like a common one."""
    database = Database(seeded_db_dsn, Settings(dsn=seeded_db_dsn))
    await database.open()
    try:
        async with database.connection(plan_per_values=True) as conn:
            schema = await reflect(conn)
            counts = dict(
                await conn.fetch("SELECT provider::text, count(*) FROM machine_provided GROUP BY 1")
            )
            common, rare = max(counts, key=counts.get), min(counts, key=counts.get)
            assert counts[common] > 5 * counts[rare]
            wheres = {p: build_where(MachineFilters(provider=p), schema) for p in (common, rare)}
            assert wheres[common].sql == wheres[rare].sql  # one statement, the label bound

            async def estimate(provider: str) -> float:
                where = wheres[provider]
                sql = f"EXPLAIN (FORMAT JSON) SELECT count(*) FROM machines m WHERE {where.sql}"
                plan = json.loads(await conn.fetchval(sql, *where.params))[0]["Plan"]
                return plan["Plans"][0]["Plan Rows"]

            assert await estimate(common) > 2 * await estimate(rare)
            count = f"SELECT count(*) FROM machines m WHERE {wheres[common].sql}"
            for _ in range(4):
                for provider in (common, rare):
                    await conn.fetchval(count, *wheres[provider].params)
            plans = await conn.fetchrow(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement = $1",
                count,
            )
            assert tuple(plans) == (0, 8)
    finally:
        await database.close()
