-- Bulk work history for measuring webug's fleet-wide history reads (docs/using.md, "Failure
-- signatures and activity"). Adds :rows rows (default 5,000,000) spread over
-- the last 30 days across the machines a `python -m app seed` put there, in ONE
-- INSERT ... SELECT. Every 10th row is a Failed event whose cause varies like real ones:
-- the machine's address and device ID, and per failure a duration, a count or a request ID.
-- Run it on a TEST database only:
--   psql "$DSN" -v rows=5000000 -f bench/history_rows.sql
\if :{?rows}
\else
\set rows 5000000
\endif
WITH ids AS (SELECT array_agg(machine_id ORDER BY machine_id) AS a, count(*)::int AS n
             FROM machines)
INSERT INTO work_history (machine_id, process, event, "timestamp", failed_cause)
SELECT ids.a[1 + m.i],
       (ARRAY['ShepherdAccess', 'ShepherdAgentStart', 'ShepherdRecovery'])[1 + g % 3]::process,
       e.event::work_history_event,
       now() - random() * interval '30 days',
       CASE WHEN e.event = 'Failed' THEN
         CASE g / 10 % 5
           WHEN 0 THEN format('while dialing SSH: dial tcp 10.%s.%s.%s:22: connect: connection refused',
                              m.i / 65536 % 256, m.i / 256 % 256, m.i % 256)
           WHEN 1 THEN format('while fetching device: GET https://api.equinix.com/metal/v1/devices/%s: 503 Service Unavailable',
                              ids.a[1 + m.i])
           WHEN 2 THEN format('agent did not heartbeat within %ss after %s attempts', g % 600, g % 7 + 1)
           WHEN 3 THEN format('reboot: provider rejected request 0x%s (retry in %sm%ss)',
                              to_hex(g), g % 60, g % 60)
           ELSE 'context deadline exceeded'
         END
       END
FROM ids, generate_series(1, :rows) g,
     LATERAL (SELECT ((g::bigint * 7919) % ids.n)::int AS i) m,
     LATERAL (SELECT CASE WHEN g % 10 = 0 THEN 'Failed' WHEN g % 10 = 5 THEN 'Canceled'
                          WHEN g % 2 = 0 THEN 'Started' ELSE 'Finished' END AS event) e;
ANALYZE work_history;
