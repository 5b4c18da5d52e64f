-- pgbg's server-side functions: submission, supervision, reconciliation, pruning.
-- Re-applied (CREATE OR REPLACE) by every `pgbg init`, after the versioned table files.
-- The pg_background calls go through the pgbg._bg_* wrappers made from api.sql, so this
-- file names no extension schema and no version-specific function.
--
-- Supervision: one supervisor per (database, role) runs `CALL pgbg.supervise()` inside a
-- pg_background worker launched by that role. It launches the role's queued jobs as
-- workers it owns, watches them in short transactions (never holding the
-- CREATE INDEX CONCURRENTLY deadlock), records each outcome, then detaches. N running jobs
-- of a role hold N+1 worker slots. It holds a session advisory lock (class 1885823591,
-- key: the role) while alive, which is how every other session tells it is alive.

CREATE OR REPLACE FUNCTION pgbg.setting(p_name text, p_default text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT value FROM pgbg.settings WHERE name = p_name), p_default)
$$;

CREATE OR REPLACE FUNCTION pgbg._lock_key(p_role name)
RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT (oid::bigint % 2147483648)::integer FROM pg_roles WHERE rolname = p_role
$$;

-- The pid of the live supervisor of p_role in this database, or NULL.
CREATE OR REPLACE FUNCTION pgbg.supervisor_pid(p_role name DEFAULT current_user)
RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT l.pid
      FROM pg_locks l
     WHERE l.locktype = 'advisory' AND l.granted
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND l.classid = 1885823591 AND l.objsubid = 2
       AND l.objid::bigint = pgbg._lock_key(p_role)
     LIMIT 1
$$;

-- When the server last started, crash restarts included: after a backend crash the
-- postmaster restarts every other process (the checkpointer too) but keeps its own start
-- time. SECURITY DEFINER because the server's own processes show their start time only to
-- privileged roles; when the installing role has no such privilege, this is the postmaster's.
CREATE OR REPLACE FUNCTION pgbg.server_started()
RETURNS timestamptz LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT greatest(pg_postmaster_start_time(),
                    (SELECT min(a.backend_start) FROM pg_stat_activity a WHERE a.backend_type = 'checkpointer'))
$$;

