-- Ask for jobs to stop. A queued job is canceled here and now; a running one is stopped by
-- its supervisor (or, when orphaned, by pgbg.reconcile()). Waiters are woken.
WITH upd AS (
    UPDATE pgbg.job j
       SET cancel_requested_at = coalesce(j.cancel_requested_at, clock_timestamp()),
           cancel_grace_ms = coalesce(j.cancel_grace_ms, %(grace_ms)s),
           cancel_by = coalesce(j.cancel_by, current_user),
           state = CASE WHEN j.state = 'queued' THEN 'canceled' ELSE j.state END,
           finished_at = CASE WHEN j.state = 'queued' THEN clock_timestamp() ELSE j.finished_at END,
           reason = CASE WHEN j.state = 'queued' THEN 'canceled by ' || current_user || ' while queued'
                         ELSE j.reason END
      FROM unnest(%(ids)s::bigint[], %(cookies)s::bigint[]) AS h(id, cookie)
     WHERE j.id = h.id AND j.cookie = h.cookie AND j.state IN ('queued', 'starting', 'running')
 RETURNING j.id)
SELECT pg_notify('pgbg_jobs', id::text) FROM upd
