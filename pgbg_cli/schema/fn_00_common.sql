-- Common pieces: who may act as whom, typed settings, the job state machine, liveness.
--
-- Rules for every routine in schema pgbg (tests/test_security.py holds them):
-- * `SET search_path = pg_catalog, pg_temp` (the extension wrappers add the extension's
--   schema after pg_catalog); every other object is named with its schema.
-- * Roles have no INSERT, UPDATE, DELETE or TRUNCATE on pgbg's tables. They change them
--   only through SECURITY DEFINER routines owned by pgbg_owner (a NOLOGIN role that owns
--   the schema and nothing else), and each of those checks who calls it before it writes.
-- * A routine that calls pg_background runs with the caller's rights (SECURITY INVOKER):
--   whatever launches a worker decides whose rights the worker has.
-- * Who calls: an acting role (`p_actor`, default current_user) and a proof that the
--   caller's current role is that role (`p_proof`, default pgbg._proof(); see below).

-- Who calls. Inside a SECURITY DEFINER function current_user is pgbg_owner, and
-- session_user proves nothing (code of another role runs in a session through its
-- SECURITY DEFINER functions, index expressions, or autovacuum). So the caller proves its
-- current role: pgbg._proof(), run with the caller's rights (it is the default of every
-- p_proof parameter, and a default is evaluated where the call is made), reads the one row
-- of pgbg.role_key that row-level security lets the current role see, its own, and hashes
-- its secret with this backend and transaction. pgbg._actor() recomputes it. The proof is
-- worth nothing in another backend or transaction, and no role can read another's secret.
-- `pgbg grant` makes a role's key; a superuser gets one the first time it needs it.
CREATE OR REPLACE FUNCTION pgbg._proof()
RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    secret text;
BEGIN
    SELECT k.secret INTO secret FROM pgbg.role_key k WHERE k.role = current_user;
    IF secret IS NULL AND (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        INSERT INTO pgbg.role_key (role) VALUES (current_user) ON CONFLICT DO NOTHING
        RETURNING role_key.secret INTO secret;
        SELECT k.secret INTO secret FROM pgbg.role_key k WHERE k.role = current_user;
    END IF;
    RETURN pgbg._proof_of(secret);
END
$$;

CREATE OR REPLACE FUNCTION pgbg._proof_of(p_secret text)
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
               p_secret || '/' || pg_catalog.pg_backend_pid() || '/' || pgbg._my_backend_start()
               || '/' || pg_catalog.transaction_timestamp(), 'UTF8')), 'hex')
$$;

-- p_actor, once p_proof shows the caller's current role is p_actor; 42501 otherwise.
CREATE OR REPLACE FUNCTION pgbg._actor(p_actor name, p_proof text)
RETURNS name LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_actor IS NULL OR p_proof IS NULL
       OR p_proof IS DISTINCT FROM (SELECT pgbg._proof_of(k.secret) FROM pgbg.role_key k WHERE k.role = p_actor) THEN
        RAISE EXCEPTION 'pgbg: role % may not use pgbg here (ask an administrator to run pgbg grant %)',
                        coalesce(p_actor, current_user), coalesce(p_actor, '<role>')
            USING ERRCODE = '42501';
    END IF;
    RETURN p_actor;
END
$$;

-- Is p_role a pgbg admin in this database? A superuser; or a role granted pgbg_admin with its
-- privileges in use (USAGE: a grant WITH INHERIT FALSE, SET FALSE does not count) and made
-- admin in this database by `pgbg grant --admin` (membership alone is the whole cluster's).
-- Used by the read policies, so SECURITY DEFINER: it reads pgbg.role_key.
CREATE OR REPLACE FUNCTION pgbg._is_admin(p_role name)
RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = p_role), false)
        OR (pg_catalog.pg_has_role(p_role, 'pgbg_admin', 'USAGE')
            AND EXISTS (SELECT 1 FROM pgbg.role_key k WHERE k.role = p_role AND k.admin))
