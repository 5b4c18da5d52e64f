-- Why queued jobs wait while their role's supervisor runs: the figures its claims compare
-- (pgbg._claim_batch, fn_30_record.sql). Jobs of the role starting or running, against
-- max_running_per_role; those of the job's group, against its limit; and the reason the
-- supervisor left on it (no free worker slot). A role reads its own jobs only (an admin every
-- role's): the counts are its role's. Counted once per role and group, not once per job.
WITH wanted AS (
    SELECT j.id, j.owner, j.group_name, j.group_limit, j.reason FROM pgbg.job j
     WHERE j.id = ANY (%(ids)s::bigint[]) AND j.state = 'queued'
), active AS (
    SELECT r.owner, r.group_name, pg_catalog.count(*) AS n FROM pgbg.job r
     WHERE r.state IN ('starting', 'running') AND r.owner IN (SELECT w.owner FROM wanted w)
     GROUP BY r.owner, r.group_name
)
SELECT w.id, w.owner, w.group_name, w.group_limit, w.reason,
       coalesce((SELECT pg_catalog.sum(a.n) FROM active a WHERE a.owner = w.owner), 0) AS role_running,
       pgbg._setting_int('max_running_per_role') AS max_running,
       coalesce((SELECT a.n FROM active a WHERE a.owner = w.owner AND a.group_name = w.group_name), 0)
           AS group_running
  FROM wanted w
 ORDER BY w.id
