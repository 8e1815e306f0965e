-- agent_tags: the provider enum, the Provided/AgentStarted/AgentHeartbeat/HardwareReport tags
-- and the ShepherdAccess process.
CREATE TYPE provider AS ENUM ('Equinix');

-- The machine is backed by provider's machine provider_id.
CREATE TABLE machine_provided (
    machine_id UUID NOT NULL PRIMARY KEY REFERENCES machines (machine_id) ON DELETE RESTRICT,
    provider provider NOT NULL,
    provider_id VARCHAR(128) NOT NULL,
    UNIQUE (provider, provider_id)
);

-- The agent was started on the machine and reported the key it authenticates with.
CREATE TABLE machine_agent_started (
    machine_id UUID NOT NULL PRIMARY KEY REFERENCES machines (machine_id) ON DELETE RESTRICT,
    agent_started_at TIMESTAMPTZ NOT NULL,
    agent_public_key BYTEA NOT NULL
);

CREATE TABLE machine_agent_heartbeat (
    machine_id UUID NOT NULL PRIMARY KEY REFERENCES machines (machine_id) ON DELETE RESTRICT,
    agent_heartbeat_at TIMESTAMPTZ NOT NULL
);

-- Serialized cloud.bmaas.server.api.AgentHardwareReport.
CREATE TABLE machine_hardware_report (
    machine_id UUID NOT NULL PRIMARY KEY REFERENCES machines (machine_id) ON DELETE RESTRICT,
    hardware_report_raw BYTEA NOT NULL
);

-- Allowed in the file's implicit transaction because nothing here uses the new value.
ALTER TYPE process ADD VALUE IF NOT EXISTS 'ShepherdAccess';
