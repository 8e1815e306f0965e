-- agent_tags: drop the tag tables and the provider enum. Like upstream, 'ShepherdAccess' stays
-- in process (PostgreSQL cannot drop an enum value; the up migration uses IF NOT EXISTS).
DROP TABLE machine_hardware_report;
DROP TABLE machine_agent_heartbeat;
DROP TABLE machine_agent_started;
DROP TABLE machine_provided;
DROP TYPE provider;
