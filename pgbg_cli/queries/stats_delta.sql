-- What the watch views need to keep their window's figures current, in one round trip:
-- the server's clock and max_workers ('now'), every live job ('live'), and the jobs that
-- ended after %(after)s (NULL: any time) within the last %(window_s)s seconds ('ended').
-- The caller keeps the ended jobs it has seen, so each refresh reads only the jobs that
-- ended since the last one (with an overlap): its cost follows the live jobs and the jobs
-- ending, not the window or the history. RLS applies.
SELECT 'now' AS kind, NULL::bigint AS id, NULL::text AS owner, NULL::text AS label, NULL::text AS state,
       NULL::timestamptz AS started_at, NULL::timestamptz AS finished_at, NULL::numeric AS run_ms,
       statement_timestamp() AS now,
       coalesce(nullif(current_setting('pg_background.max_workers', true), '')::int, 16) AS max_workers,
       NULL::text AS group_name
UNION ALL
SELECT 'live', j.id, j.owner::text, j.label, j.state, j.started_at, NULL, NULL, NULL, NULL, j.group_name
  FROM pgbg.job j
 WHERE j.state IN ('queued', 'starting', 'running')
UNION ALL
SELECT 'ended', j.id, j.owner::text, j.label, j.state, j.started_at, j.finished_at,
       CASE WHEN j.started_at IS NOT NULL THEN greatest(0, extract(epoch FROM j.finished_at - j.started_at) * 1000) END,
       NULL, NULL, j.group_name
  FROM pgbg.job j
 WHERE j.finished_at > greatest(%(after)s::timestamptz,  -- greatest(), not coalesce(): an index can serve it
                           statement_timestamp() - make_interval(secs => %(window_s)s::float8))
   AND j.state NOT IN ('queued', 'starting', 'running')
