-- The doorbell: a session that queued a job wakes its role's idle supervisor at once, instead
-- of the supervisor looking for work on a timer.
--
-- An idle supervisor dozes in pg_sleep(), which only an interrupt ends early. The one a role
-- may send its own backends is a cancel (pg_cancel_backend), and a cancel that reached the
-- supervisor while it launched or recorded a job would break that step. So a cancel is sent
-- only inside a region where the supervisor catches it, and the region is fenced:
--
--  * Entering, the supervisor takes the advisory lock (DOORBELL_KEY, its own pid), shared and
--    session-level: visible at once, and read by pid, so nobody else can raise it for it. It
--    then looks for work once more (a job committed before that is seen) and dozes.
--  * A waker (pgbg._wake_supervisor(), after its job is committed) locks the supervisor's row
--    FOR NO KEY UPDATE, skipping it when locked, then signals that backend (pid and start time)
--    only while it holds that lock, and only while it sleeps (wait event PgSleep); and it keeps
--    the row until the supervisor is out of its sleep. So a doze gets one cancel, never a burst
--    of them, of which one could arrive while the supervisor ran the handler that caught the
--    one before (plpgsql checks for a cancel before every statement, a handler's too); wakers
--    that find the row locked ring nothing (their job was committed before: the pass sees it).
--    It does both in a subtransaction that it rolls back at once, which lets go of the row:
--    a waker that stays in its transaction afterwards holds nothing of the supervisor's. A
--    waker whose transaction has written (its job may not be committed) rings nothing.
--  * A waker also takes the fence's key (FENCE_KEY, the supervisor's pid) exclusively, after
--    the row and until its subtransaction ends: it rings only while it holds both.
--  * Between two of its short sleeps the supervisor commits without leaving the region: it
--    takes the fence's key exclusively (transaction-level, without waiting), which it gets only
--    while no waker is in the middle of a ring, and which keeps every waker from ringing until
--    it has committed; and it commits, keeping the doorbell's key. A waker's cancel sent before
--    it let go of the fence's key has reached the supervisor by then, and is caught by the
--    next statement inside the block. No row lock, no transaction id: a commit of the doze
--    costs about as much as waking from pg_sleep. When it cannot have the fence's key at
--    once, it leaves the region as below.
--  * Leaving, the supervisor locks its own row FOR NO KEY UPDATE, which waits for every waker
--    that may still signal, catching their cancels; lets go of the advisory lock; takes any
--    cancel still on its way in one last short wait; and commits. A waker that comes later
--    skips the locked row, or finds the advisory lock gone: it signals nothing.
--  * A session that holds the row longer than lock_timeout_ms (pgbg._doorbell() called in a
--    transaction it keeps open) makes the supervisor leave at once, with no further step:
--    it never waits on such a session with a transaction open (its snapshot would stall a
--    CREATE INDEX CONCURRENTLY of this database), and a terminate still ends it.
--
-- Everything in the region is a read or a sleep: a cancel there ends nothing but the doze.
-- It dozes 200 ms a transaction (after a COMMIT a procedure holds a snapshot until the next,
-- which keeps a VACUUM from removing rows deleted after it was taken), 1 s once no transaction
-- of the server has ended for a second (pgbg.supervise()); a waker that finds it holding the
-- key but not asleep looks again for 5 ms at most.
-- pgbg.supervise() runs the whole region, its handlers included, inside one more block that
-- catches a cancel, then leaves the region again from the top.
-- It cannot tell a ring from a cancel or terminate an administrator sent (pg_background 2.0
-- turns SIGTERM into a cancel), so after any cancel the supervisor leaves as if idle for
-- supervisor_idle_ms: unless a job is queued, which is what a ring means (it comes after its
-- job has committed), it ends at once, as it would have on that signal before.
-- Should someone else hold the key exclusively, the supervisor cannot enter the region and
-- looks for work on a timer as before (pgbg.setting poll_ms): slower, never wrong.
--
-- DOORBELL_KEY is 1885823591 (the bytes 'pgbg') and FENCE_KEY 1885823592, written out below.
-- Should someone else hold the fence's key (shared or not), wakers ring nothing: the supervisor
-- leaves the region (with a row lock) and looks for work every poll_ms outside it, as when the
-- doorbell's key is held, until the fence's key is free (pgbg._fenced()). It neither dozes on
-- deaf to rings (a shared holder let it: 200 ms a job) nor enters again only to leave by a row
-- lock every poll_ms (a transaction id, WAL and a flush each, imposed by any role). It sees
-- the key taken only at its next commit: a role that takes it whenever the supervisor has gone
-- back to sleep keeps rings out for the rest of that sleep (a job then waits up to 1 s).

