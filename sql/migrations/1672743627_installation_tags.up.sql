-- installation_tags: the OSInstallationRequest and OSInstallationReport tags.
CREATE TABLE machine_os_installation_request (
    machine_id UUID NOT NULL PRIMARY KEY REFERENCES machines (machine_id) ON DELETE RESTRICT,
    -- Monotonic request version, matched against the report's generation.
    generation BIGINT NOT NULL,
    -- Serialized cloud.bmaas.server.api.OSInstallationRequest.
    os_installation_request_raw BYTEA NOT NULL
);

CREATE TABLE machine_os_installation_report (
    machine_id UUID NOT NULL PRIMARY KEY REFERENCES machines (machine_id) ON DELETE RESTRICT,
    -- Deliberately not constrained to the request's generation: a mismatch means a pending
    -- request, which is a valid state.
    generation BIGINT NOT NULL
);
