"""Fuzzing every route and parameter of the OpenAPI document: no input makes a 500.

Schemathesis generates requests (path, query and header parameters: valid, invalid,
huge, odd unicode) from /openapi.json; each goes to webug in-process, lifespan
running, on the seeded fleet. Bounded: a fixed number of examples per operation and
derandomized, so the run is repeatable and takes a few seconds per operation.

Besides, every parameter of every operation gets a NUL character (which no BMDB text
can hold, and random generation rarely produces): each such request is a 400 that says so.
And every query parameter is given twice, with two values: one the document declares
single is a 400 that says so (never a value silently dropped); a repeatable one answers.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

import asyncpg
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import strategies as st

from app.config import Settings
from app.main import create_app
from tests.support import BASE_URL, run_sync, webug_client

EXAMPLES = 75  # per operation (and HTML/JSON/htmx variants of each)
VARIANTS = [{}, {"Accept": "application/json"}, {"HX-Request": "true"}]

# The document only: no BMDB is needed to build it.
SPEC = create_app(Settings(dsn="postgresql://nobody@127.0.0.1:1/none")).openapi()
SCHEMA = schemathesis.openapi.from_dict(SPEC)
OPERATIONS = {op.ok().label: op.ok() for op in SCHEMA.get_all_operations()}


@pytest.fixture(scope="module")
def client(seeded_db_dsn):
    with webug_client(seeded_db_dsn) as c:
        yield c


@pytest.fixture(scope="module")
def real_values(seeded_db_dsn) -> dict[str, list[str]]:
    """Existing IDs per path parameter, so fuzzed queries also reach pages that exist."""

    async def fetch() -> dict[str, list[str]]:
        conn = await asyncpg.connect(seeded_db_dsn)
        try:
            machines = [
                str(r[0]) for r in await conn.fetch("SELECT machine_id FROM machines LIMIT 20")
            ]
            sessions = [
                str(r[0]) for r in await conn.fetch("SELECT session_id FROM sessions LIMIT 10")
            ]
            provided = await conn.fetch(
                "SELECT provider::text, provider_id FROM machine_provided LIMIT 10"
            )
        finally:
            await conn.close()
        return {
            "machine_id": machines + [m[:8] for m in machines[:5]],
            "session_id": sessions,
            "provider": sorted({r[0] for r in provided}),
            "provider_id": [r[1] for r in provided],
        }

    return run_sync(fetch())


def with_real_ids(case, values: dict[str, list[str]], pick: int):
    """The generated case with each known path parameter replaced by an existing value."""
    for name in list(case.path_parameters or {}):
        if values.get(name):
            case.path_parameters[name] = values[name][pick % len(values[name])]
    return case


def test_every_route_is_in_the_fuzzed_document():
    paths = {label.split(" ", 1)[1] for label in OPERATIONS}
    assert {"/", "/machine/{machine_id}", "/search", "/schema/refresh", "/healthz"} <= paths
    assert len(OPERATIONS) >= 10, sorted(OPERATIONS)


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_input_makes_a_server_error(client, real_values, label):
    operation = OPERATIONS[label]
    seen: list[tuple[int, str]] = []
    cases = st.one_of(
        operation.as_strategy(),
        st.builds(with_real_ids, operation.as_strategy(), st.just(real_values), st.integers(0, 99)),
    )

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=cases, variant=st.sampled_from(VARIANTS))
    def check(case, variant) -> None:
        kwargs = case.as_transport_kwargs(base_url=BASE_URL)
        headers = {**(kwargs.get("headers") or {}), **variant}
        if kwargs["method"] not in ("GET", "HEAD"):
            headers["Origin"] = BASE_URL  # same-origin: reach the handler
        response = client.request(
            kwargs["method"],
            kwargs["url"],
            params=kwargs.get("params"),
            headers=headers,
            follow_redirects=False,
        )
        seen.append((response.status_code, str(response.url)))
        assert response.status_code < 500, (
            f"{response.status_code} for {kwargs['method']} {response.url}: {response.text[:300]}"
        )
        assert "Traceback" not in response.text

    check()
    print(f"\n{label}: {len(seen)} requests, statuses {sorted({s for s, _ in seen})}")


# --- NUL in every parameter ----------------------------------------------------------------

# Values that reach a real page, for the parameters not under test.
PLAIN_PATH_VALUES = {"tag": "AgentStarted", "field": "agent_public_key"}


def parameters() -> list[tuple[str, str, str]]:
    """(operation label, parameter name, where: path or query) of every declared parameter."""
    return [
        (f"{method.upper()} {path}", parameter["name"], parameter["in"])
        for path, methods in SPEC["paths"].items()
        for method, operation in methods.items()
        for parameter in operation.get("parameters", ())
        if parameter["in"] in ("path", "query")
    ]


PARAMETERS = parameters()


def test_every_parameter_is_fuzzed_with_nul():
    fuzzed = {(label, name) for label, name, _ in PARAMETERS}
    assert {
        ("GET /sessions", "component"),
        ("GET /provider/{provider}/{provider_id}", "provider_id"),
        ("GET /machine/{machine_id}/history", "process"),
    } <= fuzzed


# Where the NUL goes in a value that is otherwise plausible.
NUL_PLACES = {"alone": "{nul}", "after": "{value}{nul}", "before": "{nul}{value}"}


@pytest.mark.parametrize(("label", "name", "where"), PARAMETERS)
@pytest.mark.parametrize("place", sorted(NUL_PLACES))
def test_a_nul_character_in_any_parameter_is_a_400_that_says_so(
    client, real_values, label, name, where, place
):
    method, path = label.split(" ", 1)
    values = {**PLAIN_PATH_VALUES, **{k: v[0] for k, v in real_values.items() if v}}
    with_nul = NUL_PLACES[place].format(value=values.get(name, "Running"), nul="\x00")
    query = ""
    if where == "path":
        values[name] = with_nul
    else:
        query = "?" + urlencode({name: with_nul})
    url = path.format(**{k: quote(str(v), safe="") for k, v in values.items()}) + query
    response = client.request(method, url, headers={"Accept": "application/json"})
    assert response.status_code == 400, (url, response.status_code, response.text[:300])
    assert "NUL character" in response.json()["detail"], response.text[:300]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/x-www-form-urlencoded", "q=eq-aaa%00"), ("text/plain", "eq-aaa\x00")],
)
def test_a_nul_character_in_a_posted_search_is_a_400(client, content_type, body):
    response = client.post(
        "/search", content=body.encode(), headers={"Content-Type": content_type, "Origin": BASE_URL}
    )
    assert response.status_code == 400 and "control characters" in response.text


# --- every query parameter given twice ------------------------------------------------------

# Two values of each repeatable parameter that mean something here.
REPEATED = {
    "provider": ("Equinix", "Lumen"),
    "status": ("Running", "Missing"),
    "work": ("ShepherdAccess", "ShepherdAgentStart"),
    "backoff": ("ShepherdAccess", "ShepherdRecovery"),
    "has": ("Provided", "AgentStarted"),
    "lacks": ("AgentHeartbeat", "HardwareReport"),
}


def query_parameters() -> list[tuple[str, str, bool]]:
    """(operation label, query parameter, whether the document declares it an array) of
    every query parameter, and `format` (every page reads it) of every GET."""
    declared = [
        (f"{method.upper()} {path}", parameter["name"], "array" in str(parameter["schema"]))
        for path, methods in SPEC["paths"].items()
        for method, operation in methods.items()
        for parameter in operation.get("parameters", ())
        if parameter["in"] == "query"
    ]
    gets = sorted({label for label in OPERATIONS if label.startswith("GET ")})
    return declared + [(label, "format", False) for label in gets]


QUERY_PARAMETERS = query_parameters()


def test_every_query_parameter_is_fuzzed_repeated():
    repeatable = {name for _, name, array in QUERY_PARAMETERS if array}
    assert set(REPEATED) <= repeatable and "ids" in repeatable
    assert ("GET /", "location", False) in QUERY_PARAMETERS


@pytest.mark.parametrize(("label", "name", "array"), QUERY_PARAMETERS)
def test_a_repeated_parameter_is_either_or_a_400_never_silently_dropped(
    client, real_values, label, name, array
):
    method, path = label.split(" ", 1)
    values = {**PLAIN_PATH_VALUES, **{k: v[0] for k, v in real_values.items() if v}}
    url = path.format(**{k: quote(str(v), safe="") for k, v in values.items()})
    machines = real_values["machine_id"]
    twice = REPEATED.get(name) or ((machines[0], machines[1]) if name == "ids" else ("1", "2"))
    response = client.request(
        method, url, params=[(name, v) for v in twice], headers={"Accept": "application/json"},
        follow_redirects=False,
    )  # fmt: skip
    assert response.status_code < 500, (url, name, response.text[:300])
    refused = response.status_code == 400 and f"{name} is given 2 times" in response.text
    assert refused != array, (url, name, response.status_code, response.text[:300])
