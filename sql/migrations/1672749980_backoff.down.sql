-- backoff: drop work_backoff, work_history and the work_history_event enum.
DROP TABLE work_backoff;
DROP TABLE work_history;
DROP TYPE work_history_event;
