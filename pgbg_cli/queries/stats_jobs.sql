-- Statistics of pgbg's jobs in the columns of pg_background_stats(), plus the queue and
-- the spread of run times, over a window: every live job, and the jobs that ended in the
-- last %(window_s)s seconds. RLS applies: a role counts its own jobs, pgbg_admin all.
-- %(by)s is NULL (one row), 'label', 'role' or 'group' (one row per value; jobs of no group: NULL);
-- %(group)s, when not NULL, counts the jobs of that group only. Each branch of the
-- union reads one index (job_active_idx, job_finished_idx), so the cost follows the
-- live jobs and the window, never the whole history.
WITH w AS (
    SELECT j.owner, j.label, j.group_name, j.state, j.started_at, j.finished_at
      FROM pgbg.job j
     WHERE j.state IN ('queued', 'starting', 'running')
       AND (%(group)s::text IS NULL OR j.group_name = %(group)s::text)
    UNION ALL
    SELECT j.owner, j.label, j.group_name, j.state, j.started_at, j.finished_at
      FROM pgbg.job j
     WHERE j.finished_at >= statement_timestamp() - make_interval(secs => %(window_s)s::float8)
       AND j.state NOT IN ('queued', 'starting', 'running')
       AND (%(group)s::text IS NULL OR j.group_name = %(group)s::text)
), g AS (
    SELECT CASE %(by)s::text WHEN 'label' THEN w.label
                             WHEN 'role' THEN w.owner::text
                             WHEN 'group' THEN w.group_name
                             ELSE 'all' END AS grp,
           w.state,
           w.started_at >= statement_timestamp() - make_interval(secs => %(window_s)s::float8) AS launched,
           -- greatest() skips NULLs: a job that never started or has not ended has no run time
           CASE WHEN w.finished_at IS NOT NULL AND w.started_at IS NOT NULL
                THEN greatest(0, extract(epoch FROM w.finished_at - w.started_at) * 1000) END AS run_ms
      FROM w
    UNION ALL  -- so that an empty window still gives its row of zeros
    SELECT 'all', NULL, false, NULL WHERE %(by)s::text IS NULL
)
SELECT g.grp AS "group",
       count(*) FILTER (WHERE g.launched)::bigint AS workers_launched,
       count(*) FILTER (WHERE g.state = 'succeeded')::bigint AS workers_completed,
       count(*) FILTER (WHERE g.state IN ('failed', 'lost'))::bigint AS workers_failed,
       count(*) FILTER (WHERE g.state = 'canceled')::bigint AS workers_canceled,
       count(*) FILTER (WHERE g.state = 'timed_out')::bigint AS workers_timed_out,
       count(*) FILTER (WHERE g.state IN ('starting', 'running'))::bigint AS workers_active,
       round(avg(g.run_ms)::numeric, 1)::float8 AS avg_execution_ms,
       coalesce(nullif(current_setting('pg_background.max_workers', true), '')::int, 16) AS max_workers,
       count(*) FILTER (WHERE g.state = 'queued')::bigint AS queued,
       count(*) FILTER (WHERE g.state = 'lost')::bigint AS lost,
       count(*) FILTER (WHERE g.state = 'detached')::bigint AS detached,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY g.run_ms))::numeric, 1)::float8 AS p50_ms,
       round((percentile_cont(0.95) WITHIN GROUP (ORDER BY g.run_ms))::numeric, 1)::float8 AS p95_ms,
       round(max(g.run_ms)::numeric, 1)::float8 AS max_ms
  FROM g
 GROUP BY g.grp
 ORDER BY g.grp NULLS LAST
