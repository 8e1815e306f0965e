-- extra_shepherd_processes: nothing to undo. As upstream, the enum values stay (PostgreSQL
-- cannot drop enum values, unused ones are harmless and the up migration uses IF NOT EXISTS).
-- A no-op statement rather than none: asyncpg fails on a query that is only comments.
SELECT 1;
