-- Routines of earlier versions that this one no longer has: dropped, so that none is left
-- behind without a pinned search_path.

DROP FUNCTION IF EXISTS pgbg._lock_key(name);
DROP FUNCTION IF EXISTS pgbg._notify(bigint);
DROP FUNCTION IF EXISTS pgbg._autoprune();
