-- What `pgbg prune --dry-run` would delete: finished jobs the caller may delete that ended
-- more than %(older_than_s)s seconds ago.
SELECT count(*)::bigint AS deleted
  FROM pgbg.job j
 WHERE j.state IN ('succeeded', 'failed', 'canceled', 'timed_out', 'lost', 'detached')
   AND j.finished_at < clock_timestamp() - make_interval(secs => %(older_than_s)s::float8)
   AND (j.owner = current_user OR pgbg._is_admin(current_user))
