-- How many jobs are in each state among those `pgbg list` shows by default: every live
-- job and those that ended in the last hour (same filters as list_jobs). Two index reads,
-- so the cost follows the live jobs and the last hour, not the whole history.
SELECT s.state, count(*)::bigint AS n
  FROM (SELECT j.state, j.label FROM pgbg.job j
         WHERE j.state IN ('queued', 'starting', 'running')
        UNION ALL
        SELECT j.state, j.label FROM pgbg.job j
         WHERE j.finished_at > statement_timestamp() - interval '1 hour'
           AND j.state NOT IN ('queued', 'starting', 'running')) s
 WHERE (%(states)s::text[] IS NULL OR s.state = ANY(%(states)s::text[]))
   AND (%(label)s::text IS NULL OR s.label LIKE %(label)s::text ESCAPE '\')
 GROUP BY s.state
