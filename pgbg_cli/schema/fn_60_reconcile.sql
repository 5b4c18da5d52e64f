-- Reconcile: make every active job tell the truth once its supervisor is gone. Jobs whose
-- supervisor is not alive are orphans; an orphan whose worker still runs stays 'running'
-- (and is stopped by verified pid when a cancel, detach or timeout is due); one whose
-- worker is gone ends with the reason. Every command that reads jobs runs it, for the
-- jobs its role may manage (its own; all for pgbg_admin).

-- Decides and records (as pgbg_owner); returns the workers to signal, verified by pid and
-- start time, for pgbg.reconcile() to signal with the caller's own rights.
CREATE OR REPLACE FUNCTION pgbg._reconcile_scan(p_actor name DEFAULT current_user,
    p_proof text DEFAULT pgbg._proof())
RETURNS TABLE (job_id bigint, pid integer, backend_start timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j pgbg.job;
    w integer;
    due text;
    why text;
    restarted timestamptz;
    admin boolean := pgbg._is_admin(p_actor);
BEGIN
    PERFORM pgbg._actor(p_actor, p_proof);
    restarted := pgbg.server_started();
    -- Only jobs whose supervisor is not alive, with the live supervisors read once (not once
    -- per job, and locking none of the supervised jobs): `pgbg list --watch` calls this
    -- every refresh.
    FOR j IN WITH live AS MATERIALIZED (
                 SELECT s AS sup
                   FROM pgbg.supervisor s
                   JOIN pg_catalog.pg_stat_activity a ON a.pid = s.pid AND a.backend_start = s.backend_start)
             SELECT jb.* FROM pgbg.job jb
              WHERE jb.state IN ('starting', 'running')
                AND (jb.owner = p_actor OR admin)  -- pgbg._may_manage(), inlined: once per job
                AND NOT EXISTS (SELECT 1 FROM live  -- pgbg._supervised_by(), inlined likewise
                                 WHERE (live.sup).role = jb.owner AND (live.sup).pid = jb.supervisor_pid
                                   AND ((live.sup).backend_start = jb.supervisor_start
                                        OR ((live.sup).legacy AND jb.supervisor_start IS NULL)))
              ORDER BY jb.id FOR UPDATE OF jb SKIP LOCKED
    LOOP
      -- one job's trouble (say, a value no interval can hold) never stops the others
      BEGIN
        w := pgbg._live_worker(j);
        IF w IS NOT NULL THEN
            due := pgbg._stop_due(j);
            IF due = 'detach' THEN
                UPDATE pgbg.job SET state = 'detached',
                       reason = 'detached: pgbg stopped tracking it; the worker goes on'
                 WHERE id = j.id;
            ELSIF due IS NOT NULL THEN
                IF due = 'timeout' AND j.cancel_requested_at IS NULL THEN
                    UPDATE pgbg.job SET cancel_requested_at = pg_catalog.clock_timestamp(), cancel_reason = 'timeout',
                           cancel_by = j.owner
                     WHERE id = j.id;
                END IF;
                job_id := j.id;
                pid := w;
                -- only a worker running its statement is signalled (see pgbg._worker_busy());
                -- one still starting is left to the next reconcile
                SELECT a.backend_start INTO backend_start FROM pg_catalog.pg_stat_activity a
                 WHERE a.pid = w AND a.state = 'active';
                IF FOUND THEN
                    RETURN NEXT;
                END IF;
            ELSIF j.reason IS NULL OR j.reason NOT LIKE 'orphaned%' THEN
                UPDATE pgbg.job
                   SET reason = 'orphaned: its supervisor exited; the worker still runs (pid '
                                || w || ') but its outcome will not be recorded',
                       worker_pid = coalesce(worker_pid, w)
                 WHERE id = j.id;
            END IF;
            CONTINUE;
        END IF;
        why := CASE
            -- the time says when it ended at the latest: finished_at is when this noticed, which
            -- may be days later. A job claimed (starting) by a supervisor of after the restart
            -- did not run through it: its supervisor's start counts before its queueing.
            WHEN coalesce(j.worker_started, j.started_at, j.supervisor_start, j.queued_at) < restarted
                THEN pg_catalog.format('the server restarted at %s while the job ran; its outcome is unknown',
                                       pg_catalog.to_char(restarted AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'))
            WHEN j.cancel_reason = 'timeout'
                THEN pg_catalog.format('ran longer than its timeout of %s; stopped while no supervisor watched it',
                                       pgbg._duration_text(j.timeout_ms))
            WHEN j.cancel_requested_at IS NOT NULL
                THEN 'the worker stopped after a cancel while no supervisor watched it'
            WHEN j.state = 'starting' THEN 'its supervisor exited while starting it'
            ELSE 'its supervisor exited before recording the outcome' END;
        UPDATE pgbg.job
           SET state = CASE WHEN j.cancel_requested_at IS NOT NULL AND j.state = 'running'
                            THEN pgbg._stopped_state(j, true)
                            WHEN j.cancel_requested_at IS NOT NULL THEN 'canceled'
                            ELSE 'lost' END,
               reason = why
         WHERE id = j.id;
      EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'pgbg: reconcile skipped job %: %', j.id, SQLERRM;
      END;
    END LOOP;
END
$$;

-- A signal reconcile could not send (the caller may not signal that backend: PostgreSQL
-- keeps pg_signal_backend away from superusers' backends), kept on the job in fixed words:
-- only for an orphan (its supervisor gone) with a cancel, detach or timeout due.
CREATE OR REPLACE FUNCTION pgbg._reconcile_note(p_id bigint, p_actor name DEFAULT current_user,
    p_proof text DEFAULT pgbg._proof())
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j pgbg.job;
BEGIN
    PERFORM pgbg._actor(p_actor, p_proof);
    SELECT * INTO j FROM pgbg.job x
     WHERE x.id = p_id AND x.state = 'running' AND pgbg._may_manage(p_actor, x.owner)
       AND pgbg._stop_due(x) IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pgbg.supervisor s
                        WHERE pgbg._supervised_by(x, s) AND pgbg._backend_alive(s.pid, s.backend_start))
     FOR UPDATE;
    IF FOUND THEN
        UPDATE pgbg.job
           SET reason = pg_catalog.format('orphaned: %s may not signal its worker (pid %s); '
                                          'its owner or a superuser can stop it', p_actor, j.worker_pid)
         WHERE id = j.id;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION pgbg.reconcile()
RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    o record;
    n integer := 0;
BEGIN
    FOR o IN SELECT * FROM pgbg._reconcile_scan() LOOP
        BEGIN
            -- SIGTERM (never SIGKILL) with the caller's own rights, to the backend whose pid
            -- and start time were verified just now
            PERFORM pg_catalog.pg_terminate_backend(a.pid) FROM pg_catalog.pg_stat_activity a
             WHERE a.pid = o.pid AND a.backend_start = o.backend_start;
            n := n + 1;
        EXCEPTION WHEN insufficient_privilege THEN
            PERFORM pgbg._reconcile_note(o.job_id);
        END;
    END LOOP;
    RETURN n;
END
$$;
