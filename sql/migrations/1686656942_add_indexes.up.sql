-- add_indexes: covering indexes for agent lookup by key, live-session checks and backoff exclusion.
CREATE INDEX agent_public_key_idx
    ON machine_agent_started (agent_public_key)
    INCLUDE (agent_started_at);

CREATE INDEX session_id_deadline_idx
    ON sessions (session_id, session_deadline)
    INCLUDE (session_component_name, session_runtime_info, session_created_at,
             session_interval_seconds);

CREATE INDEX process_machine_id_idx
    ON work_backoff (process, machine_id)
    INCLUDE (until);
