-- Tending running jobs: each pass of the supervisor looks at every job it runs, and acts on
-- a detach or cancel request, a timeout (pgbg._stop_due(), the one rule), progress, and the
-- end of the job. These run with the supervisor's role's rights (they call pg_background
-- with the handles this session holds) and write through the recorders of fn_30_record.sql.

-- Is the job's worker running its statement, by pid and start time? pgbg signals a worker only
-- then: never one whose handle may carry a wrong pid (1.8, a job that ended before its launch
-- returned), and never one still starting up (pg_background 1.8's worker crashed, taking the
-- whole cluster through a restart, when SIGTERM reached it during its start).
CREATE OR REPLACE FUNCTION pgbg._worker_busy(j pgbg.job)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a
                    WHERE a.pid = j.worker_pid AND a.backend_start = j.worker_started
                      AND a.backend_type = 'pg_background' AND a.state = 'active')
$$;

CREATE OR REPLACE FUNCTION pgbg._tend(j pgbg.job)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    o record;
    p record;
    due text;
BEGIN
    SELECT * INTO o FROM pgbg._bg_outcome(j.worker_pid, j.worker_cookie);
    IF o.state IS NULL THEN
        -- pg_background does not list the handle in this session. Seen with pg_background
        -- 2.0.3 under load: a worker that ends before its launcher sees it start comes back
        -- with an unset pid, so the handle names no worker. pgbg never signals such a pid.
        RAISE LOG 'pgbg: job % lost its handle (pid %) in supervisor %', j.id, j.worker_pid, pg_catalog.pg_backend_pid();
        IF NOT pgbg._supervised_worker_alive(j.id) THEN
            BEGIN
                -- release the entry, if the extension kept one (it counts toward
                -- pg_background.max_workers); detach signals nothing
                PERFORM pgbg._bg_detach(j.worker_pid, j.worker_cookie);
            EXCEPTION WHEN OTHERS THEN
                RAISE LOG 'pgbg: job %: detach of an unusable handle: %', j.id, SQLERRM;
            END;
        END IF;
        PERFORM pgbg._record_lost(j.id,
            'pg_background handed back an unusable handle (its worker ended before pg_background saw it '
            || 'start, a pg_background 2.0.3 race): it may have run; its outcome is unknown');
        RETURN;
    END IF;

    IF o.state = 'starting' AND NOT coalesce(o.completed, false) THEN
        RETURN;  -- launched, not yet running: nothing to read or signal yet
    END IF;

    IF j.worker_started IS NULL AND NOT coalesce(o.completed, false) THEN
        IF pgbg._record_worker_started(j.id) THEN
            SELECT * INTO j FROM pgbg.job x WHERE x.id = j.id;
        END IF;
    END IF;

    IF NOT coalesce(o.completed, false) THEN
        due := pgbg._stop_due(j);
        IF due = 'detach' THEN
            PERFORM pgbg._bg_detach(j.worker_pid, j.worker_cookie);
            PERFORM pgbg._record_detached(j.id);
            RETURN;
        END IF;
    END IF;

    IF NOT coalesce(o.completed, false) AND o.state = 'running' THEN
        IF due = 'cancel' AND j.cancel_signalled_at IS NULL AND coalesce(j.cancel_grace_ms, 0) > 0 THEN
            IF NOT pgbg._worker_busy(j) THEN
                RETURN;  -- not running its statement yet: signal it on a later pass, never blindly
            END IF;
            -- SIGINT: stop the statement; only the backend this job started (pid and start
            -- time match), so a reused pid is never signalled
            PERFORM pg_catalog.pg_cancel_backend(a.pid) FROM pg_catalog.pg_stat_activity a
             WHERE a.pid = j.worker_pid AND a.backend_start = j.worker_started;
            PERFORM pgbg._record_stop_signal(j.id, false);
            RETURN;
        ELSIF due IN ('cancel', 'timeout') AND NOT j.cancel_terminated
              AND (j.cancel_signalled_at IS NULL OR due = 'timeout'
                   OR pg_catalog.clock_timestamp() >= j.cancel_signalled_at
                                                       + pg_catalog.make_interval(secs => j.cancel_grace_ms / 1000.0)) THEN
            IF NOT pgbg._worker_busy(j) THEN
                RETURN;  -- likewise: a later pass, once it runs its statement (or has ended)
            END IF;
            PERFORM pgbg._bg_cancel(j.worker_pid, j.worker_cookie);  -- SIGTERM, never SIGKILL
            PERFORM pgbg._record_stop_signal(j.id, true);
            RETURN;
        ELSIF due IS NOT NULL THEN
            RETURN;  -- signalled already: wait for it to stop
        END IF;

        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a
                        WHERE a.pid = j.worker_pid AND a.wait_event = 'MessageQueuePutMessage') THEN
            SELECT * INTO p FROM pgbg._bg_get_progress(j.worker_pid, j.worker_cookie);
            IF p.pct IS DISTINCT FROM j.progress_pct OR p.msg IS DISTINCT FROM j.progress_msg THEN
                PERFORM pgbg._record_progress(j.id, p.pct, p.msg);
            END IF;
            RETURN;
        END IF;
    END IF;

    PERFORM pgbg._finish(j, o);
END
$$;

-- One pass over this supervisor's running jobs. Returns how many jobs keep it busy: for a
-- current supervisor every active job of its role (queued ones wait for it); for version
-- 1's loop only those it holds, and it starts a current supervisor for the queued ones.
CREATE OR REPLACE FUNCTION pgbg._tend_all()
RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    me pgbg.supervisor := pgbg._supervisor_self();
    j pgbg.job;
    n integer := 0;
    v_message text;
BEGIN
    FOR j IN SELECT * FROM pgbg.job x
              WHERE x.owner = me.role AND x.state = 'running' AND pgbg._supervised_by(x, me)
              ORDER BY x.id
    LOOP
        BEGIN
            PERFORM pgbg._tend(j);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_message = MESSAGE_TEXT;
            PERFORM pgbg._record_tend_error(j.id, v_message);
            IF SQLSTATE = '42883' THEN
                -- pg_background cannot be called (see pgbg._launch_claimed): stop after this pass
                PERFORM pgbg._supervisor_stop(v_message);
            END IF;
        END;
    END LOOP;
    IF me.legacy THEN
        IF EXISTS (SELECT 1 FROM pgbg.job x WHERE x.owner = me.role AND x.state = 'queued') THEN
            PERFORM pgbg.ensure_supervisor();  -- hand the queue over to the current code
        END IF;
        SELECT pg_catalog.count(*) INTO n FROM pgbg.job x
         WHERE x.owner = me.role AND x.state IN ('starting', 'running') AND x.supervisor_pid = me.pid;
        RETURN n;
    END IF;
    SELECT pg_catalog.count(*) INTO n FROM pgbg.job x
     WHERE x.owner = me.role AND x.state IN ('queued', 'starting', 'running');
    RETURN n;
END
$$;