-- Does backend p_pid hold the doorbell's key (DOORBELL_KEY, its own pid) in this database, as
-- a dozing supervisor does? Only that backend can: the key names its pid.
CREATE OR REPLACE FUNCTION pgbg._dozes(p_pid integer)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                    WHERE l.locktype = 'advisory' AND l.pid = p_pid AND l.granted AND l.mode = 'ShareLock'
                      AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                                         WHERE d.datname = pg_catalog.current_database())
                      AND l.classid = 1885823591 AND l.objid = p_pid AND l.objsubid = 2)
$$;

-- Does anyone hold, or wait for, the fence's key of backend p_pid (FENCE_KEY, p_pid) in this
-- database? Asked by a supervisor fenced out of its region before it enters again.
CREATE OR REPLACE FUNCTION pgbg._fenced(p_pid integer)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                    WHERE l.locktype = 'advisory'
                      AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                                         WHERE d.datname = pg_catalog.current_database())
                      AND l.classid = 1885823592 AND l.objid = p_pid AND l.objsubid = 2)
$$;

-- The supervisor's row of p_role, locked FOR NO KEY UPDATE until the caller's (sub)transaction
-- ends (it holds the supervisor in its region meanwhile, and any other waker out); NULLs when
-- there is none, or when the row is locked: the supervisor is leaving its region, or another
-- waker rings it (either way it will look for work).
CREATE OR REPLACE FUNCTION pgbg._doorbell(p_role name DEFAULT current_user, p_proof text DEFAULT pgbg._proof())
RETURNS TABLE (pid integer, backend_start timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgbg._actor(p_role, p_proof);
    RETURN QUERY
        SELECT s.pid, s.backend_start FROM pgbg.supervisor s
         WHERE s.role = p_role AND NOT s.legacy
           FOR NO KEY UPDATE SKIP LOCKED;
END
$$;

-- Wake the current role's supervisor if it dozes; true when a signal was sent. Run with the
-- caller's rights: pg_cancel_backend() then reaches only backends the caller may signal anyway.
-- Call it after the job it is for has committed. In a transaction that has written it rings
-- nothing (a ring before the job commits would find no job: the supervisor would leave); the
-- dozing supervisor finds the job on its own within 200 ms of that commit (1 s when it ends a
-- quiet second of the server).
CREATE OR REPLACE FUNCTION pgbg._wake_supervisor()
RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s record;
    rung boolean := false;
    fenced boolean := false;
    w record;
    started timestamptz := pg_catalog.clock_timestamp();
    deadline timestamptz := pg_catalog.clock_timestamp() + interval '200 milliseconds';
BEGIN
    IF pg_catalog.pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RETURN false;
    END IF;
    BEGIN
        SELECT * INTO s FROM pgbg._doorbell();
        WHILE s.pid IS NOT NULL LOOP
            -- the fence's key, held until the subtransaction ends: the supervisor cannot commit
            -- between two sleeps meanwhile (see above). Not had: the supervisor is committing
            -- between two sleeps (or someone else holds the key).
            fenced := fenced OR pg_catalog.pg_try_advisory_xact_lock(1885823592, s.pid);
            IF fenced THEN
                PERFORM pg_catalog.pg_stat_clear_snapshot();  -- a fresh look at the backends, after the locks
                SELECT a.wait_event = 'PgSleep' AS asleep INTO w
                  FROM pg_catalog.pg_stat_activity a
                 WHERE a.pid = s.pid AND a.backend_start = s.backend_start AND a.backend_type = 'pg_background'
                   AND pgbg._dozes(s.pid);
                -- not dozing (it will look for work before it does): nothing to ring
                EXIT WHEN w.asleep IS NULL;
                IF w.asleep THEN
                    -- the backend this look found by pid and start time, a moment ago
                    rung := pg_catalog.pg_cancel_backend(s.pid);
                    EXIT;
                END IF;
                -- dozing, between two of its short sleeps (or looking for work, which then finds
                -- this job)
            END IF;
            -- look again, 5 ms at most
            EXIT WHEN pg_catalog.clock_timestamp() > started + interval '5 milliseconds';
            PERFORM pg_catalog.pg_sleep(0.0002);
        END LOOP;
        IF rung THEN
            -- One ring a doze: hold the row (no other waker rings meanwhile) until the supervisor
            -- is out of its sleep, 200 ms at most. It cannot sleep again before it has the row.
            WHILE rung AND pg_catalog.clock_timestamp() < deadline LOOP
                PERFORM pg_catalog.pg_stat_clear_snapshot();
                EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a
                                       WHERE a.pid = s.pid AND a.backend_start = s.backend_start
                                         AND a.wait_event = 'PgSleep');
                PERFORM pg_catalog.pg_sleep(0.0005);
            END LOOP;
        END IF;
        -- roll the subtransaction back: the row lock and the fence's key end with the ring, not
        -- with the caller's transaction (a lock taken in an aborted subtransaction is no lock)
        RAISE EXCEPTION USING ERRCODE = 'PGBG0';
    EXCEPTION WHEN SQLSTATE 'PGBG0' THEN
        NULL;
    END;
    RETURN rung;
