-- Routines of earlier versions that this one no longer has: dropped, so that none is left
-- behind without a pinned search_path.

DROP FUNCTION IF EXISTS pgbg._autoprune();
-- signatures of this version's development, before callers proved who they are
DROP FUNCTION IF EXISTS pgbg._may_act_as(name);
DROP FUNCTION IF EXISTS pgbg._actor(name);
DROP FUNCTION IF EXISTS pgbg.submit(text, text, bigint, integer, boolean, oid[], integer[], text[], name, text);
DROP FUNCTION IF EXISTS pgbg.request_cancel(bigint[], bigint[], integer, name);
DROP FUNCTION IF EXISTS pgbg.request_detach(bigint[], bigint[], name);
DROP FUNCTION IF EXISTS pgbg.prune(interval, name);
DROP FUNCTION IF EXISTS pgbg._autoprune(name);
DROP FUNCTION IF EXISTS pgbg.set_setting(text, text, name);
DROP FUNCTION IF EXISTS pgbg._reconcile_scan(name);
DROP FUNCTION IF EXISTS pgbg._reconcile_note(bigint, text, name);
DROP FUNCTION IF EXISTS pgbg._supervisor_register(name);
DROP FUNCTION IF EXISTS pgbg._record_note(bigint, text);
-- version 2's recorder, before a job's messages were kept with its outcome
DROP FUNCTION IF EXISTS pgbg._record_outcome(bigint, boolean, boolean, text, text, text, text, text,
                                             text, bigint, jsonb, timestamptz, timestamptz);

-- Kept, pinned, for version 1's code that may still be running while `pgbg init` upgrades
-- (a statement of a version 1 supervisor that waited on the upgrade's locks): a missing
-- function would end that supervisor with its jobs' outcomes unread.
CREATE OR REPLACE FUNCTION pgbg._notify(p_id bigint)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.pg_notify('pgbg_jobs', p_id::text)
$$;

CREATE OR REPLACE FUNCTION pgbg._lock_key(p_role name)
RETURNS integer LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (r.oid::bigint % 2147483648)::integer FROM pg_catalog.pg_roles r WHERE r.rolname = p_role
$$;
