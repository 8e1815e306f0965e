-- initial: machines, sessions, the process enum and work (leases of a process on a machine).
-- Constraints are left to PostgreSQL's default names (<table>_pkey, ...): CockroachDB's
-- per-table CONSTRAINT "primary" would collide, as PostgreSQL constraint names are schema-wide.
CREATE TABLE machines (
    machine_id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    machine_created_at TIMESTAMPTZ NOT NULL
);

-- A component's liveness record; its owner keeps pushing session_deadline forward.
CREATE TABLE sessions (
    session_id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    session_component_name TEXT NOT NULL,
    session_runtime_info TEXT NOT NULL,
    session_created_at TIMESTAMPTZ NOT NULL,
    -- BIGINT: CockroachDB's INT is 64-bit.
    session_interval_seconds BIGINT NOT NULL,
    session_deadline TIMESTAMPTZ NOT NULL
);

CREATE TYPE process AS ENUM ('UnitTest1', 'UnitTest2');

-- "Session S runs process P on machine M". Machines with work cannot be deleted; work dies
-- with its session.
CREATE TABLE work (
    machine_id UUID NOT NULL REFERENCES machines (machine_id) ON DELETE RESTRICT,
    session_id UUID NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    process process NOT NULL,
    PRIMARY KEY (machine_id, session_id, process),
    UNIQUE (machine_id, process)
);
