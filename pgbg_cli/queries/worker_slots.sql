-- Who holds the slots of max_worker_processes right now (background workers only:
-- client backends and the server's own auxiliary processes take no such slot).
-- Also compiled into the schema as pgbg.worker_slots() (SECURITY DEFINER, so that every
-- role counts every process: without pg_read_all_stats a role sees the backend_type of
-- its own sessions only). Run directly, a process whose type the caller may not see is
-- counted as pg_background when its application_name says so (pg_background 2.0 names
-- its workers pg_background:<label>:<pid>), as "hidden" when it belongs to a role or a
-- database (a client backend or a background worker: no way to tell), and not at all
-- when it has neither (an auxiliary process). pgbg's supervisors carry the label
-- pgbg:supervisor, its job workers pgbg:<job id>:<label>.
WITH a AS (
    SELECT CASE
             WHEN s.backend_type = 'pg_background'
                  OR (s.backend_type IS NULL AND s.application_name LIKE 'pg\_background:%')
               THEN CASE
                      WHEN s.application_name LIKE 'pg\_background:pgbg:supervisor:%' THEN 'pgbg_supervisor'
                      WHEN s.application_name ~ '^pg_background:pgbg:[0-9]+:' THEN 'pgbg_job'
                      ELSE 'pg_background_other'
                    END
             WHEN s.backend_type = 'parallel worker' THEN 'parallel'
             WHEN s.backend_type LIKE 'logical replication%' THEN 'replication'
             WHEN s.backend_type IS NULL
               THEN CASE WHEN s.usesysid IS NOT NULL OR s.datid IS NOT NULL THEN 'hidden' END
             WHEN s.backend_type IN (
                    'client backend', 'autovacuum launcher', 'autovacuum worker', 'background writer',
                    'checkpointer', 'walwriter', 'walsender', 'walreceiver', 'startup', 'archiver',
                    'logger', 'standalone backend', 'wal summarizer', 'walsummarizer', 'slotsync worker',
                    'io worker', 'stats collector', 'dead-end client backend', 'not initialized')
               THEN NULL
             ELSE 'other'
           END AS kind
      FROM pg_catalog.pg_stat_activity s
)
SELECT pg_catalog.current_setting('max_worker_processes')::int AS max_worker_processes,
       pg_catalog.current_setting('max_parallel_workers')::int AS max_parallel_workers,
       count(*) FILTER (WHERE a.kind IN ('pgbg_job', 'pgbg_supervisor', 'pg_background_other'))::int
           AS pg_background,
       count(*) FILTER (WHERE a.kind = 'parallel')::int AS parallel,
       count(*) FILTER (WHERE a.kind = 'replication')::int AS replication,
       count(*) FILTER (WHERE a.kind = 'other')::int AS other,
       count(*) FILTER (WHERE a.kind <> 'hidden')::int AS used,
       count(*) FILTER (WHERE a.kind = 'pgbg_job')::int AS pgbg_jobs,
       count(*) FILTER (WHERE a.kind = 'pgbg_supervisor')::int AS pgbg_supervisors,
       count(*) FILTER (WHERE a.kind = 'pg_background_other')::int AS pg_background_other,
       count(*) FILTER (WHERE a.kind = 'hidden')::int AS hidden
  FROM a
