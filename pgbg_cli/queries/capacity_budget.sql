-- pgbg's job budget in this database, for `pgbg capacity`: its settings, the active jobs
-- the caller may see (row-level security: a role sees its own, pgbg_admin all), the
-- caller's own active jobs, and the live supervisors (registered in pgbg.supervisor, any role).
SELECT pgbg._setting_int('max_running_per_role') AS max_running_per_role,
       pgbg._setting_int('reserve_slots') AS reserve_slots,
       count(*) FILTER (WHERE j.state = 'queued')::int AS queued_jobs,
       count(*) FILTER (WHERE j.state IN ('starting', 'running'))::int AS running_jobs,
       count(*) FILTER (WHERE j.state = 'queued' AND j.owner = current_user)::int AS role_queued_jobs,
       count(*) FILTER (WHERE j.state IN ('starting', 'running') AND j.owner = current_user)::int
           AS role_running_jobs,
       pgbg.supervisor_pid(current_user) AS supervisor_pid,
       (SELECT count(*)::int FROM pgbg.supervisors() s WHERE NOT s.legacy) AS live_supervisors,
       (SELECT r.rolsuper OR r.rolbypassrls FROM pg_roles r WHERE r.rolname = current_user)
         OR pgbg._is_admin(current_user)
         OR pg_has_role(current_user, (SELECT c.relowner FROM pg_class c WHERE c.oid = 'pgbg.job'::regclass),
                        'USAGE') AS sees_all_jobs
  FROM pgbg.job j
 WHERE j.state IN ('queued', 'starting', 'running')
