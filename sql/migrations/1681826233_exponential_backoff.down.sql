-- exponential_backoff: drop work_backoff.last_interval_seconds.
ALTER TABLE work_backoff DROP COLUMN last_interval_seconds;
