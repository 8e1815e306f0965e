"""/metrics for Prometheus, request IDs and JSON logs, on a real BMDB and a real uvicorn."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from email.message import Message
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.http.observability import JsonFormatter, request_id_var
from tests.fleet import mid
from tests.support import free_port, webug_client

ROOT = Path(__file__).resolve().parent.parent


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} from the exposition text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


@pytest.fixture(scope="module")
def client(module_fleet_dsn):
    with webug_client(module_fleet_dsn, pool_max_size=7) as client:
        yield client


def test_metrics_expose_every_family_after_a_few_requests(client):
    for path in ("/", f"/machine/{mid(1)}", "/healthz", "/static/webug.css", "/no-such-page"):
        client.get(path)
    text = client.get("/metrics").text
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "webug_http_request_duration_seconds",
        "webug_db_query_duration_seconds",
        "webug_db_pool_connections_in_use",
        "webug_db_pool_connections_open",
        "webug_db_pool_connections_max",
        "webug_schema_info",
        "webug_schema_loaded",
        "webug_schema_tag_types",
        "webug_schema_refresh_failures",
        "webug_bmdb_reachable",
        "webug_bmdb_reachable_age_seconds",
    } <= names
    assert value(text, "webug_db_pool_connections_max") == 2 * 7  # the two pages' pools
    assert value(text, "webug_db_pool_connections_open") >= 1
    assert value(text, "webug_db_pool_connections_in_use") == 0  # nothing in flight now
    assert value(text, "webug_schema_info", version="1698288577", dirty="false") == 1
    assert value(text, "webug_schema_loaded") == 1
    assert value(text, "webug_schema_tag_types") == 6  # machine_* tables of the BMDB
    assert value(text, "webug_schema_refresh_failures_total") == 0
    assert value(text, "webug_bmdb_reachable") == 1
    assert value(text, "webug_db_query_duration_seconds_count") > 0
    for route in ("/", "/healthz", "/static/{path}", "(unmatched)"):
        assert f'route="{route}"' in text, route


def test_route_label_is_the_template_not_the_raw_path(client):
    def count(text: str) -> float:
        return (
            value(
                text,
                "webug_http_request_duration_seconds_count",
                method="GET",
                route="/machine/{machine_id}",
                status="200",
            )
            or 0
        )

    before = count(client.get("/metrics").text)
    for n in (1, 2, 3):
        assert client.get(f"/machine/{mid(n)}").status_code == 200
    text = client.get("/metrics").text
    assert count(text) == before + 3
    assert str(mid(2)) not in text  # one series per page, not one per machine


def test_request_id_is_taken_when_sane_and_echoed(client):
    assert (
        client.get("/healthz", headers={"X-Request-ID": "lb-42.abc"}).headers["X-Request-ID"]
        == "lb-42.abc"
    )
    made = [client.get("/healthz").headers["X-Request-ID"] for _ in range(2)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in made) and made[0] != made[1]
    for insane in ("a b", "x" * 200, "<script>", ""):
        echoed = client.get("/healthz", headers={"X-Request-ID": insane}).headers["X-Request-ID"]
        assert echoed != insane and re.fullmatch(r"[0-9a-f]{32}", echoed)
    # Also on error pages and 404s.
    assert client.get("/nope", headers={"X-Request-ID": "r1"}).headers["X-Request-ID"] == "r1"


def test_every_response_says_its_server_time(client):
    # Server-Timing: shown by browsers' devtools, read by bench/bench.py.
    page = client.get(f"/machine/{mid(1)}")
    fragment = client.get(f"/machine/{mid(1)}/live", headers={"HX-Request": "true"})
    unchanged = client.get(
        f"/machine/{mid(1)}/live",
        headers={"HX-Request": "true", "HX-PTag": fragment.headers["HX-PTag"]},
    )
    missing = client.get("/nope")
    assert unchanged.status_code == 304 and missing.status_code == 404
    for response in (page, fragment, unchanged, missing):
        timing = re.fullmatch(r"app;dur=(\d+\.\d\d)", response.headers["Server-Timing"])
        assert timing and float(timing[1]) > 0


def test_access_log_record_is_json_with_the_request_id(client, caplog):
    with caplog.at_level(logging.INFO, logger="webug.access"):
        client.get(f"/machine/{mid(2)}?live=0", headers={"X-Request-ID": "trace-7"})
    records = [r for r in caplog.records if r.name == "webug.access"]
    assert records, "no access log record"
    line = json.loads(JsonFormatter().format(records[-1]))
    assert line["request_id"] == "trace-7"
    assert line["route"] == "/machine/{machine_id}"
    assert line["path"] == f"/machine/{mid(2)}"
    assert line["query"] == "live=0"
    assert line["status"] == 200 and line["level"] == "info" and line["duration_ms"] > 0


def test_client_text_cannot_forge_a_text_log_line(client):
    """A CR/LF in the (percent-decoded) path would start a line of the attacker's text."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(lambda record: not record.name.startswith("httpx"))  # the client's
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        forged = "/%0d%0aINFO%20webug.access:%20GET%20/admin%20200%0bFAKE"
        assert client.get(forged).status_code == 404
        refused = client.post("/%0D%0AFAKE%1b[2J", headers={"Origin": "http://evil.example"})
        assert refused.status_code == 403
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    lines = [line for line in out.getvalue().splitlines() if "FAKE" in line]
    assert [line.split(":")[0] for line in lines] == [
        "INFO webug.access",  # the GET
        "WARNING app.http.security",  # the POST refused...
        "INFO webug.access",  # ... and its access line
    ], lines
    assert "GET /\\x0d\\x0aINFO webug.access: GET /admin 200\\x0bFAKE 404" in lines[0]
    assert all("/\\x0d\\x0aFAKE\\x1b[2J" in line for line in lines[1:])
    assert not any("\x1b" in line for line in lines)


