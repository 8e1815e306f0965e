-- extra_provider_data: optional reservation, IP address, location and status on machine_provided.
CREATE TYPE provider_status AS ENUM (
    'Missing',
    'Provisioning',
    'ProvisioningFailedPermanent',
    'Running',
    'Stopped',
    'Unknown'
);

ALTER TABLE machine_provided
    ADD COLUMN provider_reservation_id VARCHAR(128) NULL,
    -- Human-readable 'main' address (maybe a CIDR); not meant to be parsed.
    ADD COLUMN provider_ip_address VARCHAR(128) NULL,
    ADD COLUMN provider_location VARCHAR(128) NULL,
    ADD COLUMN provider_status provider_status NULL;
