-- Pruning: deleting jobs that have ended (never an active one: the job table's trigger
-- refuses it). Their audit events go with them.

-- Delete the finished jobs p_actor may manage (its own; all for pgbg_admin) that ended
-- longer ago than p_older_than. Returns how many went.
DROP FUNCTION IF EXISTS pgbg.prune(interval);
CREATE OR REPLACE FUNCTION pgbg.prune(p_older_than interval, p_actor name DEFAULT current_user,
    p_proof text DEFAULT pgbg._proof())
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM pgbg._actor(p_actor, p_proof);
    IF p_older_than IS NULL OR p_older_than < interval '0' THEN
        RAISE EXCEPTION 'pgbg: prune takes an age of zero or more' USING ERRCODE = '22023';
    END IF;
    WITH gone AS (
        DELETE FROM pgbg.job j
         WHERE j.state IN ('succeeded', 'failed', 'canceled', 'timed_out', 'lost', 'detached')
           AND j.finished_at < pg_catalog.clock_timestamp() - p_older_than
           AND pgbg._may_manage(p_actor, j.owner)
        RETURNING 1)
    SELECT pg_catalog.count(*) INTO n FROM gone;
    RETURN n;
END
$$;

-- The automatic bound, run by each supervisor about once a minute for its role (a role may
-- run it for itself): keep at most history_keep finished jobs of the role and none older
-- than history_max_age.
CREATE OR REPLACE FUNCTION pgbg._autoprune(p_actor name DEFAULT current_user,
    p_proof text DEFAULT pgbg._proof())
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM pgbg._actor(p_actor, p_proof);
    WITH ranked AS (
        SELECT j.id, j.finished_at,
               pg_catalog.row_number() OVER (ORDER BY j.finished_at DESC, j.id DESC) AS k
          FROM pgbg.job j
         WHERE j.owner = p_actor
           AND j.state IN ('succeeded', 'failed', 'canceled', 'timed_out', 'lost', 'detached')),
    gone AS (
        DELETE FROM pgbg.job j USING ranked r
         WHERE j.id = r.id
           AND (r.k > pgbg._setting_int('history_keep')
                OR r.finished_at < pg_catalog.clock_timestamp() - pgbg.setting('history_max_age')::interval)
        RETURNING 1)
    SELECT pg_catalog.count(*) INTO n FROM gone;
    RETURN n;
END
$$;
