-- Ask for jobs to stop (pgbg.request_cancel: only jobs the caller may manage; a queued job
-- is canceled at once, a running one by its supervisor or, when orphaned, by reconcile).
SELECT pgbg.request_cancel(%(ids)s::bigint[], %(cookies)s::bigint[], %(grace_ms)s::integer) AS id
