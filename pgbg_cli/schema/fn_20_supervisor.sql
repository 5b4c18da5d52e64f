-- The per-role supervisor: who it is, how it starts, and its loop.
--
-- One supervisor per (database, role) runs `CALL pgbg.supervise()` inside a pg_background
-- worker launched by that role. It launches the role's queued jobs as workers it owns,
-- tends them in short transactions (never holding the CREATE INDEX CONCURRENTLY deadlock),
-- records each outcome, then detaches. N running jobs of a role hold N+1 worker slots.
--
-- It is known by its row in pgbg.supervisor (pid and backend start time), which only
-- pgbg._supervisor_register() writes, from inside a pg_background worker of a session that
-- may act as that role. Nobody else can hold that place: there is no lock to squat.

-- This backend's own registration; 42501 unless it is a registered supervisor.
CREATE OR REPLACE FUNCTION pgbg._supervisor_self()
RETURNS pgbg.supervisor LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s pgbg.supervisor;
BEGIN
    SELECT * INTO s FROM pgbg.supervisor x
     WHERE x.pid = pg_catalog.pg_backend_pid() AND x.backend_start = pgbg._my_backend_start();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgbg: backend % is not a registered pgbg supervisor', pg_catalog.pg_backend_pid()
            USING ERRCODE = '42501';
    END IF;
    RETURN s;
END
$$;

-- Is job j supervised by supervisor s? Its role, pid and backend start time. A job that
-- version 1's loop claimed carries no start time: only that (legacy) supervisor's own pid
-- then counts.
CREATE OR REPLACE FUNCTION pgbg._supervised_by(j pgbg.job, s pgbg.supervisor)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT j.owner = s.role AND j.supervisor_pid = s.pid
       AND (j.supervisor_start = s.backend_start OR (s.legacy AND j.supervisor_start IS NULL))
$$;

-- Register this backend as p_role's supervisor. False when a live one is registered already.
CREATE OR REPLACE FUNCTION pgbg._supervisor_register(p_role name DEFAULT current_user, p_proof text DEFAULT pgbg._proof())
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    me record;
BEGIN
    PERFORM pgbg._actor(p_role, p_proof);
    SELECT a.pid, a.backend_start, a.backend_type INTO me
      FROM pg_catalog.pg_stat_activity a WHERE a.pid = pg_catalog.pg_backend_pid();
    IF me.backend_type IS DISTINCT FROM 'pg_background' THEN
        RAISE EXCEPTION 'pgbg: only a pg_background worker can be a supervisor (this is a %)', me.backend_type
            USING ERRCODE = '42501';
    END IF;
    -- A worker keeps its launcher's session user, and a job can return to it (SET ROLE NONE):
    -- a supervisor of p_role launched from another role's session (a superuser's SET ROLE)
    -- would hand that role's rights to p_role's jobs.
    IF session_user <> p_role THEN
        RAISE EXCEPTION 'pgbg: a supervisor of % must be started by a session of % itself, not of %',
                        p_role, p_role, session_user USING ERRCODE = '42501';
    END IF;
    -- This role's dead registrations go (a row whose backend, by pid and start time, is
    -- gone). The unique index supervisor_one_per_role then lets one live one in: two
    -- supervisors registering at once wait on each other's row, never on a table lock.
    DELETE FROM pgbg.supervisor s
     WHERE s.role = p_role AND NOT pgbg._backend_alive(s.pid, s.backend_start);
    IF EXISTS (SELECT 1 FROM pgbg.supervisor s
                WHERE s.role = p_role AND NOT s.legacy AND s.pid = me.pid AND s.backend_start = me.backend_start) THEN
        RETURN true;
    END IF;
    INSERT INTO pgbg.supervisor (pid, backend_start, role) VALUES (me.pid, me.backend_start, p_role)
    ON CONFLICT (role) WHERE NOT legacy DO NOTHING;
    RETURN FOUND;
END
$$;

-- Leave: this backend is no longer a supervisor (it touches no other row).
CREATE OR REPLACE FUNCTION pgbg._supervisor_unregister()
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    DELETE FROM pgbg.supervisor s
     WHERE s.pid = pg_catalog.pg_backend_pid() AND s.backend_start = pgbg._my_backend_start()
