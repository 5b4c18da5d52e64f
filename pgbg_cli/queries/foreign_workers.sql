-- pg_background workers in this database that pgbg did not launch (its supervisors and
-- job workers carry labels that start with "pgbg:").
SELECT a.pid, a.usename::text AS owner, a.application_name, a.state AS backend_state,
       a.backend_start, a.query_start, a.wait_event,
       round(extract(epoch FROM clock_timestamp() - a.backend_start) * 1000)::bigint AS elapsed_ms,
       a.query
  FROM pg_stat_activity a
 WHERE a.backend_type = 'pg_background'
   AND a.datname = current_database()
   AND a.application_name NOT LIKE 'pg\_background:pgbg:%'
   AND NOT EXISTS (SELECT 1 FROM pgbg.job j
                    WHERE j.worker_pid = a.pid AND j.state IN ('starting', 'running'))
 ORDER BY a.backend_start
