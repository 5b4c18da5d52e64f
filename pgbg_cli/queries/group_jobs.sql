-- The jobs of one group, whenever they ended (the progress of a group in `pgbg list --watch
-- --group`): each job's state, and its SQL unless the caller has it already (`known`: ids it
-- read before; a job's SQL never changes). The caller's own jobs, or every role's it may see
-- with `all`.
SELECT j.id, j.state, CASE WHEN j.id = ANY (%(known)s::bigint[]) THEN NULL ELSE j.sql END AS sql
  FROM pgbg.job j
 WHERE j.group_name = %(group)s AND (%(all)s OR j.owner = current_user)
