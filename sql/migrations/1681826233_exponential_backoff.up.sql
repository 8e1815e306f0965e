-- exponential_backoff: remember the last backoff period so the next one can be multiplied.
ALTER TABLE work_backoff ADD COLUMN last_interval_seconds BIGINT NULL;