def test_client_text_is_escaped_in_json_log_fields(client, caplog):
    with caplog.at_level(logging.INFO, logger="webug.access"):
        client.get("/%0d%0aFAKE?q=%0d")
    line = json.loads(JsonFormatter().format(caplog.records[-1]))
    assert line["path"] == "/\\x0d\\x0aFAKE" and line["query"] == "q=%0d"
    assert re.fullmatch(r"GET /\\x0d\\x0aFAKE 404 [\d.]+ms", line["msg"]), line["msg"]


def test_every_record_made_during_a_request_carries_its_id():
    token = request_id_var.set("in-request")
    try:
        record = logging.getLogger("webug.anything").makeRecord(
            "webug.anything", logging.WARNING, __file__, 1, "schema %s", ("x",), None
        )
    finally:
        request_id_var.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line == {**line, "request_id": "in-request", "msg": "schema x", "level": "warning"}


def test_unreachable_bmdb_shows_in_metrics():
    # Nothing listens on port 1: every connection attempt is refused at once.
    with webug_client("postgresql://webug@127.0.0.1:1/bmdb") as client:
        text = client.get("/metrics").text  # no evidence yet: checked at scrape time
        assert value(text, "webug_bmdb_reachable") == 0
        assert value(text, "webug_schema_loaded") == 0
        assert client.get("/healthz").status_code == 503
        deadline = time.monotonic() + 10
        while True:
            text = client.get("/metrics").text
            if value(text, "webug_schema_refresh_failures_total") >= 1:
                break
            assert time.monotonic() < deadline, "schema refresh failures never counted"
            time.sleep(0.2)
        assert value(text, "webug_bmdb_reachable") == 0
        assert value(text, "webug_bmdb_reachable_age_seconds") < 5


# --- a real uvicorn: JSON log lines on stderr, workers adding up in /metrics -----------


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, Message]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers


# The environment of a uvicorn under test: no metrics directory unless the test gives one.
UNSHARED_ENV = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}


def _serve(dsn: str, tmp_path: Path, *extra: str, env: dict[str, str] | None = None):
    port = free_port()
    log = (tmp_path / "server.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
         "--port", str(port), *extra],
        cwd=ROOT,
        env={**UNSHARED_ENV, "WEBUG_DSN": dsn, "WEBUG_LOG_FORMAT": "json", **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if _get(base + "/healthz")[0] == 200:
                return proc, base, log
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.seek(0)
            pytest.fail(f"uvicorn did not come up:\n{log.read()}")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_uvicorn_writes_json_log_lines_with_request_ids(module_fleet_dsn, tmp_path):
    proc, base, log = _serve(module_fleet_dsn, tmp_path)
    try:
        status, _, headers = _get(base + f"/machine/{mid(1)}", {"X-Request-ID": "e2e-1"})
        assert status == 200 and headers["X-Request-ID"] == "e2e-1"
    finally:
        _stop(proc)
    log.seek(0)
    lines = [line for line in log.read().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line, uvicorn's too, is JSON
    assert any(p["logger"].startswith("uvicorn") for p in parsed)
    access = [p for p in parsed if p["logger"] == "webug.access" and p.get("request_id") == "e2e-1"]
    assert len(access) == 1
    assert access[0]["route"] == "/machine/{machine_id}" and access[0]["status"] == 200
    assert not [p for p in parsed if p["logger"] == "uvicorn.access"]  # replaced, not doubled


def test_several_workers_add_up_in_metrics(module_fleet_dsn, tmp_path):
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    proc, base, _ = _serve(
        module_fleet_dsn,
        tmp_path,
        "--workers",
        "2",
        env={"PROMETHEUS_MULTIPROC_DIR": str(multiproc)},
    )
    try:
        for _ in range(20):
            assert _get(base + "/healthz")[0] == 200
        _, text, _ = _get(base + "/metrics")
    finally:
        _stop(proc)
    healthz = value(
        text,
        "webug_http_request_duration_seconds_count",
        method="GET",
        route="/healthz",
        status="200",
    )
    # 20 here plus the start-up polls, whichever worker answered each: all counted.
    assert healthz is not None and healthz >= 21
    assert len(list(multiproc.glob("*.db"))) >= 2  # both workers wrote their share


def test_bare_workers_add_up_in_metrics_and_counters_never_go_back(module_fleet_dsn, tmp_path):
    # `--workers 2` and nothing else: no PROMETHEUS_MULTIPROC_DIR.
    proc, base, _ = _serve(
        module_fleet_dsn, tmp_path, "--workers", "2", env={"WEBUG_POOL_MAX_SIZE": "3"}
    )
    both_pools = 2 * 2 * 3  # workers × pools × WEBUG_POOL_MAX_SIZE
    healthz = {"method": "GET", "route": "/healthz", "status": "200"}
    try:
        deadline = time.monotonic() + 20
        while value(_get(base + "/metrics")[1], "webug_db_pool_connections_max") != both_pools:
            assert time.monotonic() < deadline, "the scrapes never saw both workers' pools"
            time.sleep(0.2)
        counts, sent = [], 0
        for _ in range(15):  # each request on a new connection: either worker answers
            for _ in range(3):
                assert _get(base + "/healthz")[0] == 200
                sent += 1
            _, text, _ = _get(base + "/metrics")
            assert value(text, "webug_db_pool_connections_max") == both_pools
            counts.append(value(text, "webug_http_request_duration_seconds_count", **healthz))
    finally:
        _stop(proc)
    assert counts == sorted(counts), counts  # never back, whichever worker answered
    assert counts[-1] - counts[0] == sent - 3  # every request of every worker, once