$$;

-- May p_actor read, cancel, detach and prune p_owner's jobs? Its own, or any as pgbg_admin.
CREATE OR REPLACE FUNCTION pgbg._may_manage(p_actor name, p_owner name)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p_owner = p_actor OR pgbg._is_admin(p_actor)
$$;

-- ---------------------------------------------------------------------------------------
-- Settings: the one table of names, types, defaults and ranges.

CREATE OR REPLACE FUNCTION pgbg._setting_spec()
RETURNS TABLE (name text, kind text, default_value text, min_value text, max_value text, description text)
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    VALUES
      ('max_running_per_role', 'integer', '8', '1', '1000',
       'supervised jobs of one role that may run at once in this database; more are queued'),
      ('reserve_slots', 'integer', '2', '0', '10000',
       'max_worker_processes slots left free for parallel query, replication and others; launches beyond are queued'),
      ('poll_ms', 'integer', '25', '5', '10000',
       'how often the supervisor looks at its running jobs (milliseconds)'),
      ('supervisor_idle_ms', 'integer', '3000', '0', '3600000',
       'how long an idle supervisor stays before it exits and frees its slot (milliseconds)'),
      ('history_keep', 'integer', '10000', '1', '1000000000',
       'finished jobs kept per role; older ones are pruned automatically'),
      ('history_max_age', 'interval', '30 days', '1 minute', '100 years',
       'finished jobs older than this are pruned automatically'),
      ('lock_timeout_ms', 'integer', '5000', '10', '600000',
       'how long a supervisor waits for a lock on pgbg''s tables before it retries on its next pass (milliseconds)')
$$;

-- NULL when p_value is a valid value of setting p_name, else one line saying what is allowed.
CREATE OR REPLACE FUNCTION pgbg._setting_problem(p_name text, p_value text)
RETURNS text LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s record;
    v interval;
BEGIN
    SELECT * INTO s FROM pgbg._setting_spec() x WHERE x.name = p_name;
    IF NOT FOUND THEN
        RETURN pg_catalog.format('unknown setting %L: one of %s', p_name,
                                 (SELECT pg_catalog.string_agg(x.name, ', ' ORDER BY x.name)
                                    FROM pgbg._setting_spec() x));
    END IF;
    IF s.kind = 'integer' THEN
        -- [0-9]: ASCII digits only; the cast comes after the pattern matched
        IF p_value IS NULL OR p_value !~ '^[0-9]{1,10}$' THEN
            RETURN pg_catalog.format('%s takes a whole number from %s to %s, not %L',
                                     p_name, s.min_value, s.max_value, p_value);
        END IF;
        IF p_value::numeric < s.min_value::numeric OR p_value::numeric > s.max_value::numeric THEN
            RETURN pg_catalog.format('%s takes a whole number from %s to %s, not %s',
                                     p_name, s.min_value, s.max_value, p_value);
        END IF;
        RETURN NULL;
    END IF;
    BEGIN
        v := p_value::interval;
    EXCEPTION WHEN OTHERS THEN
        v := NULL;
    END;
    IF v IS NULL OR pg_catalog.isfinite(v) IS NOT TRUE
       OR v < s.min_value::interval OR v > s.max_value::interval THEN
        RETURN pg_catalog.format('%s takes an interval from %s to %s, not %L',
                                 p_name, s.min_value, s.max_value, p_value);
    END IF;
    RETURN NULL;
END
$$;

-- The value of a setting as text; its default when the stored value is missing or invalid.
-- (p_default: kept for version 1's supervisor loop, which still calls this while it ends.)
CREATE OR REPLACE FUNCTION pgbg.setting(p_name text, p_default text DEFAULT NULL)
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT s.value FROM pgbg.settings s
                      WHERE s.name = p_name AND pgbg._setting_problem(s.name, s.value) IS NULL),
                    (SELECT x.default_value FROM pgbg._setting_spec() x WHERE x.name = p_name),
                    p_default)
