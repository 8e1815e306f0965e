"""deploy/: the alert rules pass `promtool check rules` and their unit tests (`promtool test
rules`); each alert links to the webug list of the machines it is about; the Grafana
dashboard is JSON that reads only gauges webug exports and links back to webug."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from app.fleet.collector import meta_families
from app.fleet.gauges import Family
from tests.support import webug_client
from tests.test_fleet_stats import N, collected, known_fleet, query  # noqa: F401

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
RULES = DEPLOY / "prometheus" / "webug-alerts.yaml"
RULE_TESTS = DEPLOY / "prometheus" / "webug-alerts.test.yaml"
DASHBOARD = DEPLOY / "grafana" / "webug-fleet.json"
URL_TEMPLATE = (
    '{{ with query "max by (url) (webug_external_url_info)" }}'
    '{{ . | first | label "url" }}{{ end }}'
)


def promtool() -> str:
    """promtool's path. Root (where `make install` installs Debian's prometheus package)
    and CI must have it; anyone else without it gets the tests skipped, saying why."""
    found = shutil.which("promtool")
    if found:
        return found
    message = (
        "promtool not found: run `make install` as root (it installs Debian's prometheus"
        " package, which ships promtool), or install that package"
    )
    if os.geteuid() == 0 or os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip("ALERT RULE TESTS SKIPPED: " + message)


def test_promtool_checks_the_rules():
    done = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 5 rules found" in done.stdout


def test_promtool_runs_the_rules_unit_tests():
    # Two replicas exporting the same gauges: each alert fires once, with one's value, and
    # links to WEBUG_EXTERNAL_URL (deploy/prometheus/webug-alerts.test.yaml).
    done = subprocess.run([promtool(), "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def alerts() -> dict[str, dict]:
    return {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}


def webug_link(alert: str) -> str:
    """The path and query an alert links to (after webug's address)."""
    link = alerts()[alert]["annotations"]["webug"]
    assert link.startswith(URL_TEMPLATE), alert
    return link.removeprefix(URL_TEMPLATE)


def test_every_alert_links_to_webug_at_its_external_url():
    assert set(alerts()) == {
        "WebugMachinesDueForRecovery", "WebugStaleWork", "WebugHeartbeatsDropped",
        "WebugRetryWaveComing", "WebugFleetStatsStale",
    }  # fmt: skip
    for alert in alerts():
        assert webug_link(alert).startswith("/"), alert


@pytest.fixture(scope="module")
def client(known_fleet):  # noqa: F811
    with webug_client(
        known_fleet, fleet_stats_seconds=3600, external_url="https://webug.example.com/"
    ) as client:
        yield client


def _total(client, link: str) -> int:
    return client.get(f"{link}&format=json").json()["total"]


def test_the_links_list_the_machines_concerned(client, known_fleet):  # noqa: F811
    found = collected(client)
    assert found["webug_external_url_info"] == {(("url", "https://webug.example.com"),): 1}
    recovery = webug_link("WebugMachinesDueForRecovery")
    gauge = found["webug_fleet_workflow_machines"]
    assert _total(client, recovery) == gauge[(("state", "eligible"), ("workflow", "AgentRecovery"))]
    # The stale-work alert counts work rows; its link lists the machines that have them.
    stale = """SELECT count(*), count(DISTINCT w.machine_id) FROM work w
               JOIN sessions s ON s.session_id = w.session_id WHERE s.session_deadline <= now()"""
    ((rows, machines),) = query(known_fleet, stale)
    assert sum(found["webug_fleet_stale_work"].values()) == rows
    assert _total(client, webug_link("WebugStaleWork")) == machines > 0
    # Silent machines, the most recently silent first: those a drop of heartbeats added.
    silent = client.get(webug_link("WebugHeartbeatsDropped") + "&limit=500&format=json").json()
    ((expected,),) = query(known_fleet, "SELECT count(*) FROM machine_agent_heartbeat"
                           " WHERE agent_heartbeat_at <= now() - interval '10 minutes'")
    assert silent["total"] == expected > 1
    beats = [m["tags"]["AgentHeartbeat"]["agent_heartbeat_at"] for m in silent["machines"]]
    assert beats == sorted(beats, reverse=True)
    assert client.get(webug_link("WebugFleetStatsStale")).status_code == 200


def test_the_retry_wave_links_to_the_forecast_of_those_backoffs(client):
    found = collected(client)
    gauge = found["webug_fleet_backoffs_ending"]
    ending = sum(n for labels, n in gauge.items() if ("within", "15m") in labels)
    forecast = client.get(webug_link("WebugRetryWaveComing") + "&format=json").json()
    soon = [e for e in forecast["upcoming"] if e["what"] == "backoff_ends" and e["imminent"]]
    assert len(soon) == ending > 0


def test_the_dashboard_reads_only_gauges_webug_exports_and_links_back(client):
    dashboard = json.loads(DASHBOARD.read_text())
    exported = set(collected(client))
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    used = {
        name
        for p in panels
        for t in p["targets"]
        for name in re.findall(r"\b(?:bmdb|webug)_[a-z_]+\b", t["expr"])
    }
    assert used and used <= exported, used - exported
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert "webug_external_url_info" in variables["webug_url"]["definition"]
    links = [link["url"] for link in dashboard["links"]] + [
        link["url"] for p in panels for link in p.get("links", [])
    ]
    assert links and all(link.startswith("${webug_url}/") for link in links)
    # Every panel aggregates over instances, but the collection's own, per instance.
    for p in panels:
        for t in p["targets"]:
            assert t["expr"].startswith("max") or "instance" in t["legendFormat"], t["expr"]


def test_the_docs_table_names_every_fleet_gauge_with_its_labels(client):
    operating = (DEPLOY.parent / "docs" / "operating.md").read_text()
    rows = re.findall(r"^\| `((?:bmdb|webug_fleet|webug_external)_\w+)` \| ([^|]+) \|", operating,
                      re.M)  # fmt: skip
    documented = {name: set(re.findall(r"`(\w+)`", labels)) for name, labels in rows}
    scraped = collected(client)
    snapshot = client.app.state.fleet_stats.latest
    families = [*map(Family.from_json, snapshot["families"]), *meta_families(snapshot)]
    exported = {f.name: set(f.labels) for f in families} | {"webug_external_url_info": {"url"}}
    assert set(exported) == {n for n in scraped if n.startswith(("bmdb_", "webug_fleet_",
                                                                  "webug_external_"))}
    assert documented == exported
