-- Delete finished jobs older than %(older_than_s)s seconds: the caller's own, all of
-- them for pgbg_admin (RLS decides). Returns how many went.
SELECT pgbg.prune(make_interval(secs => %(older_than_s)s::float8)) AS deleted