$$;

CREATE OR REPLACE FUNCTION pgbg._setting_int(p_name text)
RETURNS integer LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pgbg.setting(p_name)::integer
$$;

-- Whoever writes pgbg.settings (a superuser too), the value must be valid (trigger
-- settings_guard, fn_95_triggers.sql).
CREATE OR REPLACE FUNCTION pgbg._settings_guard()
RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    problem text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF EXISTS (SELECT 1 FROM pgbg._setting_spec() x WHERE x.name = OLD.name) THEN
            RAISE EXCEPTION 'pgbg: settings cannot be deleted (set % to its default instead)', OLD.name
                USING ERRCODE = '42501';
        END IF;
        RETURN OLD;  -- a setting this version does not know (pgbg._settings_repair())
    END IF;
    problem := pgbg._setting_problem(NEW.name, NEW.value);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'pgbg: %', problem USING ERRCODE = '22023';
    END IF;
    IF (SELECT x.kind FROM pgbg._setting_spec() x WHERE x.name = NEW.name) = 'integer' THEN
        NEW.value := NEW.value::bigint::text;  -- '007' is stored as '7'
    END IF;
    RETURN NEW;
END
$$;


-- Called by `pgbg init`: every setting present, every stored value valid (version 1 took
-- any text: an invalid one goes back to its default), descriptions current.
CREATE OR REPLACE FUNCTION pgbg._settings_repair()
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    spec record;
BEGIN
    DELETE FROM pgbg.settings s WHERE NOT EXISTS (SELECT 1 FROM pgbg._setting_spec() x WHERE x.name = s.name);
    FOR spec IN SELECT * FROM pgbg._setting_spec() LOOP
        INSERT INTO pgbg.settings AS s (name, value, description)
        VALUES (spec.name, spec.default_value, spec.description)
        ON CONFLICT (name) DO UPDATE
           SET description = EXCLUDED.description,
               value = CASE WHEN pgbg._setting_problem(s.name, s.value) IS NULL THEN s.value
                            ELSE EXCLUDED.value END
         -- only rows that need it: a row another session holds is left alone
         WHERE s.description IS DISTINCT FROM EXCLUDED.description
            OR pgbg._setting_problem(s.name, s.value) IS NOT NULL;
    END LOOP;
END
$$;

-- Change one setting: members of pgbg_admin only; the value is checked by the guard above.
CREATE OR REPLACE FUNCTION pgbg.set_setting(p_name text, p_value text, p_actor name DEFAULT current_user,
    p_proof text DEFAULT pgbg._proof())
