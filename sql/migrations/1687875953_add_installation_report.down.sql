-- add_installation_report: drop the report columns and the result enum.
ALTER TABLE machine_os_installation_report
    DROP COLUMN os_installation_result,
    DROP COLUMN os_installation_report_raw;
DROP TYPE machine_os_installation_result;
