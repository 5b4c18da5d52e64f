-- The supervisor's writes. Each is SECURITY DEFINER and acts only on a job that the
-- calling backend supervises: the job's owner is the role it registered for, and the
-- job's supervisor_pid and supervisor_start are this backend's. The state each may set is
-- checked again by the job table's trigger (pgbg.transitions()). Values that pgbg later
-- acts on (a worker's start time, which every signal is checked against) are read here
-- from the server, never taken from the caller.

-- A job this backend supervises, locked; 42501 otherwise. p_states: the states it may be in.
CREATE OR REPLACE FUNCTION pgbg._supervised_job(p_id bigint, p_states text[])
RETURNS pgbg.job LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    me pgbg.supervisor := pgbg._supervisor_self();
    j pgbg.job;
BEGIN
    SELECT * INTO j FROM pgbg.job x
     WHERE x.id = p_id AND pgbg._supervised_by(x, me)
     FOR UPDATE;
    IF NOT FOUND OR NOT (j.state = ANY (p_states)) THEN
        RAISE EXCEPTION 'pgbg: job % is not % of supervisor %', p_id, pg_catalog.array_to_string(p_states, ' or '), me.pid
            USING ERRCODE = '42501';
    END IF;
    RETURN j;
END
$$;

-- Claim the next queued job of this supervisor's role if the budget allows: mark it
-- 'starting'. The caller commits before launching, so a job never runs twice. A job this
-- supervisor claimed but could not lock for its launch (lock timeout) comes back first.
-- Groups: a job of a group is a candidate only when it is the first queued job of its group
-- (jobs of a group start in the order they were queued) and fewer than its own group_limit
-- jobs of the group are starting or running; a group held back does not hold back the
-- role's other jobs, which are looked at next, in id order. Only this supervisor starts its
-- role's jobs, so the count cannot change under it.
CREATE OR REPLACE FUNCTION pgbg._claim_next()
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    me pgbg.supervisor := pgbg._supervisor_self();
    j pgbg.job;
    c record;
    s record;
    running integer;
    in_group integer;
    seen text[];
    cap integer;
    session_max text := pg_catalog.current_setting('pg_background.max_workers', true);
BEGIN
    IF me.legacy THEN
        RETURN NULL;  -- version 1's loop: finishes what it holds, claims nothing new
    END IF;
    SELECT x.id INTO j.id FROM pgbg.job x
     WHERE x.state = 'starting' AND x.worker_pid IS NULL AND pgbg._supervised_by(x, me)
     ORDER BY x.id LIMIT 1;
    IF j.id IS NOT NULL THEN
        RETURN j.id;
    END IF;
    cap := LEAST(pgbg._setting_int('max_running_per_role'),
                            CASE WHEN session_max ~ '^[0-9]{1,9}$' THEN session_max::integer ELSE 16 END);
    LOOP
        SELECT pg_catalog.count(*) INTO running FROM pgbg.job x
         WHERE x.owner = me.role AND x.state IN ('starting', 'running');
        IF running >= cap THEN
            RETURN NULL;
        END IF;
        j := NULL;
        seen := '{}';
        FOR c IN SELECT x.id, x.group_name, x.group_limit FROM pgbg.job x
                  WHERE x.owner = me.role AND x.state = 'queued'
                  ORDER BY x.id LOOP
            IF c.group_name IS NOT NULL THEN
                CONTINUE WHEN c.group_name = ANY (seen);  -- not the first queued job of its group
                seen := seen || c.group_name;
                IF c.group_limit IS NOT NULL THEN
                    SELECT pg_catalog.count(*) INTO in_group FROM pgbg.job x
                     WHERE x.owner = me.role AND x.state IN ('starting', 'running') AND x.group_name = c.group_name;
                    CONTINUE WHEN in_group >= c.group_limit;
                END IF;
            END IF;
            SELECT * INTO j FROM pgbg.job x
             WHERE x.id = c.id AND x.state = 'queued' FOR UPDATE SKIP LOCKED;
            EXIT WHEN FOUND;
            -- locked (a cancel being asked), or no longer queued: its group waits for it
        END LOOP;
        IF j.id IS NULL THEN
            RETURN NULL;
        END IF;
        IF j.cancel_requested_at IS NOT NULL THEN
            UPDATE pgbg.job SET state = 'canceled',
                   reason = pg_catalog.format('canceled by %s while queued', coalesce(j.cancel_by, j.owner))
             WHERE id = j.id;
            CONTINUE;
        END IF;
        SELECT * INTO s FROM pgbg.worker_slots();
        IF s.max_worker_processes - s.used <= pgbg._setting_int('reserve_slots') THEN
            IF j.reason IS DISTINCT FROM 'waiting for a free worker slot' THEN
                UPDATE pgbg.job SET reason = 'waiting for a free worker slot' WHERE id = j.id;
            END IF;
            RETURN NULL;
        END IF;
        UPDATE pgbg.job SET state = 'starting', supervisor_pid = me.pid, supervisor_start = me.backend_start,
                            reason = NULL
         WHERE id = j.id;
        RETURN j.id;
    END LOOP;
END
$$;

-- Claim, in one call, as many queued jobs of this supervisor's role as may start now, by the
-- rules of pgbg._claim_next() (which a supervisor of the previous code still calls): the free
-- places under max_running_per_role and pg_background.max_workers, the free worker slots
-- above reserve_slots (each launch takes one), and the group limits, counting the jobs
-- claimed here. Returns their ids in id order, the order the caller launches them in; the
-- caller commits before launching any. Jobs this supervisor claimed but did not launch (a
-- lock timeout) come back first, alone. One registration lookup, one read of each setting,
-- one of the worker slots, one UPDATE.
CREATE OR REPLACE FUNCTION pgbg._claim_batch()
RETURNS bigint[] LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    me pgbg.supervisor := pgbg._supervisor_self();
    j pgbg.job;
    c record;
    s record;
    ids bigint[] := '{}';
    running integer;
    in_group integer;
    room integer;
    slot_room integer := NULL;  -- read once a job could be claimed
    blocked text[] := '{}';     -- groups whose first queued job cannot start now
    g_names text[] := '{}';     -- groups with a limit, and their starting or running jobs
    g_counts integer[] := '{}';
    k integer;
    session_max text := pg_catalog.current_setting('pg_background.max_workers', true);
BEGIN
    IF me.legacy THEN
        RETURN ids;  -- version 1's loop: finishes what it holds, claims nothing new
    END IF;
    SELECT pg_catalog.array_agg(x.id ORDER BY x.id) INTO ids FROM pgbg.job x
     WHERE x.owner = me.role AND x.state = 'starting' AND x.worker_pid IS NULL AND pgbg._supervised_by(x, me);
    IF ids IS NOT NULL THEN
        RETURN ids;
    END IF;
    ids := '{}';
    SELECT pg_catalog.count(*) INTO running FROM pgbg.job x
     WHERE x.owner = me.role AND x.state IN ('starting', 'running');
    room := LEAST(pgbg._setting_int('max_running_per_role'),
                  CASE WHEN session_max ~ '^[0-9]{1,9}$' THEN session_max::integer ELSE 16 END) - running;
    IF room <= 0 THEN
        RETURN ids;
    END IF;
    FOR c IN SELECT x.id, x.group_name, x.group_limit FROM pgbg.job x
              WHERE x.owner = me.role AND x.state = 'queued'
              ORDER BY x.id LOOP
        EXIT WHEN pg_catalog.cardinality(ids) >= room;
        k := NULL;
        IF c.group_name IS NOT NULL THEN
            CONTINUE WHEN c.group_name = ANY (blocked);  -- its group waits for an earlier job
            IF c.group_limit IS NOT NULL THEN
                k := pg_catalog.array_position(g_names, c.group_name);
                IF k IS NULL THEN
                    SELECT pg_catalog.count(*) INTO in_group FROM pgbg.job x
                     WHERE x.owner = me.role AND x.state IN ('starting', 'running') AND x.group_name = c.group_name;
                    g_names := g_names || c.group_name;
                    g_counts := g_counts || in_group;
                    k := pg_catalog.cardinality(g_names);
                END IF;
                IF g_counts[k] >= c.group_limit THEN
                    blocked := blocked || c.group_name;
                    CONTINUE;
                END IF;
            END IF;
        END IF;
        SELECT * INTO j FROM pgbg.job x
         WHERE x.id = c.id AND x.state = 'queued' FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            -- locked (a cancel being asked), or no longer queued: its group waits for it
            IF c.group_name IS NOT NULL THEN
                blocked := blocked || c.group_name;
            END IF;
            CONTINUE;
        END IF;
        IF j.cancel_requested_at IS NOT NULL THEN
            UPDATE pgbg.job SET state = 'canceled',
                   reason = pg_catalog.format('canceled by %s while queued', coalesce(j.cancel_by, j.owner))
             WHERE id = j.id;
            CONTINUE;  -- the next queued job of its group, if any, is now its first
        END IF;
        IF slot_room IS NULL THEN
            SELECT * INTO s FROM pgbg.worker_slots();
            slot_room := s.max_worker_processes - s.used - pgbg._setting_int('reserve_slots');
        END IF;
        IF pg_catalog.cardinality(ids) >= slot_room THEN
            -- no worker slot for this one: it waits, and so do all after it
            IF j.reason IS DISTINCT FROM 'waiting for a free worker slot' THEN
                UPDATE pgbg.job SET reason = 'waiting for a free worker slot' WHERE id = j.id;
            END IF;
            EXIT;
        END IF;
        ids := ids || j.id;
        IF k IS NOT NULL THEN
            g_counts[k] := g_counts[k] + 1;
        END IF;
    END LOOP;
    UPDATE pgbg.job SET state = 'starting', supervisor_pid = me.pid, supervisor_start = me.backend_start,
                        reason = NULL
     WHERE id = ANY (ids);
    RETURN ids;
END
$$;

-- The claimed job, locked until the caller commits (so that recording its launch never
-- waits); NULL when it is no longer this supervisor's 'starting' job.
CREATE OR REPLACE FUNCTION pgbg._lock_claimed(p_id bigint)
RETURNS pgbg.job LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    me pgbg.supervisor := pgbg._supervisor_self();
    j pgbg.job;
BEGIN
    SELECT * INTO j FROM pgbg.job x
     WHERE x.id = p_id AND x.state = 'starting' AND x.worker_pid IS NULL AND pgbg._supervised_by(x, me)
     FOR UPDATE;
    RETURN j;
END
$$;

-- The worker's start time is not read here: this transaction's view of the server's
-- backends was taken before the launch (pgbg._lock_claimed() looked up this supervisor's own
-- entry), so it could only show an earlier backend that had the same pid. The next pass
-- reads it (pgbg._record_worker_started()), while the job runs.
CREATE OR REPLACE FUNCTION pgbg._record_launched(p_id bigint, p_pid integer, p_cookie bigint)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    me pgbg.supervisor := pgbg._supervisor_self();
BEGIN
    UPDATE pgbg.job x
       SET state = 'running', worker_pid = p_pid, worker_cookie = p_cookie,
           started_at = pg_catalog.clock_timestamp()
     WHERE x.id = p_id AND x.state = 'starting' AND pgbg._supervised_by(x, me);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgbg: job % is not starting of supervisor %', p_id, me.pid USING ERRCODE = '42501';
    END IF;
END
$$;

-- No worker slot (53000) or this session's pg_background.max_workers reached (53400):
-- queued again, not failed.
CREATE OR REPLACE FUNCTION pgbg._record_requeued(p_id bigint, p_reason text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j pgbg.job := pgbg._supervised_job(p_id, '{starting}');
BEGIN
    UPDATE pgbg.job SET state = 'queued', supervisor_pid = NULL, supervisor_start = NULL, reason = p_reason
     WHERE id = j.id;
END
$$;

CREATE OR REPLACE FUNCTION pgbg._record_launch_failed(p_id bigint, p_sqlstate text, p_message text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j pgbg.job := pgbg._supervised_job(p_id, '{starting}');
BEGIN
    UPDATE pgbg.job SET state = 'failed', sqlstate = p_sqlstate, message = p_message,
                        reason = 'could not start a worker'
     WHERE id = j.id;
END
$$;

-- A worker shows in pg_stat_activity a moment after its launch returns: its start time,
-- read here, is what every later signal to it is checked against.
CREATE OR REPLACE FUNCTION pgbg._record_worker_started(p_id bigint)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j pgbg.job := pgbg._supervised_job(p_id, '{running}');
    started timestamptz;
BEGIN
    SELECT a.backend_start INTO started FROM pg_catalog.pg_stat_activity a
     WHERE a.pid = j.worker_pid AND a.backend_type = 'pg_background' AND a.usename = j.owner
       AND a.backend_start >= j.queued_at;
    IF started IS NOT NULL AND j.worker_started IS NULL THEN
        UPDATE pgbg.job SET worker_started = started WHERE id = j.id;
    END IF;
    RETURN started IS NOT NULL;
END
$$;

CREATE OR REPLACE FUNCTION pgbg._record_progress(p_id bigint, p_pct integer, p_msg text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j pgbg.job := pgbg._supervised_job(p_id, '{running}');
BEGIN
    UPDATE pgbg.job SET progress_pct = p_pct, progress_msg = pg_catalog.left(p_msg, 1000),
                        progress_at = pg_catalog.clock_timestamp()
     WHERE id = j.id;
END
$$;

-- The supervisor signalled the worker: p_terminated false for the grace SIGINT, true for
-- the extension's cancel (SIGTERM). A timeout is recorded as the cancel it is, only once
-- the timeout has truly passed.
CREATE OR REPLACE FUNCTION pgbg._record_stop_signal(p_id bigint, p_terminated boolean)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j pgbg.job := pgbg._supervised_job(p_id, '{running}');
    due text := pgbg._stop_due(j);
BEGIN
    IF due IS NULL OR due = 'detach' THEN
        RAISE EXCEPTION 'pgbg: job % has no cancel or timeout due', p_id USING ERRCODE = '42501';
    END IF;
    UPDATE pgbg.job
       SET cancel_requested_at = coalesce(cancel_requested_at, pg_catalog.clock_timestamp()),
           cancel_reason = CASE WHEN due = 'timeout' THEN 'timeout' ELSE cancel_reason END,
           cancel_by = coalesce(cancel_by, owner),
           cancel_signalled_at = coalesce(cancel_signalled_at, pg_catalog.clock_timestamp()),
           cancel_terminated = cancel_terminated OR p_terminated
     WHERE id = j.id;
END
$$;

CREATE OR REPLACE FUNCTION pgbg._record_detached(p_id bigint)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j pgbg.job := pgbg._supervised_job(p_id, '{running}');
BEGIN
    IF j.detach_requested_at IS NULL THEN
        RAISE EXCEPTION 'pgbg: job % has no detach request', p_id USING ERRCODE = '42501';
    END IF;
    UPDATE pgbg.job
       SET state = 'detached',
           reason = 'detached: pgbg stopped tracking it; the worker goes on and its outcome is not recorded'
     WHERE id = j.id;
END
$$;

-- The supervisor lost sight of a job. p_worker_alive: its worker still runs, so the job
-- becomes an orphan for reconcile (cancellable by verified pid); otherwise it ends lost.
CREATE OR REPLACE FUNCTION pgbg._record_lost(p_id bigint, p_reason text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j pgbg.job := pgbg._supervised_job(p_id, '{running}');
BEGIN
    IF pgbg._live_worker(j) IS NOT NULL THEN
        UPDATE pgbg.job SET supervisor_pid = NULL, supervisor_start = NULL,
                            reason = 'supervisor: ' || p_reason
         WHERE id = j.id;
    ELSE
        UPDATE pgbg.job SET state = 'lost', reason = p_reason WHERE id = j.id;
    END IF;
END
$$;

-- Does the worker of a job this backend supervises still run (pid, start time, owner)?
CREATE OR REPLACE FUNCTION pgbg._supervised_worker_alive(p_id bigint)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j pgbg.job := pgbg._supervised_job(p_id, '{running}');
BEGIN
    RETURN pgbg._live_worker(j) IS NOT NULL;
END
$$;

-- Tending a job failed: while its worker runs the job stays running, with a note of what
-- went wrong (tried again on the next pass); once the worker is gone, its outcome cannot be
-- read, and it ends lost with that reason rather than running forever.
CREATE OR REPLACE FUNCTION pgbg._record_tend_error(p_id bigint, p_message text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j pgbg.job := pgbg._supervised_job(p_id, '{running}');
BEGIN
    IF pgbg._live_worker(j) IS NOT NULL THEN
        UPDATE pgbg.job SET reason = pg_catalog.left('supervisor: ' || p_message, 1000) WHERE id = j.id;
    ELSE
        UPDATE pgbg.job SET state = 'lost',
               reason = pg_catalog.left('the supervisor could not read its outcome: ' || p_message, 1000)
         WHERE id = j.id;
    END IF;
END
$$;

-- The outcome, read by the supervisor through pg_background. The final state follows from
-- it and from the job's own requests (pgbg._stopped_state): a caller cannot pick it.
CREATE OR REPLACE FUNCTION pgbg._record_outcome(
    p_id bigint, p_errored boolean, p_unreadable boolean,
    p_sqlstate text, p_message text, p_detail text, p_hint text, p_context text,
    p_command_tag text, p_row_count bigint, p_result jsonb,
    p_started_at timestamptz, p_finished_at timestamptz,
    p_messages jsonb, p_messages_dropped integer)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j pgbg.job := pgbg._supervised_job(p_id, '{running}');
    final_state text := CASE WHEN p_unreadable THEN 'lost' ELSE pgbg._stopped_state(j, p_errored) END;
    finished timestamptz := coalesce(p_finished_at, pg_catalog.clock_timestamp());
BEGIN
    IF p_started_at > finished OR finished > pg_catalog.clock_timestamp() + interval '1 minute' THEN
        p_started_at := NULL;  -- not a time this job could have run at
        finished := pg_catalog.clock_timestamp();
    END IF;
    UPDATE pgbg.job
       SET state = final_state,
           -- the worker's own clock for both ends, so elapsed is never negative
           -- (LEAST ignores a NULL: without the worker's own start, keep pgbg's launch time)
           started_at = CASE WHEN p_started_at IS NULL THEN started_at ELSE LEAST(p_started_at, finished) END,
           finished_at = GREATEST(finished, coalesce(p_started_at, started_at)),
           sqlstate = p_sqlstate, message = CASE WHEN NOT p_unreadable THEN p_message END,
           detail = p_detail, hint = p_hint,
           context = p_context, command_tag = p_command_tag, row_count = p_row_count,
           result = CASE WHEN j.want_result AND final_state = 'succeeded' THEN p_result END,
           -- what the job said (fn_45_messages.sql): NULL when not kept
           messages = CASE WHEN pg_catalog.jsonb_typeof(p_messages) = 'array' THEN p_messages END,
           messages_dropped = GREATEST(coalesce(p_messages_dropped, 0), 0),
           reason = CASE
               WHEN final_state = 'timed_out'
                   THEN pg_catalog.format('ran longer than its timeout of %s', pgbg._duration_text(j.timeout_ms))
               WHEN final_state = 'canceled' THEN pg_catalog.format('canceled by %s', coalesce(j.cancel_by, j.owner))
               WHEN final_state = 'succeeded' AND j.cancel_requested_at IS NOT NULL
                   THEN 'finished before the cancel took effect'
               WHEN p_unreadable THEN coalesce(p_message,
                   'it returned rows pgbg could not describe at launch (several statements?) '
                   || 'and they filled its queue: pgbg let it finish unread, so its outcome is unknown')
               -- a signal pgbg did not send: 57P01 is a terminate; 57014 also comes from a
               -- statement_timeout, told apart by its message (pg_background turns SIGTERM into
               -- a cancel of the statement)
               WHEN final_state = 'failed' AND j.cancel_requested_at IS NULL
                    AND (p_sqlstate = '57P01'
                         OR (p_sqlstate = '57014' AND p_message = 'canceling statement due to user request'))
                   THEN 'stopped from outside pgbg: its worker was canceled or terminated (pg_cancel_backend, '
                        || 'pg_terminate_backend or a server shutdown), not by pgbg cancel'
               ELSE j.reason END
     WHERE id = j.id;
    RETURN final_state;
END
$$;