RETURNS TABLE (name text, value text, description text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    problem text;
BEGIN
    PERFORM pgbg._actor(p_actor, p_proof);
    IF NOT pgbg._is_admin(p_actor) THEN
        RAISE EXCEPTION 'pgbg: only members of pgbg_admin may change pgbg''s settings'
            USING ERRCODE = '42501';
    END IF;
    -- PostgreSQL reads a bare number as seconds; beside settings in milliseconds a caller may
    -- mean those (a value stored so before still counts, as seconds: pgbg settings shows it so)
    IF (SELECT x.kind FROM pgbg._setting_spec() x WHERE x.name = p_name) = 'interval'
       -- what is left without white space, signs, '@' and quotes ('\t+600000', '@ 600000')
       AND pg_catalog.regexp_replace(p_value, '[[:space:]+@''"]', '', 'g') ~ '^([0-9]+([.][0-9]*)?|[.][0-9]+)$' THEN
        RAISE EXCEPTION 'pgbg: % takes an interval with its unit, not a bare number (%): such as ''10 minutes'', ''12 hours'' or ''30 days''',
                        p_name, pg_catalog.quote_literal(pg_catalog.btrim(p_value)) USING ERRCODE = '22023';
    END IF;
    problem := pgbg._setting_problem(p_name, pg_catalog.btrim(p_value));
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'pgbg: %', problem USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
        UPDATE pgbg.settings s SET value = pg_catalog.btrim(p_value)
         WHERE s.name = p_name
        RETURNING s.name, s.value, s.description;
END
$$;

-- ---------------------------------------------------------------------------------------
-- The job state machine: every allowed transition and who causes it. The trigger job_guard
-- (fn_95_triggers.sql) refuses any other, for every writer (the table's owner included); a final state never
-- changes again, and what a job runs, as whom, never changes after submission.

CREATE OR REPLACE FUNCTION pgbg.transitions()
RETURNS TABLE (from_state text, to_state text, caused_by text)
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    VALUES
      ('queued',   'starting',  'the owner''s supervisor claims it (committed before it launches a worker)'),
      ('queued',   'canceled',  'a cancel request of the owner or a pgbg_admin member (no worker exists yet)'),
      ('starting', 'running',   'the owner''s supervisor launched its worker'),
      ('starting', 'queued',    'the owner''s supervisor found no free worker slot'),
      ('starting', 'failed',    'the owner''s supervisor could not start a worker'),
      ('starting', 'canceled',  'reconcile: its supervisor exited after a cancel request'),
      ('starting', 'lost',      'reconcile: its supervisor exited while starting it'),
      ('starting', 'detached',  'reconcile: its supervisor exited while starting it, after a detach request'),
      ('running',  'succeeded', 'the owner''s supervisor read its outcome'),
      ('running',  'failed',    'the owner''s supervisor read its outcome'),
      ('running',  'canceled',  'the owner''s supervisor, after a cancel request; or reconcile, once its worker is gone'),
      ('running',  'timed_out', 'the owner''s supervisor, after its timeout; or reconcile, once its worker is gone'),
      ('running',  'lost',      'the owner''s supervisor (outcome unreadable) or reconcile (supervisor or server gone)'),
      ('running',  'detached',  'the owner''s supervisor or reconcile, after a detach request')
$$;

CREATE OR REPLACE FUNCTION pgbg.is_final(p_state text)
RETURNS boolean LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p_state IN ('succeeded', 'failed', 'canceled', 'timed_out', 'lost', 'detached')
$$;

CREATE OR REPLACE FUNCTION pgbg._job_guard()
RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- a new job starts queued, with no worker and a cookie nobody chose
        NEW.state := 'queued';
        NEW.cookie := ('x' || pg_catalog.substr(pg_catalog.md5(pg_catalog.gen_random_uuid()::text), 1, 16))
                          ::bit(64)::bigint & 9223372036854775807;
        NEW.worker_pid := NULL; NEW.worker_cookie := NULL; NEW.worker_started := NULL;
        NEW.supervisor_pid := NULL; NEW.supervisor_start := NULL; NEW.result := NULL;
        NEW.started_at := NULL; NEW.finished_at := NULL; NEW.queued_at := pg_catalog.clock_timestamp();
        NEW.cancel_requested_at := NULL; NEW.cancel_signalled_at := NULL; NEW.cancel_by := NULL;
        NEW.cancel_reason := NULL; NEW.cancel_grace_ms := NULL; NEW.cancel_terminated := false;
        NEW.detach_requested_at := NULL;
        NEW.sqlstate := NULL; NEW.message := NULL; NEW.detail := NULL; NEW.hint := NULL;
        NEW.context := NULL; NEW.command_tag := NULL; NEW.row_count := NULL; NEW.reason := NULL;
        NEW.progress_pct := NULL; NEW.progress_msg := NULL; NEW.progress_at := NULL;
        NEW.messages := NULL; NEW.messages_dropped := 0;  -- what it said comes with its outcome
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' THEN
        IF NOT pgbg.is_final(OLD.state) THEN
            RAISE EXCEPTION 'pgbg: job % is %: only a job that has ended can be deleted', OLD.id, OLD.state
                USING ERRCODE = '42501';
        END IF;
        RETURN OLD;
    END IF;
    IF pgbg.is_final(OLD.state) THEN
        RAISE EXCEPTION 'pgbg: job % has ended (%): a final state never changes', OLD.id, OLD.state
            USING ERRCODE = '42501';
    END IF;
    IF NEW.id <> OLD.id OR NEW.cookie <> OLD.cookie OR NEW.owner <> OLD.owner
       OR NEW.sql IS DISTINCT FROM OLD.sql OR NEW.queued_at <> OLD.queued_at
       OR NEW.label IS DISTINCT FROM OLD.label OR NEW.timeout_ms IS DISTINCT FROM OLD.timeout_ms
       OR NEW.queue_size <> OLD.queue_size OR NEW.want_result <> OLD.want_result
       OR NEW.result_types IS DISTINCT FROM OLD.result_types
       OR NEW.result_typmods IS DISTINCT FROM OLD.result_typmods
       OR NEW.result_names IS DISTINCT FROM OLD.result_names
       OR NEW.search_path IS DISTINCT FROM OLD.search_path
       OR NEW.client_addr IS DISTINCT FROM OLD.client_addr OR NEW.client_app IS DISTINCT FROM OLD.client_app
       OR NEW.group_name IS DISTINCT FROM OLD.group_name OR NEW.group_limit IS DISTINCT FROM OLD.group_limit THEN
        RAISE EXCEPTION 'pgbg: what a job runs and who owns it cannot change (job %)', OLD.id
            USING ERRCODE = '42501';
    END IF;
    IF NEW.state <> OLD.state
       AND NOT EXISTS (SELECT 1 FROM pgbg.transitions() t
                        WHERE t.from_state = OLD.state AND t.to_state = NEW.state) THEN
        RAISE EXCEPTION 'pgbg: job % cannot go from % to %', OLD.id, OLD.state, NEW.state
            USING ERRCODE = '42501';
    END IF;
    IF pgbg.is_final(NEW.state) AND NEW.finished_at IS NULL THEN
        NEW.finished_at := pg_catalog.clock_timestamp();
    END IF;
    RETURN NEW;
END
$$;


-- The audit trail: one pgbg.job_event row per state a job enters, with who caused it.
CREATE OR REPLACE FUNCTION pgbg._job_audit()
RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.state IS DISTINCT FROM OLD.state THEN
        INSERT INTO pgbg.job_event (job_id, from_state, to_state, actor, pid, reason)
        VALUES (NEW.id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.state END, NEW.state, session_user,
                pg_catalog.pg_backend_pid(), NEW.reason);
        IF pgbg.is_final(NEW.state) THEN
            -- a hint to waiters, nothing more; they wait for ends only (a notification costs
            -- its commit a lock and a queue entry, and wakes every waiter)
            PERFORM pg_catalog.pg_notify('pgbg_jobs', NEW.id::text);
        END IF;
    END IF;
    RETURN NULL;
END
$$;


-- ---------------------------------------------------------------------------------------
-- Liveness. SECURITY DEFINER: a plain role sees the start time and type of its own
-- backends only; pgbg_owner reads them all (pg_read_all_stats). Only booleans and pids
-- come out.

-- A duration in milliseconds as the CLI writes every duration (pgbg_cli/durations.py
-- format_ms, which tests/test_duration_text.py compares it with): 850ms, 2s, 12.3s, 1m30s,
-- 4m05s, 2h03m, 30d, 2d03h -- the two largest units, the second dropped when it is zero.
-- For the reasons the server writes ("ran longer than its timeout of 2s").
CREATE OR REPLACE FUNCTION pgbg._duration_text(p_ms bigint)
RETURNS text LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    whole bigint := GREATEST(p_ms, 0);
    tenths bigint;
    seconds bigint;
    big bigint;
    small bigint;
    units text[];
BEGIN
    IF p_ms IS NULL THEN
        RETURN NULL;
    ELSIF whole < 1000 THEN
        RETURN whole::text || 'ms';
    END IF;
    tenths := (whole + 50) / 100;
    IF tenths < 600 THEN
        RETURN (tenths / 10)::text || CASE WHEN tenths % 10 = 0 THEN '' ELSE '.' || (tenths % 10)::text END || 's';
    END IF;
    seconds := (whole + 500) / 1000;
    IF seconds < 3600 THEN
        big := seconds / 60; small := seconds % 60; units := '{m,s}';
    ELSIF seconds < 48 * 3600 THEN
        big := seconds / 3600; small := seconds / 60 % 60; units := '{h,m}';
    ELSE
        big := seconds / 86400; small := seconds / 3600 % 24; units := '{d,h}';
    END IF;
    RETURN big::text || units[1]
        || CASE WHEN small = 0 THEN '' ELSE pg_catalog.lpad(small::text, 2, '0') || units[2] END;
END
$$;

CREATE OR REPLACE FUNCTION pgbg._backend_alive(p_pid integer, p_start timestamptz)
RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_get_activity(p_pid) a
                    WHERE a.pid = p_pid AND a.backend_start = p_start)
$$;

-- This backend's own start time. SECURITY DEFINER too: a session that changed its role
-- (SET ROLE) may no longer see its own backend's row.
CREATE OR REPLACE FUNCTION pgbg._my_backend_start()
RETURNS timestamptz LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.backend_start FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) a
$$;

