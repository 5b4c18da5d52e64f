-- Who will start the queued jobs of these roles: whether each has a live supervisor, whether
-- the dispatcher is on for it here and how long ago it last ran, and the worker slots.
SELECT r.role,
       pgbg.supervisor_pid(r.role) IS NOT NULL AS supervised,
       m.value IS NOT NULL AS dispatch_on,
       CASE WHEN m.value ~ '^[0-9]{1,12}$'
            THEN EXTRACT(epoch FROM pg_catalog.clock_timestamp()) - m.value::bigint END AS dispatch_age_s,
       s.max_worker_processes, s.used
  FROM unnest(%(roles)s::name[]) AS r(role)
  LEFT JOIN pgbg.meta m ON m.key = 'dispatch:' || r.role
 CROSS JOIN pgbg.worker_slots() AS s
