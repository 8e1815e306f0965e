"""A small hand-built fleet with known answers for every filter and facet."""

from __future__ import annotations

from uuid import UUID

from tests.support import execute, run_sync


def mid(n: int) -> UUID:
    return UUID(f"{n:08x}-0000-4000-8000-000000000000")


ALIVE, DEAD = UUID(int=0xA1), UUID(int=0xD1)
MACHINES = 12


def machines_sql(first: int, last: int) -> str:
    """Machines mid(first)..mid(last), machine n created n days ago."""
    return f"""INSERT INTO machines (machine_id, machine_created_at)
        SELECT (lpad(to_hex(g), 8, '0') || '-0000-4000-8000-000000000000')::uuid,
               now() - g * interval '1 day'
        FROM generate_series({first}, {last}) g"""


SMALL_FLEET = [
    machines_sql(1, MACHINES),
    f"""INSERT INTO sessions VALUES
        ('{ALIVE}', 'shepherd-equinix', 'pid 42', now() - interval '1 hour', 60,
         now() + interval '1 hour'),
        ('{DEAD}', 'shepherd-lumen', 'pid 7', now() - interval '2 hours', 60,
         now() - interval '5 minutes')""",
    f"""INSERT INTO machine_provided (machine_id, provider, provider_id, provider_location,
            provider_ip_address, provider_status) VALUES
        ('{mid(1)}', 'Equinix', 'eq-aaa', 'fr5', '10.0.0.1', 'Running'),
        ('{mid(2)}', 'Lumen', 'lumen-0002', 'ny7', '10.0.0.2', 'Missing'),
        ('{mid(3)}', 'Equinix', 'eq-ccc', 'fr5', NULL, NULL)""",
    f"""INSERT INTO machine_agent_started
        VALUES ('{mid(1)}', now() - interval '1 day', '\\x0102')""",
    f"""INSERT INTO work VALUES ('{mid(1)}', '{ALIVE}', 'ShepherdAccess'),
                              ('{mid(2)}', '{DEAD}', 'ShepherdAgentStart')""",
    f"""INSERT INTO work_backoff VALUES
        ('{mid(2)}', 'ShepherdAccess', now() + interval '10 minutes',
         'ssh: connection refused <script>alert(1)</script>', 600),
        ('{mid(3)}', 'ShepherdRecovery', now() - interval '1 hour', 'old failure', 60)""",
    f"""INSERT INTO work_history VALUES
        ('{mid(1)}', 'ShepherdAccess', 'Started', now() - interval '30 minutes', NULL),
        ('{mid(2)}', 'ShepherdAccess', 'Started', now() - interval '20 minutes', NULL),
        ('{mid(2)}', 'ShepherdAccess', 'Failed', now() - interval '10 minutes', 'ssh: refused'),
        ('{mid(2)}', 'ShepherdAgentStart', 'Started', now() - interval '9 minutes', NULL),
        ('{mid(99)}', 'ShepherdAccess', 'Started', now() - interval '9 days', NULL),
        ('{mid(99)}', 'ShepherdAccess', 'Finished', now() - interval '8 days', NULL)""",
]


def load_small_fleet(dsn: str) -> None:
    run_sync(execute(dsn, *SMALL_FLEET))