$$;

-- Keep the last error a supervisor met and carried on from (shown by `pgbg capacity`).
CREATE OR REPLACE FUNCTION pgbg._supervisor_note(p_error text)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    UPDATE pgbg.supervisor s
       SET last_error = pg_catalog.left(pg_catalog.to_char(pg_catalog.clock_timestamp(), 'YYYY-MM-DD HH24:MI:SS ')
                                        || p_error, 1000)
     WHERE s.pid = pg_catalog.pg_backend_pid() AND s.backend_start = pgbg._my_backend_start()
$$;

-- Ask this supervisor to stop at the end of its pass, noting why: pg_background cannot be
-- called (its library does not match its SQL objects, or pgbg is no longer bound to it). A
-- session setting, so that it outlives the transaction of the step that found it.
CREATE OR REPLACE FUNCTION pgbg._supervisor_stop(p_why text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE LOG 'pgbg: supervisor % stops: %', pg_catalog.pg_backend_pid(), p_why;
    PERFORM pgbg._supervisor_note('stopped: ' || p_why);
    PERFORM pg_catalog.set_config('pgbg.supervisor_stop', 'on', false);
END
$$;

-- The pid of the live supervisor of p_role in this database, or NULL.
CREATE OR REPLACE FUNCTION pgbg.supervisor_pid(p_role name DEFAULT current_user)
RETURNS integer LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.pid FROM pgbg.supervisor s
     WHERE s.role = p_role AND NOT s.legacy AND pgbg._backend_alive(s.pid, s.backend_start)
     LIMIT 1
$$;

-- Live supervisors of every role (for `pgbg capacity`): pid, role, and the last error.
CREATE OR REPLACE FUNCTION pgbg.supervisors()
RETURNS TABLE (pid integer, role name, legacy boolean, registered_at timestamptz, last_error text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.pid, s.role, s.legacy, s.registered_at, s.last_error FROM pgbg.supervisor s
     WHERE pgbg._backend_alive(s.pid, s.backend_start)
     ORDER BY s.role, s.pid
$$;

-- Start this role's supervisor unless one is alive, from a session of the role itself (not
-- one that SET ROLE to it). Returns the new worker's pid or NULL.
-- It runs with the caller's rights (it launches a worker as the caller) and inherits this
-- function's pinned search_path; no statement_timeout (pg_background 1.8 let a launching
-- session's timeout kill the worker later).
CREATE OR REPLACE FUNCTION pgbg.ensure_supervisor()
RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    h record;
BEGIN
    -- pg_background must answer first (its library may not match its SQL objects): a
    -- supervisor alive since before cannot launch anything either
    PERFORM pgbg._bg_probe();
    IF pgbg.supervisor_pid(current_user) IS NOT NULL THEN
        BEGIN
            PERFORM pgbg._wake_supervisor();  -- alive: ring, should it doze (fn_25_doorbell.sql)
        EXCEPTION WHEN OTHERS THEN
            -- no bell for this role here (it is not granted pgbg): the supervisor finds the job
            -- on its own within 200 ms (1 s after a quiet second of the server)
            RAISE LOG 'pgbg: could not wake the supervisor of %: %', current_user, SQLERRM;
        END;
        RETURN NULL;
    END IF;
    IF session_user <> current_user THEN
        RETURN NULL;  -- this session only borrows the role (see _supervisor_register)
    END IF;
    PERFORM pg_catalog.set_config('statement_timeout', '0', true);
    IF pg_catalog.current_setting('pg_background.worker_timeout', true) IS NOT NULL THEN
        -- 1.8: a worker inherits its launcher's worker_timeout, and a supervisor must not end
        PERFORM pg_catalog.set_config('pg_background.worker_timeout', '0', true);
    END IF;
    SELECT * INTO h FROM pgbg._bg_launch('CALL pgbg.supervise()', 0, 'pgbg:supervisor', NULL);
    PERFORM pgbg._bg_detach(h.pid, h.cookie);
    RETURN h.pid;
END
$$;

-- The loop. A procedure that COMMITs cannot carry a SET clause, so it pins its own
-- search_path first thing (it was launched with the pinned one of ensure_supervisor()).
-- A lock it cannot get within lock_timeout_ms ends that step of the pass, is noted, and
-- is tried again on the next pass; any other error ends the supervisor, and reconcile
-- then tells the truth about its jobs.
--
-- Between passes it waits up to poll_ms on its oldest running job's worker (pg_background
-- returns as soon as that worker stops), so a job's end is seen at once; with jobs queued
-- but none startable it looks again after poll_ms; with nothing to do it dozes until a
-- session of its role rings (fn_25_doorbell.sql). Every wait is one statement of its own
-- transaction, of 200 ms at most while it dozes (the CREATE INDEX CONCURRENTLY trap), or 1 s
-- once no transaction of the server has ended for a second.
CREATE OR REPLACE PROCEDURE pgbg.supervise()
LANGUAGE plpgsql AS $$
DECLARE
    idle_since timestamptz := pg_catalog.clock_timestamp();
    last_prune timestamptz := pg_catalog.clock_timestamp();
    settings_read timestamptz := pg_catalog.clock_timestamp() - interval '1 hour';  -- read on the first pass
    active integer;
    claimed bigint;
    claimed_ids bigint[];
    failed_id bigint;
    launched boolean;
    started integer;
    dozing boolean;
    woken boolean;
    canceled boolean;
    left_doze boolean;
    fenced_out boolean := false;
    entered boolean;
    doze_s float8 := 0.2;
    seen_xids text;
    quiet_since timestamptz := pg_catalog.clock_timestamp();
    xids text;
    poll_ms integer := 25;
    idle_ms integer := 3000;
    w record;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false);
    PERFORM pg_catalog.set_config('statement_timeout', '0', false);
    PERFORM pg_catalog.set_config('idle_in_transaction_session_timeout', '0', false);
    PERFORM pg_catalog.set_config('lock_timeout', pgbg._setting_int('lock_timeout_ms') || 'ms', false);
    IF NOT pgbg._supervisor_register() THEN
        RETURN;  -- another supervisor of this role is alive
    END IF;
    COMMIT;
    LOOP
        BEGIN
            IF pg_catalog.clock_timestamp() - settings_read > interval '1 second' THEN
                -- a changed setting counts within a second; not read on every pass
                poll_ms := pgbg._setting_int('poll_ms');
                idle_ms := pgbg._setting_int('supervisor_idle_ms');
                settings_read := pg_catalog.clock_timestamp();
            END IF;
            active := pgbg._tend_all();
        EXCEPTION WHEN lock_not_available THEN
            PERFORM pgbg._supervisor_note(SQLERRM);
            active := 1;
        END;
        COMMIT;
        EXIT WHEN pg_catalog.current_setting('pgbg.supervisor_stop', true) = 'on';
        -- Claim every job that may start now (committed before any launches), then launch
        -- them one at a time, in order, each in a transaction of its own. When one cannot be
        -- launched (no slot, or pg_background cannot be called) the rest go back to the queue
        -- after it, in order; after a lock timeout they stay claimed and come back first on
        -- the next pass (pgbg._claim_batch()).
        started := 0;
        claimed_ids := '{}';
        BEGIN
            claimed_ids := pgbg._claim_batch();
        EXCEPTION WHEN lock_not_available THEN
            PERFORM pgbg._supervisor_note(SQLERRM);
        END;
        COMMIT;
        launched := true;
        failed_id := NULL;
        FOREACH claimed IN ARRAY claimed_ids LOOP
            IF failed_id IS NOT NULL THEN
                BEGIN
                    PERFORM pgbg._record_requeued(claimed, (SELECT j.reason FROM pgbg.job j WHERE j.id = failed_id));
                EXCEPTION WHEN lock_not_available THEN
                    PERFORM pgbg._supervisor_note(SQLERRM);
                END;
                COMMIT;
                CONTINUE;
            END IF;
            EXIT WHEN NOT launched;
            BEGIN
                launched := pgbg._launch_claimed(claimed);
                IF NOT launched THEN
                    failed_id := claimed;  -- queued again
                END IF;
            EXCEPTION WHEN lock_not_available THEN
                -- the job's row is locked before anything launches: nothing ran, and
                -- pgbg._claim_batch() hands the job back on the next pass
                PERFORM pgbg._supervisor_note(SQLERRM);
                launched := false;
            END;
            COMMIT;
            IF launched THEN
                active := active + 1;
                started := started + 1;
            END IF;
        END LOOP;
        EXIT WHEN pg_catalog.current_setting('pgbg.supervisor_stop', true) = 'on';
        IF pg_catalog.clock_timestamp() - last_prune > interval '60 seconds' THEN
            BEGIN
                PERFORM pgbg._autoprune();
            EXCEPTION WHEN lock_not_available THEN
                PERFORM pgbg._supervisor_note(SQLERRM);
            END;
            last_prune := pg_catalog.clock_timestamp();
            COMMIT;
        END IF;
        IF active > 0 THEN
            idle_since := pg_catalog.clock_timestamp();
        ELSIF pg_catalog.clock_timestamp() - idle_since > pg_catalog.make_interval(secs => idle_ms / 1000.0) THEN
            -- Leave, but first unregister and look once more: a job submitted while this
            -- supervisor was registered saw a live one and started none.
            PERFORM pgbg._supervisor_unregister();
            COMMIT;
            EXIT WHEN NOT EXISTS (SELECT 1 FROM pgbg.job j
                                   WHERE j.owner = current_user AND j.state = 'queued');
            EXIT WHEN NOT pgbg._supervisor_register();
            COMMIT;
            idle_since := pg_catalog.clock_timestamp();
        END IF;
        IF started = 0 THEN
            -- Nothing started this pass (after starting jobs, look again at once: short jobs
            -- may have ended, and more may be queued). Wait for the oldest running job's
            -- worker to stop, at most poll_ms.
            SELECT j.id, j.worker_pid, j.worker_cookie INTO w FROM pgbg.job j
             WHERE j.owner = current_user AND j.state = 'running' AND j.worker_pid IS NOT NULL
               AND j.supervisor_pid = pg_catalog.pg_backend_pid()
             ORDER BY j.id LIMIT 1;
            IF w.id IS NOT NULL THEN
                BEGIN
                    PERFORM pgbg._bg_wait(w.worker_pid, w.worker_cookie, poll_ms);
                EXCEPTION WHEN OTHERS THEN
                    -- not a usable handle of this session (pgbg._tend() tells on the next
                    -- pass); OTHERS leaves out a cancel of this supervisor itself
                    PERFORM pg_catalog.pg_sleep(poll_ms / 1000.0);
                END;
            ELSIF EXISTS (SELECT 1 FROM pgbg.job j
                           WHERE j.owner = current_user AND j.state IN ('queued', 'starting', 'running')) THEN
                -- queued jobs wait for a free slot or for their group: look again after poll_ms
                COMMIT;
                PERFORM pg_catalog.pg_sleep(poll_ms / 1000.0);
            ELSE
                -- Nothing to do: doze until a session of this role rings (fn_25_doorbell.sql),
                -- until idle_ms has passed, 200 ms a transaction, or 1 s once the server has been
                -- quiet for a second (settings are read again every 5 seconds).
                -- Only reads and sleeps run inside the doze: a cancel there ends the doze, nothing
                -- else. Should the doorbell's key be held by someone else, it looks for work every
                -- poll_ms.
                dozing := false;  -- holds the doorbell's key (from one sleep to the next, commits between)
                LOOP
                    COMMIT;
                    woken := false;
                    canceled := false;
                    left_doze := false;
                    entered := false;
                    LOOP
                        -- Everything from taking the key to letting it go runs inside this block:
                        -- a ring that arrives between two statements of the doze (even in a
                        -- handler below) is caught here, and the doze is left again from the top
                        -- (pgbg._supervisor_doze_end() does nothing once the key is gone).
                        BEGIN
                            IF NOT entered THEN
                                entered := true;
                                BEGIN
                                    -- fenced out by someone else: stay out while the fence's key is held
                                    IF NOT dozing AND NOT (fenced_out AND pgbg._fenced(pg_catalog.pg_backend_pid())) THEN
                                        dozing := pgbg._supervisor_doze_begin();
                                    END IF;
                                    IF pg_catalog.clock_timestamp() - settings_read >= interval '5 seconds' THEN
                                        poll_ms := pgbg._setting_int('poll_ms');
                                        idle_ms := pgbg._setting_int('supervisor_idle_ms');
                                        settings_read := pg_catalog.clock_timestamp();
                                    END IF;
                                    IF pg_catalog.clock_timestamp() - idle_since > pg_catalog.make_interval(secs => idle_ms / 1000.0)
                                       OR EXISTS (SELECT 1 FROM pgbg.job j
                                                   WHERE j.owner = current_user AND j.state IN ('queued', 'starting', 'running')) THEN
                                        woken := true;
                                    ELSIF NOT dozing THEN
                                        PERFORM pg_catalog.pg_sleep(poll_ms / 1000.0);
                                    ELSE
                                        -- One short sleep a transaction: after a COMMIT the procedure
                                        -- holds a snapshot until the next, and a VACUUM cannot remove
                                        -- rows deleted after it was taken (nor can a CREATE INDEX
                                        -- CONCURRENTLY finish while it lasts). 200 ms; 1 s once no
                                        -- transaction of the server has ended for a second (its
                                        -- snapshot then holds back nothing when it is taken), which
                                        -- saves four wakes of five on an idle server. Only a write
                                        -- that ends such a quiet second waits up to 1 s; the next
                                        -- sleeps are 200 ms again.
                                        xids := pg_catalog.pg_current_snapshot()::text;
                                        IF xids IS DISTINCT FROM seen_xids THEN
                                            seen_xids := xids;
                                            quiet_since := pg_catalog.clock_timestamp();
                                        END IF;
                                        doze_s := CASE WHEN pg_catalog.clock_timestamp() - quiet_since >= interval '1 second'
                                                       THEN 1.0 ELSE 0.2 END;
                                        PERFORM pg_catalog.pg_sleep(GREATEST(0.001, LEAST(doze_s,
                                            idle_ms / 1000.0 - pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - idle_since))));
                                    END IF;
                                EXCEPTION
                                    WHEN query_canceled THEN
                                        woken := true;
                                        canceled := true;
                                    WHEN lock_not_available THEN
                                        woken := true;  -- a pass now
                                END;
                            END IF;
                            -- Commit before the next sleep still in the region, when no waker is in
                            -- the middle of a ring and none can start one before this commits: the
                            -- fence's key (FENCE_KEY, its pid), exclusively (fn_25_doorbell.sql). A
                            -- cancel sent before is caught by the next statement, still in this block.
                            IF dozing AND NOT woken
                               AND pg_catalog.pg_try_advisory_xact_lock(1885823592, pg_catalog.pg_backend_pid()) THEN
                                fenced_out := false;
                                EXIT;
                            END IF;
                            -- Someone holds the fence's key (shared or not): a waker ringing now, or
                            -- another role that would keep every ring out, in which case look for
                            -- work every poll_ms outside the region until the key is free.
                            fenced_out := (dozing OR fenced_out) AND NOT woken;
                            left_doze := pgbg._supervisor_doze_end();
                            dozing := false;
                            EXIT;
                        EXCEPTION
                            WHEN query_canceled THEN
                                woken := true;
                                canceled := true;
                        END;
                    END LOOP;
                    IF left_doze IS NULL THEN
                        -- a session of its role held its row beyond lock_timeout: leave now,
                        -- no step taken (fn_25_doorbell.sql); the next launch starts one
                        RETURN;
                    END IF;
                    canceled := canceled OR left_doze;
                    IF canceled THEN
                        -- Rung, or canceled or terminated by someone (fn_25_doorbell.sql): leave
                        -- after this pass as if idle for idle_ms, unless it finds a job to do.
                        idle_since := pg_catalog.clock_timestamp() - pg_catalog.make_interval(secs => idle_ms / 1000.0 + 1);
                        woken := true;
                    END IF;
                    EXIT WHEN woken;
                END LOOP;
            END IF;
        END IF;
        COMMIT;
    END LOOP;
    IF pg_catalog.current_setting('pgbg.supervisor_stop', true) = 'on' THEN
        -- registered no longer; the note stays readable in the server log
        PERFORM pgbg._supervisor_unregister();
        COMMIT;
    END IF;
END
$$;
