-- The WARNING, NOTICE and INFO messages a job emits, kept with its outcome.
--
-- pg_background re-raises them in the backend that reads a job's result (the supervisor),
-- where PL/pgSQL cannot catch anything below ERROR. pgbg's C module pgbg_messages
-- (ext/pgbg_messages, installed by a DBA into the server's $libdir) keeps them: `pgbg init`
-- run by a superuser creates pgbg._messages_begin(int, int) and pgbg._messages_take() from it
-- (messages_c.sql). Without it, a job's messages are not kept (pgbg.job.messages NULL).
--
-- The bound, per job: MESSAGES_MAX messages and MESSAGES_BYTES bytes of their JSON text;
-- a message, detail or hint longer than 4 kB is cut there (marked "truncated": true); what
-- does not fit is counted in pgbg.job.messages_dropped.

-- Can this database keep messages? (The C functions exist; a superuser's init made them.)
CREATE OR REPLACE FUNCTION pgbg._messages_available()
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.to_regprocedure('pgbg._messages_take()') IS NOT NULL
       AND pg_catalog.to_regprocedure('pgbg._messages_begin(integer,integer)') IS NOT NULL
$$;

-- Start keeping the messages this backend receives, until pgbg._messages_stop() or the end
-- of the transaction. False when this server cannot (no module, or its library is gone).
CREATE OR REPLACE FUNCTION pgbg._messages_start()
RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT pgbg._messages_available() THEN
        RETURN false;
    END IF;
    PERFORM pgbg._messages_begin(100, 65536);  -- MESSAGES_MAX, MESSAGES_BYTES (README: Messages)
    RETURN true;
EXCEPTION WHEN OTHERS THEN
    -- e.g. its library was removed from $libdir since init: the job's outcome comes first
    RAISE LOG 'pgbg: job messages not kept: %', SQLERRM;
    RETURN false;
END
$$;

-- What was kept since pgbg._messages_start(), in order: a JSON array of
-- {severity, sqlstate, message, detail, hint[, truncated]}, and how many were left out.
CREATE OR REPLACE FUNCTION pgbg._messages_stop(OUT messages jsonb, OUT dropped integer)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t jsonb;
BEGIN
    t := pgbg._messages_take();
    messages := t -> 'messages';
    dropped := LEAST(coalesce((t ->> 'dropped')::bigint, 0), 2147483647)::integer;
EXCEPTION WHEN OTHERS THEN
    RAISE LOG 'pgbg: job messages not kept: %', SQLERRM;
    messages := NULL;
    dropped := 0;
END
$$;

-- pg_background 2.0 tells a job's outcome without its result; its messages come only with a
-- read of the result. Read it off (rows counted, command tags dropped), so that they reach
-- this backend; the job's own error (known from its error info already) ends the read, and
-- so do rows pgbg cannot name (messages after them are not seen).
CREATE OR REPLACE FUNCTION pgbg._messages_drain(j pgbg.job)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_sqlstate text;
    v_context text;
BEGIN
    IF pgbg._rows_nameable(j.result_types) THEN
        PERFORM 1 FROM pgbg._read_rows(j) r;
    ELSE
        PERFORM 1 FROM pgbg._bg_tags(j.worker_pid, j.worker_cookie) AS t(tag);
    END IF;
EXCEPTION WHEN query_canceled OR OTHERS THEN
    GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE, v_context = PG_EXCEPTION_CONTEXT;
    IF v_sqlstate = '57014' AND NOT pgbg._from_worker(v_context) THEN
        RAISE;  -- this supervisor itself was canceled, not the job
    END IF;
END
$$;
