"""The list's state tabs and the stuck list's blockers on a real PostgreSQL, on a fleet of
every combination (tests/test_fleet_stats.py's: tags, heartbeats, installations, work of
alive and expired sessions, backoffs active and expired): each tab's count is how many
machines its link lists, under other filters too, on a tab's own view as well; the stuck
machines add up by blocker; the JSON twin carries them; a page fetched twice is the same."""

from __future__ import annotations

import re

import pytest

from app.bmdb.machine_states import BLOCKER_NAMES, TAB_NAMES
from tests.support import cloned_database, webug_client
from tests.test_fleet_stats import KNOWN_STATES


@pytest.fixture(scope="module")
def client(pg_server_dsn, migrated_template):
    with (
        cloned_database(pg_server_dsn, migrated_template, *KNOWN_STATES) as dsn,
        webug_client(dsn) as c,
    ):
        yield c


def page(client, query: str) -> dict:
    response = client.get(f"/?{query}&limit=5000&format=json")
    assert response.status_code == 200, response.text
    return response.json()


def listed(client, query: str) -> set[str]:
    return {m["machine_id"] for m in page(client, query)["machines"]}


@pytest.mark.parametrize("others", ["", "provider=Equinix", "has=AgentStarted&heartbeat=stale"])
def test_each_tab_counts_the_machines_its_link_lists(client, others):
    tabs = page(client, others)["facets"]["tabs"]
    assert set(tabs) == {"all", *TAB_NAMES}
    assert tabs["all"] == len(listed(client, others))
    for name in TAB_NAMES:
        assert tabs[name] == len(listed(client, f"{others}&{name}=1")), name
    # On a tab's own view the tabs are the same counts: counted under the other filters.
    for name in ("stuck", "working", "unmanaged"):
        assert page(client, f"{others}&{name}=1")["facets"]["tabs"] == tabs, name


def test_the_tabs_cover_what_they_say(client):
    every = listed(client, "")
    assert listed(client, "stale=1") and listed(client, "working=1")
    assert listed(client, "stuck=1") and listed(client, "unmanaged=1")
    # Stuck, unmanaged, eligible and working never overlap: a stuck machine is managed,
    # nothing acts on it (no alive work) and no workflow will (none eligible).
    for a, b in [("stuck", "unmanaged"), ("stuck", "working"), ("stuck", "eligible")]:
        assert not listed(client, f"{a}=1") & listed(client, f"{b}=1"), (a, b)
    # Unmanaged: no Provided tag and no installation request, exactly.
    assert listed(client, "unmanaged=1") == listed(
        client, "lacks=Provided&lacks=OSInstallationRequest"
    )
    # Working or with stale work: every machine with work, of any process.
    processes = page(client, "")["facets"]["work"]
    with_work = set().union(*(listed(client, f"work={p}") for p in processes))
    assert listed(client, "working=1") | listed(client, "stale=1") == with_work < every


def test_the_stuck_machines_add_up_by_blocker_and_each_blocker_lists_its_own(client):
    stuck = page(client, "stuck=1")
    facets = stuck["facets"]
    assert sum(facets["stuck_by"].values()) == facets["tabs"]["stuck"] == stuck["total"]
    assert set(facets["stuck_by"]) == set(BLOCKER_NAMES)
    by_row = {}
    for m in stuck["machines"]:
        by_row.setdefault(m["blocker"], set()).add(m["machine_id"])
    for blocker in BLOCKER_NAMES:
        machines = listed(client, f"blocker={blocker}")
        assert facets["stuck_by"][blocker] == len(machines), blocker
        assert machines == listed(client, f"stuck=1&blocker={blocker}")
        assert machines == by_row.get(blocker, set()), blocker  # each row says its own
    assert facets["stuck_by"]["stale_work"] > 0 and facets["stuck_by"]["failed_installation"] > 0
    # Stale work comes first: a stuck machine with a failed installation and stale work
    # is counted under stale_work.
    failed_too = listed(client, "stuck=1&stale=1&installation=failed")
    assert failed_too and failed_too <= listed(client, "blocker=stale_work")
    # Rows off the workflow views carry no blocker (the view did not read it).
    assert {m["blocker"] for m in page(client, "stale=1")["machines"]} == {None}


def test_the_page_shows_the_tabs_and_the_stuck_groups_as_links(client):
    text = client.get("/?provider=Lumen&stuck=1").text
    tabs = page(client, "provider=Lumen")["facets"]["tabs"]
    assert f'<b class="tab current" data-tab="stuck" aria-current="page">stuck <span class="n">{tabs["stuck"]}</span></b>' in text  # noqa: E501
    assert re.search(
        rf'data-tab="working" href="/\?provider=Lumen&amp;working=1&amp;limit=100">working'
        rf' <span class="n">{tabs["working"]}</span>',
        text,
    )
    assert 'data-tab="all" href="/?provider=Lumen&amp;limit=100"' in text
    groups = text[text.index('id="stuck-groups"') :]
    groups = groups[: groups.index("</p>")]
    by = page(client, "provider=Lumen&stuck=1")["facets"]["stuck_by"]
    for blocker, n in by.items():
        if n:
            assert (
                f'data-blocker="{blocker}" href="/?provider=Lumen&amp;stuck=1&amp;blocker='
                f'{blocker}&amp;limit=100">'
            ) in groups
    # The tab stands for its filter: no chip repeats it; the other filter keeps its own.
    chips = re.findall(r'class="chip" href="[^"]*" title="remove this filter">([^<]*)<', text)
    assert chips == ["provider: Lumen ×"]


def test_a_tab_view_is_the_same_bytes_fetched_twice(client):
    def body(query: str) -> str:
        text = client.get(f"/?{query}").text
        return text[: text.index('<footer class="page-footer">')]

    for query in ("stuck=1", "working=1", "eligible=1&provider=Equinix"):
        assert body(query) == body(query), query


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("blocker=bogus", "blocker"),
        ("stuck=maybe", "stuck"),
        ("unmanaged=2", "unmanaged"),
    ],
)
def test_bad_tab_values_are_a_clear_400(client, query, says):
    response = client.get(f"/?{query}")
    assert response.status_code == 400, response.status_code
    assert says in response.text and "Traceback" not in response.text
