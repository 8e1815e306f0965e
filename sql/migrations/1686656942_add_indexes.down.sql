-- add_indexes: drop the three indexes.
DROP INDEX process_machine_id_idx;
DROP INDEX session_id_deadline_idx;
DROP INDEX agent_public_key_idx;