END
$$;

-- The supervisor's side of leaving the region: its own row, locked FOR NO KEY UPDATE until it
-- commits. False when it has no row (nobody can ring then). 42501 unless the caller is a
-- registered supervisor.
CREATE OR REPLACE FUNCTION pgbg._supervisor_hold()
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    me pgbg.supervisor := pgbg._supervisor_self();
BEGIN
    PERFORM 1 FROM pgbg.supervisor s
     WHERE s.pid = me.pid AND s.backend_start = me.backend_start
       FOR NO KEY UPDATE;
    RETURN FOUND;
END
$$;

-- Enter the region: true when this supervisor may now doze and be woken.
CREATE OR REPLACE FUNCTION pgbg._supervisor_doze_begin()
RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgbg._supervisor_self();
    RETURN pg_catalog.pg_try_advisory_lock_shared(1885823591, pg_catalog.pg_backend_pid());
END
$$;

-- Leave the region (see above). The caller commits next, which lets wakers in again. True
-- when a cancel reached it meanwhile; NULL when a session held the row longer than
-- lock_timeout: the key is let go, and the caller leaves at once (a terminate may be among
-- the cancels; and it must not wait on that session's transaction with one of its own open).
-- False at once when this backend does not hold the key (it did not doze, or has left): the
-- caller runs it inside a block that catches a cancel, and again after one.
CREATE OR REPLACE FUNCTION pgbg._supervisor_doze_end()
RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    canceled boolean := false;
BEGIN
    PERFORM pgbg._supervisor_self();
    IF NOT pgbg._dozes(pg_catalog.pg_backend_pid()) THEN
        RETURN false;
    END IF;
    LOOP
        BEGIN
            PERFORM pgbg._supervisor_hold();
            EXIT;
        EXCEPTION
            WHEN query_canceled THEN
                canceled := true;  -- a waker's cancel (or not: see pgbg.supervise()): again
            WHEN lock_not_available THEN
                -- a ring holds the row for a moment only: this is a session that keeps it
                PERFORM pg_catalog.pg_advisory_unlock_shared(1885823591, pg_catalog.pg_backend_pid());
                RETURN NULL;
        END;
    END LOOP;
    PERFORM pg_catalog.pg_advisory_unlock_shared(1885823591, pg_catalog.pg_backend_pid());
    BEGIN
        -- a cancel sent before the row lock was ours ends this wait (1 ms at most), not a
        -- later step of the supervisor
        PERFORM pg_catalog.pg_sleep(0.0001);
    EXCEPTION WHEN query_canceled THEN
        canceled := true;
    END;
    RETURN canceled;
END
$$;
