-- backoff: the append-only work_history audit trail and per-(machine, process) work_backoff.
CREATE TYPE work_history_event AS ENUM ('Started', 'Finished', 'Failed', 'Canceled');

-- No foreign key on purpose: history outlives deleted machines.
CREATE TABLE work_history (
    machine_id UUID NOT NULL,
    process process NOT NULL,
    event work_history_event NOT NULL,
    timestamp TIMESTAMPTZ NOT NULL,
    -- Only set for event = 'Failed'.
    failed_cause TEXT
);

CREATE INDEX work_history_machine_id_idx ON work_history (machine_id);

-- A failed process may not run again on the machine until 'until'. Upserted on failure and
-- never garbage-collected: at most one row per (machine, process).
CREATE TABLE work_backoff (
    machine_id UUID NOT NULL REFERENCES machines (machine_id) ON DELETE CASCADE,
    process process NOT NULL,
    until TIMESTAMPTZ NOT NULL,
    cause TEXT NOT NULL,
    UNIQUE (machine_id, process)
);
