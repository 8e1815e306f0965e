-- installation_tags: drop the OS installation tags.
DROP TABLE machine_os_installation_report;
DROP TABLE machine_os_installation_request;
