"""The schema page and "refresh now" on a real PostgreSQL, including cross-origin refusal."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from tests.support import execute, run_sync, webug_client

UPSTREAM = {
    "AgentHeartbeat": "machine_agent_heartbeat",
    "AgentStarted": "machine_agent_started",
    "HardwareReport": "machine_hardware_report",
    "OSInstallationReport": "machine_os_installation_report",
    "OSInstallationRequest": "machine_os_installation_request",
    "Provided": "machine_provided",
}
SAME_ORIGIN = {"Origin": "http://localhost"}
RACK = "CREATE TABLE machine_rack (machine_id uuid PRIMARY KEY, rack text)"


@pytest.fixture(scope="module")
def client(small_fleet_dsn):
    with webug_client(small_fleet_dsn) as c:
        yield c


def section(page: str, tag: str) -> str:
    start = page.index(f'<section class="tag-type" id="tag-{tag}">')
    return page[start : page.index("</section>", start)]


def field_row(block: str, name: str) -> str:
    start = block.index(f"<b>{name}</b>")
    return block[start : block.index("</tr>", start)]


def test_schema_page_lists_every_tag_type_with_its_fields(client):
    response = client.get("/schema")
    assert response.status_code == 200
    page = response.text
    assert 'id="schema-version">1698288577<' in page
    assert "dirty-banner" not in page
    for name, table in UPSTREAM.items():
        block = section(page, name)
        assert f'<code class="muted">{table}</code>' in block
        assert f'href="/?has={name}"' in block
    provided = section(page, "Provided")
    for field in ("provider", "provider_id", "provider_reservation_id", "provider_ip_address"):
        assert f"<b>{field}</b>" in provided
    assert "<b>machine_id</b>" not in provided  # the key, not a field
    status = field_row(provided, "provider_status")
    assert "enum provider_status" in status and "USER-DEFINED / provider_status" in status
    assert "NULL allowed" in status
    labels = re.findall(r'<span class="enum">(\w+)</span>', status)
    assert labels == [
        "Missing", "Provisioning", "ProvisioningFailedPermanent", "Running", "Stopped", "Unknown",
    ]  # fmt: skip
    provider_id = field_row(provided, "provider_id")
    assert "character varying / varchar" in provider_id and "not null" in provider_id
    generation = field_row(section(page, "OSInstallationRequest"), "generation")
    assert "<td>bigint</td>" in generation and "bigint / int8" in generation
    assert "<td>not null</td>" in generation
    result = field_row(section(page, "OSInstallationReport"), "os_installation_result")
    assert re.findall(r'<span class="enum">(\w+)</span>', result) == ["Success", "Error"]
    # When it was reflected and when the next refresh is due, and the button.
    assert "reflected</th>" in page and "next refresh</th>" in page and "every 1h" in page
    assert '<form class="refresh-form" method="post" action="/schema/refresh"' in page
    assert 'hx-post="/schema/refresh"' in page


def test_schema_json_twin_shape(client):
    data = client.get("/schema", headers={"Accept": "application/json"}).json()
    assert set(data) == {
        "loaded", "version", "dirty", "reflected_at", "next_refresh_at",
        "refresh_interval_seconds", "last_error", "failures", "tag_types", "skipped_tables",
        "refresh_error",
    }  # fmt: skip
    assert (data["loaded"], data["version"], data["dirty"]) == (True, "1698288577", False)
    assert datetime.fromisoformat(data["reflected_at"]) < datetime.fromisoformat(
        data["next_refresh_at"]
    )
    assert data["refresh_interval_seconds"] == 3600 and data["last_error"] is None
    assert {t["name"]: t["table"] for t in data["tag_types"]} == UPSTREAM
    provided = next(t for t in data["tag_types"] if t["name"] == "Provided")
    assert provided["machines_url"] == "/?has=Provided"
    status = next(f for f in provided["fields"] if f["name"] == "provider_status")
    assert status == {
        "name": "provider_status",
        "data_type": "USER-DEFINED",
        "udt_name": "provider_status",
        "human_type": "enum provider_status",
        "nullable": True,
        "is_array": False,
        "enum_values": [
            "Missing", "Provisioning", "ProvisioningFailedPermanent", "Running", "Stopped",
            "Unknown",
        ],
    }  # fmt: skip
    assert "SchemaJSON" in client.get("/openapi.json").json()["components"]["schemas"]


def refresh(client, headers: dict[str, str] | None = None, **kw):
    return client.post("/schema/refresh", headers=headers or {}, follow_redirects=False, **kw)


def test_refresh_now_picks_up_a_tag_table_created_after_start(migrated_db_dsn):
    with webug_client(migrated_db_dsn) as client:
        before = client.get("/schema?format=json").json()
        run_sync(execute(migrated_db_dsn, RACK))
        assert 'id="tag-Rack"' not in client.get("/schema").text  # cached until refreshed
        response = refresh(client, SAME_ORIGIN)
        assert response.status_code == 303 and response.headers["location"] == "/schema"
        page = client.get("/schema").text
        rack = section(page, "Rack")
        assert "machine_rack" in rack and "<b>rack</b>" in rack and "text / text" in rack
        after = client.get("/schema?format=json").json()
        assert after["reflected_at"] > before["reflected_at"]
        assert "Rack" in {t["name"] for t in after["tag_types"]}
        # The machine list knows the new tag too: a column, facet and a valid filter.
        listing = client.get("/")
        assert listing.status_code == 200 and 'href="/?has=Rack&amp;limit=100"' in listing.text
        assert client.get("/?has=Rack").status_code == 200


def test_dirty_flag_shows_a_red_banner_after_refresh(migrated_db_dsn):
    with webug_client(migrated_db_dsn) as client:
        run_sync(execute(migrated_db_dsn, "UPDATE schema_migrations SET dirty = true"))
        assert refresh(client, SAME_ORIGIN).status_code == 303
        page = client.get("/schema").text
        assert '<div class="dirty-banner" role="alert" id="dirty-banner">' in page
        assert "SCHEMA DIRTY" in page and "a migration failed half-way" in page
        assert client.get("/schema?format=json").json()["dirty"] is True
        assert 'class="badge bad" title="a migration failed half-way">SCHEMA DIRTY' in (
            client.get("/").text
        )  # and the header says so on every page


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "https://localhost"},  # another scheme is another origin
        {"Origin": "http://localhost:8080"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Referer": "http://evil.example/page"},
    ],
)
def test_cross_origin_refresh_is_refused_and_does_not_refresh(migrated_db_dsn, headers):
    with webug_client(migrated_db_dsn) as client:
        run_sync(execute(migrated_db_dsn, RACK))
        before = client.get("/schema?format=json").json()["reflected_at"]
        response = refresh(client, headers)
        assert response.status_code == 403
        assert "Cross-origin request refused" in response.text and "<h1>" in response.text
        after = client.get("/schema?format=json").json()
        assert after["reflected_at"] == before
        assert "Rack" not in {t["name"] for t in after["tag_types"]}
        as_json = refresh(client, {**headers, "Accept": "application/json"})
        assert as_json.status_code == 403 and as_json.json()["status"] == 403


@pytest.mark.parametrize(
    "headers",
    [
        SAME_ORIGIN,
        {"Origin": "http://LOCALHOST:80"},  # same origin, spelled differently
        {"Sec-Fetch-Site": "same-origin", "Referer": "http://localhost/schema"},
        {},  # curl: no browser, no ambient credentials to abuse
    ],
)
def test_same_origin_refresh_redirects_back_to_the_schema(client, headers):
    response = refresh(client, headers)
    assert response.status_code == 303 and response.headers["location"] == "/schema"


def test_refresh_with_htmx_follows_the_redirect_to_the_page(client):
    response = client.post("/schema/refresh", headers={**SAME_ORIGIN, "HX-Request": "true"})
    assert response.status_code == 200 and '<div id="schema-body">' in response.text
    assert client.get("/schema/refresh").status_code == 405  # GET never refreshes


def test_concurrent_refreshes_share_one_reflection_and_a_recent_one_is_reused(
    migrated_db_dsn, monkeypatch
):
    import app.bmdb.schema_cache

    reflections = []
    reflect = app.bmdb.schema_cache.reflect

    async def slow_reflect(conn):
        reflections.append(conn)
        await asyncio.sleep(0.5)  # every POST below arrives while this one runs
        return await reflect(conn)

    with webug_client(migrated_db_dsn) as client:
        started = client.get("/schema?format=json").json()["reflected_at"]
        monkeypatch.setattr(app.bmdb.schema_cache, "reflect", slow_reflect)
        run_sync(execute(migrated_db_dsn, RACK))
        with ThreadPoolExecutor(10) as clients:
            answers = list(clients.map(lambda _: refresh(client, SAME_ORIGIN), range(10)))
        assert [a.status_code for a in answers] == [303] * 10
        assert len(reflections) == 1  # not ten
        after = client.get("/schema?format=json").json()
        assert after["reflected_at"] > started and "Rack" in {t["name"] for t in after["tag_types"]}
        # Within the minimum interval a refresh answers with that reflection, and says so.
        assert refresh(client, SAME_ORIGIN).status_code == 303
        assert len(reflections) == 1
        page = client.get("/schema").text
        assert client.get("/schema?format=json").json()["reflected_at"] == after["reflected_at"]
        assert "at most once every 5s" in page
