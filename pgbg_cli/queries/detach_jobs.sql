-- Ask pgbg to stop tracking running jobs; their workers go on (pgbg.request_detach: only
-- jobs the caller may manage).
SELECT pgbg.request_detach(%(ids)s::bigint[], %(cookies)s::bigint[]) AS id
