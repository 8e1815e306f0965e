-- add_installation_report: result and serialized OSInstallationReport on the report tag.
CREATE TYPE machine_os_installation_result AS ENUM ('Success', 'Error');

-- NOT NULL without a default, as upstream: fails if reports already exist.
ALTER TABLE machine_os_installation_report
    ADD COLUMN os_installation_result machine_os_installation_result NOT NULL,
    ADD COLUMN os_installation_report_raw BYTEA NOT NULL;
