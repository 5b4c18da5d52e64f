-- Live jobs, and those that ended in the last hour (or all history with %(all)s), newest first.
SELECT j.id, j.cookie, j.id || ':' || j.cookie AS handle, j.label, j.state, j.owner,
       j.queued_at, j.started_at, j.finished_at,
       round(extract(epoch FROM coalesce(j.finished_at, clock_timestamp())
                                - coalesce(j.started_at, j.queued_at)) * 1000)::bigint AS elapsed_ms,
       j.progress_pct, j.progress_msg, j.worker_pid, j.sqlstate, j.message, j.reason,
       left(regexp_replace(j.sql, '\s+', ' ', 'g'), 80) AS query
  FROM pgbg.job j
 WHERE (%(states)s::text[] IS NULL OR j.state = ANY(%(states)s::text[]))
   AND (%(label)s::text IS NULL OR j.label LIKE %(label)s::text ESCAPE '\')
   AND (%(all)s OR j.state IN ('queued', 'starting', 'running')
        OR j.finished_at > clock_timestamp() - interval '1 hour')
 ORDER BY j.id DESC
 LIMIT %(limit)s
