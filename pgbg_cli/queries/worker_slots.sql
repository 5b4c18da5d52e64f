-- Who holds the slots of max_worker_processes right now (background workers only:
-- client backends and the server's own auxiliary processes take no such slot).
SELECT current_setting('max_worker_processes')::int AS max_worker_processes,
       current_setting('max_parallel_workers')::int AS max_parallel_workers,
       count(*) FILTER (WHERE a.backend_type = 'pg_background')::int AS pg_background,
       count(*) FILTER (WHERE a.backend_type = 'parallel worker')::int AS parallel,
       count(*) FILTER (WHERE a.backend_type LIKE 'logical replication%')::int AS replication,
       count(*) FILTER (WHERE a.backend_type NOT IN ('pg_background', 'parallel worker')
                          AND a.backend_type NOT LIKE 'logical replication%')::int AS other,
       count(*)::int AS used
  FROM pg_stat_activity a
 WHERE a.backend_type NOT IN (
         'client backend', 'autovacuum launcher', 'autovacuum worker', 'background writer',
         'checkpointer', 'walwriter', 'walsender', 'walreceiver', 'startup', 'archiver',
         'logger', 'standalone backend', 'wal summarizer', 'slotsync worker', 'io worker',
         'stats collector')
