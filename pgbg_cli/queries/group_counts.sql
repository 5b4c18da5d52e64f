-- Every job of one group, whenever it ended, counted per state (the progress of a group in
-- `pgbg list --watch --group`: how many of its jobs are done). The caller's own jobs, or every
-- role's it may see with `all`.
SELECT j.state, pg_catalog.count(*)::int AS n
  FROM pgbg.job j
 WHERE j.group_name = %(group)s AND (%(all)s OR j.owner = current_user)
 GROUP BY j.state
