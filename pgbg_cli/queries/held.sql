-- Why queued jobs wait while their role's supervisor runs: the figures its claims compare
-- (pgbg._claim_batch, fn_30_record.sql). Jobs of the role starting or running, against
-- max_running_per_role; those of the job's group, against its limit; whether an earlier job
-- of its group is queued before it; and the reason the supervisor left on it (no free worker
-- slot). A role reads its own jobs only (an admin every role's): the counts are its role's.
SELECT j.id, j.owner, j.group_name, j.group_limit, j.reason,
       (SELECT pg_catalog.count(*) FROM pgbg.job r
         WHERE r.owner = j.owner AND r.state IN ('starting', 'running')) AS role_running,
       pgbg._setting_int('max_running_per_role') AS max_running,
       (SELECT pg_catalog.count(*) FROM pgbg.job r
         WHERE r.owner = j.owner AND r.group_name = j.group_name AND r.state IN ('starting', 'running')) AS group_running,
       EXISTS (SELECT 1 FROM pgbg.job e
                WHERE e.owner = j.owner AND e.group_name = j.group_name AND e.state = 'queued' AND e.id < j.id)
           AS behind_group
  FROM pgbg.job j
 WHERE j.id = ANY (%(ids)s::bigint[]) AND j.state = 'queued'
 ORDER BY j.id