-- When the server last started, crash restarts included: after a backend crash the
-- postmaster restarts every other process (the checkpointer too) but keeps its own start
-- time.
CREATE OR REPLACE FUNCTION pgbg.server_started()
RETURNS timestamptz LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT GREATEST(pg_catalog.pg_postmaster_start_time(),
                    (SELECT pg_catalog.min(a.backend_start) FROM pg_catalog.pg_stat_activity a
                      WHERE a.backend_type = 'checkpointer'))
$$;

-- The live pg_background backend that runs job j, verified by pid and start time (or,
-- while its start time is not recorded yet, by the label pgbg gave it), and belonging to
-- the job's owner. NULL when it no longer runs. Every signal pgbg sends goes to a pid this
-- returned, never to a pid read from the job's row alone.
CREATE OR REPLACE FUNCTION pgbg._live_worker(j pgbg.job)
RETURNS integer LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.pid
      FROM pg_catalog.pg_stat_activity a
     WHERE a.backend_type = 'pg_background'
       AND a.usename = j.owner
       AND (a.pid = j.worker_pid OR j.worker_pid IS NULL)
       AND CASE WHEN j.worker_started IS NOT NULL THEN a.backend_start = j.worker_started
                ELSE a.application_name LIKE 'pg\_background:pgbg:' || j.id || ':%'
                     AND a.backend_start >= j.queued_at END
     LIMIT 1
$$;

-- What should happen to a running job now, by the one rule for detach, cancel and
-- timeout: 'detach', 'cancel' (asked for), 'timeout' (ran too long), or NULL.
CREATE OR REPLACE FUNCTION pgbg._stop_due(j pgbg.job)
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN j.detach_requested_at IS NOT NULL THEN 'detach'
        WHEN j.cancel_requested_at IS NOT NULL AND j.cancel_reason = 'timeout' THEN 'timeout'
        WHEN j.cancel_requested_at IS NOT NULL THEN 'cancel'
        WHEN j.timeout_ms IS NOT NULL AND j.started_at IS NOT NULL
             AND pg_catalog.clock_timestamp() >= j.started_at + pg_catalog.make_interval(secs => j.timeout_ms / 1000.0)
            THEN 'timeout'
        END
$$;

-- The final state of a job that stopped (p_errored: it ended with an error or a cancel).
CREATE OR REPLACE FUNCTION pgbg._stopped_state(j pgbg.job, p_errored boolean)
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN NOT p_errored THEN 'succeeded'
        WHEN j.cancel_reason = 'timeout' THEN 'timed_out'
        WHEN j.cancel_requested_at IS NOT NULL THEN 'canceled'
        ELSE 'failed' END
$$;