CREATE OR REPLACE FUNCTION pgbg.is_final(p_state text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT p_state IN ('succeeded', 'failed', 'canceled', 'timed_out', 'lost', 'detached')
$$;

-- Guard: what a job runs, and as whom, never changes after submission; a new job always
-- starts queued with no worker, so no row can point pgbg at someone else's backend.
CREATE OR REPLACE FUNCTION pgbg._job_guard()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.state := 'queued';
        NEW.worker_pid := NULL; NEW.worker_cookie := NULL; NEW.worker_started := NULL;
        NEW.supervisor_pid := NULL; NEW.result := NULL;
        NEW.started_at := NULL; NEW.finished_at := NULL;
        NEW.cancel_requested_at := NULL; NEW.cancel_signalled_at := NULL;
        NEW.detach_requested_at := NULL;
        RETURN NEW;
    END IF;
    IF NEW.id <> OLD.id OR NEW.cookie <> OLD.cookie OR NEW.owner <> OLD.owner
       OR NEW.sql IS DISTINCT FROM OLD.sql OR NEW.queued_at <> OLD.queued_at
       OR NEW.label IS DISTINCT FROM OLD.label OR NEW.timeout_ms IS DISTINCT FROM OLD.timeout_ms
       OR NEW.queue_size <> OLD.queue_size OR NEW.want_result <> OLD.want_result
       OR NEW.result_types IS DISTINCT FROM OLD.result_types
       OR NEW.result_typmods IS DISTINCT FROM OLD.result_typmods
       OR NEW.search_path IS DISTINCT FROM OLD.search_path THEN
        RAISE EXCEPTION 'pgbg: what a job runs and who owns it cannot change (job %)', OLD.id
            USING ERRCODE = '42501';
    END IF;
    IF OLD.owner <> current_user
       AND (NEW.worker_pid IS DISTINCT FROM OLD.worker_pid
            OR NEW.worker_started IS DISTINCT FROM OLD.worker_started
            OR NEW.supervisor_pid IS DISTINCT FROM OLD.supervisor_pid) THEN
        RAISE EXCEPTION 'pgbg: only the owner''s supervisor tracks job %', OLD.id
            USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS job_guard ON pgbg.job;
CREATE TRIGGER job_guard BEFORE INSERT OR UPDATE ON pgbg.job
    FOR EACH ROW EXECUTE FUNCTION pgbg._job_guard();

-- Submit a job; it starts queued. Call pgbg.ensure_supervisor() after this commits.
CREATE OR REPLACE FUNCTION pgbg.submit(
    p_sql text,
    p_label text DEFAULT NULL,
    p_timeout_ms bigint DEFAULT NULL,
    p_queue_size integer DEFAULT 0,
    p_want_result boolean DEFAULT false,
    p_result_types oid[] DEFAULT NULL,
    p_result_typmods integer[] DEFAULT NULL,
    p_result_names text[] DEFAULT NULL)
RETURNS SETOF pgbg.job LANGUAGE sql AS $$
    INSERT INTO pgbg.job (sql, label, timeout_ms, queue_size, want_result,
                          result_types, result_typmods, result_names)
    VALUES (p_sql, p_label, p_timeout_ms, coalesce(p_queue_size, 0), coalesce(p_want_result, false),
            p_result_types, p_result_typmods, p_result_names)
    RETURNING *
$$;

-- Start this role's supervisor unless one is alive. Returns the new worker's pid or NULL.
CREATE OR REPLACE FUNCTION pgbg.ensure_supervisor()
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    h record;
BEGIN
    IF pgbg.supervisor_pid(current_user) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    SELECT * INTO h FROM pgbg._bg_launch('CALL pgbg.supervise()', 0, 'pgbg:supervisor');
    PERFORM pgbg._bg_detach(h.pid, h.cookie);
    RETURN h.pid;
END
$$;

CREATE OR REPLACE FUNCTION pgbg._notify(p_id bigint)
RETURNS void LANGUAGE sql AS $$
    SELECT pg_notify('pgbg_jobs', p_id::text)
$$;

-- The live pg_background backend that runs job j, verified by pid and start time
-- (or, while its start time is not recorded yet, by the label pgbg gave it), and
-- belonging to the job's owner. NULL when it no longer runs.
CREATE OR REPLACE FUNCTION pgbg._live_worker(j pgbg.job)
RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT a.pid
      FROM pg_stat_activity a
     WHERE a.backend_type = 'pg_background'
       AND a.usename = j.owner
       AND (a.pid = j.worker_pid OR j.worker_pid IS NULL)
       AND CASE WHEN j.worker_started IS NOT NULL THEN a.backend_start = j.worker_started
                ELSE a.application_name LIKE 'pg\_background:pgbg:' || j.id || ':%'
                     AND a.backend_start >= j.queued_at END
     LIMIT 1
$$;

-- Collect a finished (or result-blocked) job's outcome; j must be locked by the caller.
CREATE OR REPLACE FUNCTION pgbg._finish(j pgbg.job, o record)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    e record;
    ri record;
    coldef text;
    res jsonb;
    nrows bigint;
    final_state text;
    v_sqlstate text; v_message text; v_detail text; v_hint text; v_context text;
    v_tag text := o.command_tag;
    v_rows bigint := o.row_count;
    v_finished timestamptz;
    v_last text;
    consumed boolean := false;
    unreadable boolean := false;
BEGIN
    SELECT * INTO ri FROM pgbg._bg_result_info(j.worker_pid, j.worker_cookie);
    v_finished := ri.finished_at;
    IF coalesce(o.has_error, false) THEN
        SELECT * INTO e FROM pgbg._bg_error_info(j.worker_pid, j.worker_cookie);
        v_sqlstate := coalesce(e.sqlstate, o.sqlstate);
        v_message := coalesce(e.message, o.error_message);
        v_detail := e.detail; v_hint := e.hint; v_context := e.context;
    ELSIF j.result_types IS NOT NULL AND array_length(j.result_types, 1) > 0
          AND NOT EXISTS (SELECT 1 FROM pg_type WHERE oid = ANY (j.result_types) AND typtype = 'p') THEN
        -- pseudo-typed columns (void, record) cannot be named in a column definition list
        SELECT string_agg(format('c%s %s', u.i, format_type(u.t, u.m)), ', ' ORDER BY u.i)
          INTO coldef
          FROM unnest(j.result_types, j.result_typmods) WITH ORDINALITY AS u(t, m, i);
        BEGIN
            IF j.want_result THEN
                EXECUTE format('SELECT coalesce(jsonb_agg(to_jsonb(r)), ''[]''::jsonb), count(*) '
                               'FROM %s($1, $2) AS r(%s)', pgbg._bg_result_fn(), coldef)
                   INTO res, nrows USING j.worker_pid, j.worker_cookie;
            ELSE
                EXECUTE format('SELECT count(*) FROM %s($1, $2) AS r(%s)', pgbg._bg_result_fn(), coldef)
                   INTO nrows USING j.worker_pid, j.worker_cookie;
            END IF;
            consumed := true;
            v_rows := nrows;
            v_tag := coalesce(v_tag, 'SELECT');
        EXCEPTION WHEN OTHERS THEN
            consumed := true;
            GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                                    v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT,
                                    v_context = PG_EXCEPTION_CONTEXT;
        END;
    ELSIF NOT coalesce(o.completed, false) THEN
        -- Still running, blocked on a queue full of what nobody reads while it runs: a flood of
        -- NOTICE or INFO (VACUUM VERBOSE of many tables), or rows of a statement pgbg could not
        -- describe at launch. Read it off; a statement without rows comes back as one text row,
        -- its command tag (e.g. "INSERT 0 5").
        BEGIN
            EXECUTE format('SELECT (array_agg(r.c1))[count(*)::int] FROM %s($1, $2) AS r(c1 text)',
                           pgbg._bg_result_fn())
               INTO v_last USING j.worker_pid, j.worker_cookie;
            consumed := true;
            v_tag := coalesce(nullif(regexp_replace(v_last, '( [0-9]+)+$', ''), ''), v_tag);
            v_rows := coalesce(substring(v_last FROM ' ([0-9]+)$')::bigint, v_rows);
        EXCEPTION WHEN OTHERS THEN
            consumed := true;
            GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                                    v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT,
                                    v_context = PG_EXCEPTION_CONTEXT;
            IF v_message LIKE 'remote query result rowtype does not match%' THEN
                -- rows of a shape pgbg could not name: the read stopped and released them; the
                -- worker finishes unread, so nothing tells how it ended
                unreadable := true;
                v_sqlstate := NULL; v_message := NULL; v_detail := NULL; v_hint := NULL; v_context := NULL;
            END IF;
        END;
    END IF;

    IF unreadable THEN
        final_state := 'lost';
    ELSIF v_sqlstate IS NOT NULL THEN
        final_state := CASE
            WHEN j.cancel_reason = 'timeout' THEN 'timed_out'
            WHEN j.cancel_requested_at IS NOT NULL THEN 'canceled'
            ELSE 'failed' END;
    ELSIF o.state = 'canceled' THEN
        final_state := CASE WHEN j.cancel_reason = 'timeout' THEN 'timed_out' ELSE 'canceled' END;
    ELSE
        final_state := 'succeeded';
    END IF;

    IF NOT consumed THEN
        BEGIN
            PERFORM pgbg._bg_detach(j.worker_pid, j.worker_cookie);
        EXCEPTION WHEN OTHERS THEN
            NULL;  -- already gone from this session: nothing left to release
        END;
    END IF;

    UPDATE pgbg.job
       SET state = final_state,
           -- the worker's own clock for both ends, so elapsed is never negative
           started_at = coalesce(least(ri.started_at, v_finished), started_at),
           finished_at = greatest(coalesce(v_finished, clock_timestamp()),
                                  coalesce(ri.started_at, started_at)),
           sqlstate = v_sqlstate, message = v_message, detail = v_detail, hint = v_hint,
           context = v_context, command_tag = v_tag, row_count = v_rows,
           result = CASE WHEN j.want_result AND final_state = 'succeeded' THEN res END,
           reason = CASE
               WHEN final_state = 'timed_out' THEN format('ran longer than its timeout of %s ms', j.timeout_ms)
               WHEN final_state = 'canceled' THEN format('canceled by %s', coalesce(j.cancel_by, j.owner))
               WHEN final_state = 'succeeded' AND j.cancel_requested_at IS NOT NULL
                   THEN 'finished before the cancel took effect'
               WHEN unreadable THEN 'it returned rows pgbg could not describe at launch (several statements?) '
                   || 'and they filled its queue: pgbg let it finish unread, so its outcome is unknown'
               ELSE reason END
     WHERE id = j.id;
    PERFORM pgbg._notify(j.id);
END
$$;

-- Look after one running job of this supervisor: cancel, timeout, detach, progress, outcome.
CREATE OR REPLACE FUNCTION pgbg._tend(j pgbg.job)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    o record;
    p record;
    blocked boolean;
BEGIN
    SELECT * INTO o FROM pgbg._bg_outcome(j.worker_pid, j.worker_cookie);
    IF o.state IS NULL THEN
        -- pg_background does not list the handle in this session. Seen with pg_background 2.0.3
        -- under load: a worker that ends before its launcher sees it start comes back with an
        -- unset pid (WaitForBackgroundWorkerStartup returns BGWH_STOPPED without setting it), so
        -- the handle names no worker. pgbg never signals such a pid.
        RAISE LOG 'pgbg: job % lost its handle (pid %) in supervisor %', j.id, j.worker_pid, pg_backend_pid();
        IF pgbg._live_worker(j) IS NOT NULL THEN
            -- still running: reconcile treats it as an orphan (cancellable by verified pid)
            UPDATE pgbg.job SET supervisor_pid = NULL WHERE id = j.id;
        ELSE
            BEGIN
                -- release the entry, if the extension kept one (it counts toward
                -- pg_background.max_workers); detach signals nothing
                PERFORM pgbg._bg_detach(j.worker_pid, j.worker_cookie);
            EXCEPTION WHEN OTHERS THEN
                NULL;
            END;
            UPDATE pgbg.job
               SET state = 'lost', finished_at = clock_timestamp(),
                   reason = 'pg_background handed back an unusable handle (its worker ended before '
                            || 'pg_background saw it start, a pg_background 2.0.3 race): it may have run; its '
                            || 'outcome is unknown'
             WHERE id = j.id;
            PERFORM pgbg._notify(j.id);
        END IF;
        RETURN;
    END IF;

    IF j.worker_started IS NULL AND NOT coalesce(o.completed, false) THEN
        -- A worker shows in pg_stat_activity a moment after its launch returns: record its
        -- start time, which every later signal to it is checked against. While this session
        -- holds its handle and it has not completed, its pid is still its own.
        SELECT a.backend_start INTO j.worker_started FROM pg_stat_activity a
         WHERE a.pid = j.worker_pid AND a.backend_type = 'pg_background' AND a.usename = j.owner;
        IF j.worker_started IS NOT NULL THEN
            UPDATE pgbg.job SET worker_started = j.worker_started WHERE id = j.id;
        END IF;
    END IF;

    IF j.detach_requested_at IS NOT NULL AND NOT coalesce(o.completed, false) THEN
        PERFORM pgbg._bg_detach(j.worker_pid, j.worker_cookie);
        UPDATE pgbg.job
           SET state = 'detached', finished_at = clock_timestamp(),
               reason = 'detached: pgbg stopped tracking it; the worker goes on and its outcome is not recorded'
         WHERE id = j.id;
        PERFORM pgbg._notify(j.id);
        RETURN;
    END IF;

    IF NOT coalesce(o.completed, false) AND o.state = 'running' THEN
        IF j.cancel_requested_at IS NOT NULL THEN
            IF j.cancel_signalled_at IS NULL THEN
                IF coalesce(j.cancel_grace_ms, 0) > 0 AND j.worker_started IS NULL THEN
                    RETURN;  -- not in pg_stat_activity yet: signal it on a later pass, never blindly
                ELSIF coalesce(j.cancel_grace_ms, 0) > 0 THEN
                    -- SIGINT: stop the statement; only the backend this job started (pid and
                    -- start time match), so a reused pid is never signalled
                    PERFORM pg_cancel_backend(a.pid) FROM pg_stat_activity a
                     WHERE a.pid = j.worker_pid AND a.backend_start = j.worker_started;
                ELSE
                    PERFORM pgbg._bg_cancel(j.worker_pid, j.worker_cookie);
                    j.cancel_terminated := true;
                END IF;
                UPDATE pgbg.job SET cancel_signalled_at = clock_timestamp(),
                                    cancel_terminated = j.cancel_terminated
                 WHERE id = j.id;
            ELSIF NOT j.cancel_terminated
                  AND clock_timestamp() >= j.cancel_signalled_at + make_interval(secs => j.cancel_grace_ms / 1000.0) THEN
                PERFORM pgbg._bg_cancel(j.worker_pid, j.worker_cookie);  -- SIGTERM, never SIGKILL
                UPDATE pgbg.job SET cancel_terminated = true WHERE id = j.id;
            END IF;
            RETURN;
        ELSIF j.timeout_ms IS NOT NULL
              AND clock_timestamp() >= j.started_at + make_interval(secs => j.timeout_ms / 1000.0) THEN
            PERFORM pgbg._bg_cancel(j.worker_pid, j.worker_cookie);
            UPDATE pgbg.job
               SET cancel_requested_at = clock_timestamp(), cancel_signalled_at = clock_timestamp(),
                   cancel_terminated = true, cancel_reason = 'timeout', cancel_by = j.owner
             WHERE id = j.id;
            RETURN;
        END IF;

        blocked := EXISTS (
            SELECT 1 FROM pg_stat_activity
             WHERE pid = j.worker_pid AND wait_event = 'MessageQueuePutMessage');
        IF NOT blocked THEN
            SELECT * INTO p FROM pgbg._bg_get_progress(j.worker_pid, j.worker_cookie);
            IF p.pct IS DISTINCT FROM j.progress_pct OR p.msg IS DISTINCT FROM j.progress_msg THEN
                UPDATE pgbg.job SET progress_pct = p.pct, progress_msg = p.msg, progress_at = clock_timestamp()
                 WHERE id = j.id;
            END IF;
            RETURN;
        END IF;
    END IF;

    PERFORM pgbg._finish(j, o);
END
$$;

-- One pass over this supervisor's running jobs. Returns how many are still active.
CREATE OR REPLACE FUNCTION pgbg._tend_all()
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    j pgbg.job;
    n integer := 0;
    v_message text;
BEGIN
    FOR j IN SELECT * FROM pgbg.job
              WHERE owner = current_user AND state = 'running' AND supervisor_pid = pg_backend_pid()
              ORDER BY id FOR UPDATE
    LOOP
        BEGIN
            PERFORM pgbg._tend(j);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_message = MESSAGE_TEXT;
            IF pgbg._live_worker(j) IS NULL THEN
                -- the worker is gone and its outcome cannot be read: say so rather than
                -- leave the job running forever
                UPDATE pgbg.job SET state = 'lost', finished_at = clock_timestamp(),
                       reason = 'the supervisor could not read its outcome: ' || v_message
                 WHERE id = j.id;
                PERFORM pgbg._notify(j.id);
            ELSE
                UPDATE pgbg.job SET reason = 'supervisor: ' || v_message WHERE id = j.id;
            END IF;
        END;
    END LOOP;
    SELECT count(*) INTO n FROM pgbg.job
     WHERE owner = current_user AND state IN ('queued', 'starting', 'running');
    RETURN n;
END
$$;

-- Claim the next queued job of this role if the budget allows: mark it 'starting'.
-- The caller commits before launching, so a job can never run twice.
CREATE OR REPLACE FUNCTION pgbg._claim_next()
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    j pgbg.job;
    s record;
    running integer;
    cap integer;
BEGIN
    cap := least(pgbg.setting('max_running_per_role', '8')::integer,
                 coalesce(nullif(current_setting('pg_background.max_workers', true), '')::integer, 16));
    LOOP
        SELECT count(*) INTO running FROM pgbg.job
         WHERE owner = current_user AND state IN ('starting', 'running');
        IF running >= cap THEN
            RETURN NULL;
        END IF;
        SELECT * INTO j FROM pgbg.job
         WHERE owner = current_user AND state = 'queued'
         ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        IF j.cancel_requested_at IS NOT NULL OR j.detach_requested_at IS NOT NULL THEN
            UPDATE pgbg.job SET state = 'canceled', finished_at = clock_timestamp(),
                   reason = format('canceled by %s while queued', coalesce(j.cancel_by, j.owner))
             WHERE id = j.id;
            PERFORM pgbg._notify(j.id);
            CONTINUE;
        END IF;
        SELECT * INTO s FROM pgbg.worker_slots();
        IF s.max_worker_processes - s.used <= pgbg.setting('reserve_slots', '2')::integer THEN
            IF j.reason IS DISTINCT FROM 'waiting for a free worker slot' THEN
                UPDATE pgbg.job SET reason = 'waiting for a free worker slot' WHERE id = j.id;
            END IF;
            RETURN NULL;
        END IF;
        UPDATE pgbg.job SET state = 'starting', supervisor_pid = pg_backend_pid(), reason = NULL
         WHERE id = j.id;
        RETURN j.id;
    END LOOP;
END
$$;

-- Launch a claimed job. Returns false when no slot was free (the job is queued again).
CREATE OR REPLACE FUNCTION pgbg._launch_claimed(p_id bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    j pgbg.job;
    h record;
    v_state text; v_message text;
BEGIN
    SELECT * INTO j FROM pgbg.job WHERE id = p_id FOR UPDATE;
    IF j.state <> 'starting' THEN
        RETURN true;
    END IF;
    -- The worker inherits the GUC state of this session as it is now: give it the
    -- search_path of the session that submitted the job (transaction-local here).
    IF j.search_path IS NOT NULL THEN
        PERFORM set_config('search_path', j.search_path, true);
    END IF;
    -- Nobody reads a worker's notices while it runs (pgbg shows none), and once they fill its
    -- queue the worker blocks until this supervisor reads the queue to the end of the job,
    -- stalling every other job meanwhile: keep them out of the queue.
    PERFORM set_config('client_min_messages', 'warning', true);
    BEGIN
        SELECT * INTO h FROM pgbg._bg_launch(
            j.sql, j.queue_size, left('pgbg:' || j.id || ':' || coalesce(j.label, ''), 60));
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
        IF v_state IN ('53000', '53400') THEN
            -- 53000: no free slot of max_worker_processes; 53400: this session holds
            -- pg_background.max_workers handles already. Either way: queued again, not failed.
            UPDATE pgbg.job SET state = 'queued', supervisor_pid = NULL,
                   reason = 'waiting for a free worker slot' WHERE id = j.id;
            RETURN false;
        END IF;
        UPDATE pgbg.job SET state = 'failed', finished_at = clock_timestamp(), sqlstate = v_state,
               message = v_message, reason = 'could not start a worker' WHERE id = j.id;
        PERFORM pgbg._notify(j.id);
        RETURN true;
    END;
    UPDATE pgbg.job
       SET state = 'running', worker_pid = h.pid, worker_cookie = h.cookie,
           worker_started = (SELECT backend_start FROM pg_stat_activity WHERE pid = h.pid),
           started_at = clock_timestamp()
     WHERE id = j.id;
    PERFORM pgbg._notify(j.id);
    RETURN true;
END
$$;

-- Make every active job tell the truth: jobs whose supervisor is gone are orphans; an
-- orphan whose worker still runs stays 'running' (and can be canceled by pid, verified
-- by start time); one whose worker is gone becomes 'lost' with the reason.
-- Runs with the caller's rights: a role reconciles its own jobs, pgbg_admin all.
CREATE OR REPLACE FUNCTION pgbg.reconcile()
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    j pgbg.job;
    w integer;
    changed integer := 0;
    why text;
BEGIN
    -- Only jobs whose supervisor is not alive, read from pg_locks once (not once per job, and
    -- locking none of the supervised ones): `pgbg list --watch` calls this every refresh.
    FOR j IN WITH live AS MATERIALIZED (
                 SELECT l.pid, r.rolname
                   FROM pg_locks l
                   JOIN pg_roles r ON (r.oid::bigint % 2147483648) = l.objid::bigint
                  WHERE l.locktype = 'advisory' AND l.granted
                    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    AND l.classid = 1885823591 AND l.objsubid = 2)
             SELECT jb.* FROM pgbg.job jb
              WHERE jb.state IN ('starting', 'running')
                AND NOT EXISTS (SELECT 1 FROM live WHERE live.pid = jb.supervisor_pid AND live.rolname = jb.owner)
              ORDER BY jb.id FOR UPDATE OF jb SKIP LOCKED
    LOOP
        IF j.supervisor_pid IS NOT NULL AND pgbg.supervisor_pid(j.owner) = j.supervisor_pid THEN
            CONTINUE;  -- its supervisor is alive and looks after it
        END IF;
        w := pgbg._live_worker(j);
        IF w IS NOT NULL THEN
            IF j.cancel_requested_at IS NOT NULL OR j.detach_requested_at IS NOT NULL
               OR (j.timeout_ms IS NOT NULL
                   AND clock_timestamp() >= j.started_at + make_interval(secs => j.timeout_ms / 1000.0)) THEN
                IF j.detach_requested_at IS NOT NULL THEN
                    UPDATE pgbg.job SET state = 'detached', finished_at = clock_timestamp(),
                           reason = 'detached: pgbg stopped tracking it; the worker goes on' WHERE id = j.id;
                ELSE
                    BEGIN
                        PERFORM pg_terminate_backend(w);  -- SIGTERM after pid and start time matched
                    EXCEPTION WHEN OTHERS THEN
                        NULL;
                    END;
                    IF j.cancel_requested_at IS NULL THEN
                        UPDATE pgbg.job SET cancel_requested_at = clock_timestamp(), cancel_reason = 'timeout',
                               cancel_by = current_user WHERE id = j.id;
                    END IF;
                END IF;
                changed := changed + 1;
            ELSIF j.reason IS NULL OR j.reason NOT LIKE 'orphaned%' THEN
                UPDATE pgbg.job
                   SET reason = 'orphaned: its supervisor exited; the worker still runs (pid '
                                || w || ') but its outcome will not be recorded',
                       worker_pid = coalesce(worker_pid, w)
                 WHERE id = j.id AND owner = current_user;
                changed := changed + 1;
            END IF;
            CONTINUE;
        END IF;
        why := CASE
            WHEN coalesce(j.worker_started, j.started_at, j.queued_at) < pgbg.server_started()
                THEN 'the server restarted while the job ran; its outcome is unknown'
            WHEN j.cancel_reason = 'timeout'
                THEN format('ran longer than its timeout of %s ms; stopped while no supervisor watched it',
                            j.timeout_ms)
            WHEN j.cancel_requested_at IS NOT NULL
                THEN 'the worker stopped after a cancel while no supervisor watched it'
            WHEN j.state = 'starting' THEN 'its supervisor exited while starting it'
            ELSE 'its supervisor exited before recording the outcome' END;
        UPDATE pgbg.job
           SET state = CASE
                   WHEN j.cancel_reason = 'timeout' THEN 'timed_out'
                   WHEN j.cancel_requested_at IS NOT NULL THEN 'canceled'
                   ELSE 'lost' END,
               finished_at = clock_timestamp(), reason = why
         WHERE id = j.id;
        PERFORM pgbg._notify(j.id);
        changed := changed + 1;
    END LOOP;
    RETURN changed;
END
$$;

-- Delete finished jobs older than p_older_than (the caller's own; pgbg_admin: all).
CREATE OR REPLACE FUNCTION pgbg.prune(p_older_than interval)
RETURNS bigint LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM pgbg.job
         WHERE state IN ('succeeded', 'failed', 'canceled', 'timed_out', 'lost', 'detached')
           AND finished_at < clock_timestamp() - p_older_than
        RETURNING 1)
    SELECT count(*) FROM gone
$$;

-- The automatic bound: keep at most history_keep finished jobs of this role and none
-- older than history_max_age. Called by the supervisor about once a minute.
CREATE OR REPLACE FUNCTION pgbg._autoprune()
RETURNS bigint LANGUAGE sql AS $$
    WITH ranked AS (
        SELECT id, finished_at,
               row_number() OVER (ORDER BY finished_at DESC, id DESC) AS n
          FROM pgbg.job
         WHERE owner = current_user
           AND state IN ('succeeded', 'failed', 'canceled', 'timed_out', 'lost', 'detached')),
    gone AS (
        DELETE FROM pgbg.job j USING ranked r
         WHERE j.id = r.id
           AND (r.n > pgbg.setting('history_keep', '10000')::bigint
                OR r.finished_at < clock_timestamp() - pgbg.setting('history_max_age', '30 days')::interval)
        RETURNING 1)
    SELECT count(*) FROM gone
$$;

CREATE OR REPLACE PROCEDURE pgbg.supervise()
LANGUAGE plpgsql AS $$
DECLARE
    key integer := pgbg._lock_key(current_user);
    idle_since timestamptz := clock_timestamp();
    last_prune timestamptz := clock_timestamp();
    active integer;
    claimed bigint;
    launched boolean;
    poll double precision;
    idle_ms integer;
BEGIN
    IF NOT pg_try_advisory_lock(1885823591, key) THEN
        RETURN;  -- another supervisor of this role is alive
    END IF;
    PERFORM set_config('statement_timeout', '0', false);
    PERFORM set_config('lock_timeout', '0', false);
    PERFORM set_config('idle_in_transaction_session_timeout', '0', false);
    PERFORM pgbg.reconcile();
    COMMIT;
    LOOP
        poll := pgbg.setting('poll_ms', '25')::integer / 1000.0;
        idle_ms := pgbg.setting('supervisor_idle_ms', '3000')::integer;
        active := pgbg._tend_all();
        COMMIT;
        LOOP
            claimed := pgbg._claim_next();
            COMMIT;
            EXIT WHEN claimed IS NULL;
            launched := pgbg._launch_claimed(claimed);
            COMMIT;
            EXIT WHEN NOT launched;
            active := active + 1;
        END LOOP;
        IF clock_timestamp() - last_prune > interval '60 seconds' THEN
            PERFORM pgbg._autoprune();
            last_prune := clock_timestamp();
            COMMIT;
        END IF;
        IF active > 0 THEN
            idle_since := clock_timestamp();
        ELSIF clock_timestamp() - idle_since > make_interval(secs => idle_ms / 1000.0) THEN
            -- Leave, but first release the lock and look once more: a job submitted while
            -- the lock was held saw a live supervisor and started none.
            PERFORM pg_advisory_unlock(1885823591, key);
            COMMIT;
            EXIT WHEN NOT EXISTS (SELECT 1 FROM pgbg.job
                                   WHERE owner = current_user AND state = 'queued');
            EXIT WHEN NOT pg_try_advisory_lock(1885823591, key);
            idle_since := clock_timestamp();
        END IF;
        PERFORM pg_sleep(poll);
        COMMIT;
    END LOOP;
END
$$;
