"""Fuzzing every route and parameter of the OpenAPI document: no input makes a 500.

Schemathesis generates requests (path, query and header parameters: valid, invalid,
huge, odd unicode) from /openapi.json; each goes to webug in-process, lifespan
running, on the seeded fleet. Bounded: a fixed number of examples per operation and
derandomized, so the run is repeatable and takes a few seconds per operation.
"""

from __future__ import annotations

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
