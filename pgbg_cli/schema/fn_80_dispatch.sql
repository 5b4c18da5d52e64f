-- The dispatcher (opt-in, needs pg_cron): queued jobs start within seconds of a worker slot
-- freeing, and after a server restart, with no pgbg command from anyone.
--
-- `pgbg dispatch enable` (a superuser: pg_cron lets only a superuser schedule a job that runs
-- as another role) schedules, for each role, `SELECT pgbg.dispatch()` every 5 seconds in
-- this database with cron.schedule_in_database(..., username => that role). pg_cron runs it
-- in a session whose session user is that role, so the supervisor it starts is started by a
-- session of its own role, as pgbg._supervisor_register() demands: nobody's session lends
-- its rights to another role's jobs.
--
-- pgbg.meta keeps one row per role the dispatcher is on for here: 'dispatch:<role>', whose
-- value is when its last run was seen (epoch seconds; '' before the first). `pgbg list`,
-- `show`, `capacity` and `launch` read it to say who will start a queued job.

-- Run by pg_cron as the role itself: make its jobs tell the truth (after a restart, jobs that
-- ran are lost) and start its supervisor when it has queued jobs and none is alive. The
-- caller's rights (it launches a worker as the caller). NULL when nothing was started.
CREATE OR REPLACE FUNCTION pgbg.dispatch()
RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    started integer;
BEGIN
    PERFORM pgbg._dispatch_seen();
    PERFORM pgbg.reconcile();
    IF NOT EXISTS (SELECT 1 FROM pgbg.job j WHERE j.owner = current_user AND j.state = 'queued') THEN
        RETURN NULL;
    END IF;
    BEGIN
        started := pgbg.ensure_supervisor();
    EXCEPTION WHEN insufficient_resources THEN
        RETURN NULL;  -- no free worker slot: the next run tries again
    END;
    RETURN started;
END
$$;

-- The caller's dispatcher ran: its row's time, at most every 10 seconds (a row only
-- `pgbg dispatch enable` makes; a role without one writes nothing).
CREATE OR REPLACE FUNCTION pgbg._dispatch_seen(p_actor name DEFAULT current_user,
    p_proof text DEFAULT pgbg._proof())
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    now_s bigint := pg_catalog.floor(EXTRACT(epoch FROM pg_catalog.clock_timestamp()))::bigint;
BEGIN
    PERFORM pgbg._actor(p_actor, p_proof);
    UPDATE pgbg.meta m SET value = now_s::text
     WHERE m.key = 'dispatch:' || p_actor
       AND CASE WHEN m.value ~ '^[0-9]{1,12}$' THEN m.value::bigint < now_s - 10 ELSE true END;
END
$$;

-- Mark the dispatcher on (p_on) or off for roles here: superusers only, as only they can
-- schedule the pg_cron jobs that `pgbg dispatch` makes in the same breath (an admin who could
-- mark it on without them would have `pgbg launch` say a job will start that nothing starts).
-- Returns the roles changed.
CREATE OR REPLACE FUNCTION pgbg.dispatch_mark(p_roles name[], p_on boolean, p_actor name DEFAULT current_user,
    p_proof text DEFAULT pgbg._proof())
RETURNS SETOF name LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgbg._actor(p_actor, p_proof);
    IF NOT coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = p_actor), false) THEN
        RAISE EXCEPTION 'pgbg: only a superuser may turn the dispatcher on or off' USING ERRCODE = '42501';
    END IF;
    IF p_on THEN
        RETURN QUERY
            INSERT INTO pgbg.meta AS m (key, value)
            SELECT 'dispatch:' || r.role, '' FROM unnest(p_roles) AS r(role)
            ON CONFLICT (key) DO NOTHING
            RETURNING pg_catalog.substr(m.key, 10)::name;
    ELSE
        RETURN QUERY
            DELETE FROM pgbg.meta m
             WHERE m.key IN (SELECT 'dispatch:' || r.role FROM unnest(p_roles) AS r(role))
            RETURNING pg_catalog.substr(m.key, 10)::name;
    END IF;
END
$$;
