-- Finishing a job on pg_background 1.8, which cannot tell an outcome without handing over
-- the result: read the result, and take the job's error, command tag and row count from the
-- reading. Runs with the supervisor's role's rights; the handle is this session's.
--
-- What 1.8 sends back: the rows of the last statement only, read with a column definition
-- list that matches them; for a last statement without rows, one text row per statement,
-- its command tag ("UPDATE 5"). Columns of pseudo types (void, record) cannot be named in a
-- list, and a list that does not match loses the handle and hides the job's own error; so
-- a job whose rows pgbg cannot name is launched with one more statement that returns none
-- (pgbg._tag_statement()), and its tags are read instead of its rows.

-- Can rows of these types be read back? Built-in types only (oid below 16384): reading a
-- value runs its type's input function, and a domain's CHECK or a composite's attributes
-- would run their owner's code here with the job owner's rights; never pseudo types.
CREATE OR REPLACE FUNCTION pgbg._rows_nameable(p_types oid[])
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p_types IS NOT NULL AND pg_catalog.cardinality(p_types) > 0
       AND NOT EXISTS (SELECT 1 FROM unnest(p_types) t(oid)
                        LEFT JOIN pg_catalog.pg_type ty ON ty.oid = t.oid
                        WHERE t.oid >= 16384 OR ty.typtype IS NULL OR ty.typtype = 'p')
$$;

-- The first keyword of a statement, past leading blanks and comments, in lower case.
CREATE OR REPLACE FUNCTION pgbg._first_keyword(p_sql text)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.lower(pg_catalog.substring(
               pg_catalog.regexp_replace(p_sql, '^(\s+|--[^\n]*(\n|$)|/\*([^*]|\*+[^*/])*\*+/)*', ''),
               '^[A-Za-z_]+'))
$$;

-- The statement appended to a job on 1.8 whose rows pgbg does not keep: its rows then go
-- nowhere, and every statement's command tag comes back instead ("SELECT 100000", then
-- "DO"), read through the bound pgbg._bg_tags(), so that no role's overload of the result
-- function in the extension's schema can make the read fail. Appended to several statements
-- (result_types NULL; the last may return rows) and to one statement that returns rows,
-- unless they are kept (--result: read with their column list), or it is a CALL (appending
-- would run it in a transaction block, where its procedure may not COMMIT: its rows are
-- counted instead, when their types can be named). Never to one statement without rows
-- (result_types '{}'): it might have to run alone (VACUUM). NULL when nothing is appended.
CREATE OR REPLACE FUNCTION pgbg._tag_statement(j pgbg.job)
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN NOT pgbg._bg_outcome_info()
                     AND (j.result_types IS NULL
                          OR (pg_catalog.cardinality(j.result_types) > 0 AND NOT j.want_result
                              AND pgbg._first_keyword(j.sql) IS DISTINCT FROM 'call'))
                THEN E'\n;DO $pgbg_tag$BEGIN END$pgbg_tag$' END
$$;

-- Where the job's part of an error context ends: pg_background appends lines "background
-- worker, pid N" (N: the job's worker; the worker and the reader each add one) and then the
-- reader's own stack, which ends with this supervisor's own such line (a supervisor is a
-- pg_background worker too). N is the pid of the last such line naming another pid; the
-- job's part ends at the first line naming N. NULL when there is none (not the job's error).
-- (The pid in the handle may be wrong on 1.8, so N is read from the context, not the job.)
CREATE OR REPLACE FUNCTION pgbg._worker_line(p_context text)
RETURNS bigint LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH l AS (
        SELECT x.n, pg_catalog.substring(x.line, '^background worker, pid (-?[0-9]+)$')::bigint AS pid
          FROM pg_catalog.regexp_split_to_table(coalesce(p_context, ''), E'\n') WITH ORDINALITY AS x(line, n)
    ), job AS (
        SELECT l.pid FROM l WHERE l.pid <> pg_catalog.pg_backend_pid() ORDER BY l.n DESC LIMIT 1
    )
    SELECT pg_catalog.min(l.n) FROM l JOIN job ON job.pid = l.pid
$$;

-- Did an error come from the job's worker (re-raised by pg_background reading its result)?
CREATE OR REPLACE FUNCTION pgbg._from_worker(p_context text)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pgbg._worker_line(p_context) IS NOT NULL
$$;

-- The context as the job saw it: the lines before its worker's line.
CREATE OR REPLACE FUNCTION pgbg._job_context(p_context text)
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT nullif(pg_catalog.string_agg(l.line, E'\n' ORDER BY l.n), '')
      FROM pg_catalog.regexp_split_to_table(coalesce(p_context, ''), E'\n') WITH ORDINALITY AS l(line, n)
     WHERE l.n < coalesce(pgbg._worker_line(p_context), 0)
$$;

-- The rows of a job's one statement, read with the column list its described types make
-- (built-in types only: see pgbg._rows_nameable): kept as JSON with --result, else only
-- counted. Used by both ways of finishing (fn_50_finish.sql and below).
CREATE OR REPLACE FUNCTION pgbg._read_rows(j pgbg.job, OUT rows jsonb, OUT n bigint)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    coldef text;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.format('c%s %s', u.i, pg_catalog.format_type(u.t, u.m)), ', ' ORDER BY u.i)
      INTO coldef
      FROM unnest(j.result_types, j.result_typmods) WITH ORDINALITY AS u(t, m, i);
    IF j.want_result THEN
        EXECUTE pg_catalog.format('SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(r)), ''[]''::pg_catalog.jsonb), pg_catalog.count(*) '
                       'FROM %s($1, $2) AS r(%s)', pgbg._bg_result_fn(), coldef)
           INTO rows, n USING j.worker_pid, j.worker_cookie;
    ELSE
        EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM %s($1, $2) AS r(%s)', pgbg._bg_result_fn(), coldef)
           INTO n USING j.worker_pid, j.worker_cookie;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION pgbg._finish_by_reading(j pgbg.job)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    res jsonb;
    nrows bigint;
    tags text[];
    v_last text;
    v_sqlstate text; v_message text; v_detail text; v_hint text; v_context text;
    v_tag text;
    v_rows bigint;
    unreadable boolean := false;
    appended boolean := pgbg._tag_statement(j) IS NOT NULL;
    keep boolean;
    v_messages jsonb;
    v_dropped integer := 0;
BEGIN
    -- the job's WARNING, NOTICE and INFO messages reach this backend as its result is read
    keep := pgbg._messages_start();  -- fn_45_messages.sql
    BEGIN
        IF NOT appended AND pgbg._rows_nameable(j.result_types) THEN
            -- rows of one statement, of built-in types: kept (--result), or counted (a CALL)
            SELECT r.rows, r.n INTO res, nrows FROM pgbg._read_rows(j) r;
            v_tag := 'SELECT';
            v_rows := nrows;
        ELSE
            SELECT pg_catalog.array_agg(t.tag) INTO tags FROM pgbg._bg_tags(j.worker_pid, j.worker_cookie) AS t(tag);
            IF appended THEN
                tags := tags[1:pg_catalog.cardinality(tags) - 1];  -- the DO pgbg added
            END IF;
            v_last := tags[pg_catalog.cardinality(tags)];
            v_tag := nullif(pg_catalog.regexp_replace(v_last, '( [0-9]+)+$', ''), '');
            v_rows := pg_catalog.substring(v_last, ' ([0-9]+)$')::bigint;
        END IF;
    EXCEPTION WHEN query_canceled OR OTHERS THEN
        -- (OTHERS alone leaves out query_canceled: a job canceled by pgbg's SIGINT reports
        -- 57014, re-raised here; only an error that came from the worker is the job's)
        GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                                v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT,
                                v_context = PG_EXCEPTION_CONTEXT;
        IF v_sqlstate = '57014' AND NOT pgbg._from_worker(v_context) THEN
            RAISE;  -- this supervisor itself was canceled
        END IF;
        IF v_sqlstate IN ('42725', '42883') AND NOT pgbg._from_worker(v_context) THEN
            -- someone made pg_background's result function ambiguous (an overload in its
            -- schema) for the --result read: not the job's error, and its outcome is unread
            unreadable := true;
            v_message := 'pgbg could not read its rows (' || v_message || '): its outcome is unknown';
            v_sqlstate := NULL; v_detail := NULL; v_hint := NULL; v_context := NULL;
        ELSIF NOT pgbg._from_worker(v_context)
              AND (v_message LIKE 'remote query result rowtype does not match%'
                   OR v_message LIKE 'remote query did not return a result set%') THEN
            -- not the job's error: its rows were not of the shape described at launch (a
            -- table changed in between); the read released them unread, and the job's own
            -- outcome with them
            unreadable := true;
            v_message := 'pgbg could not read its outcome: its rows were not of the shape described at launch '
                         || '(did a table change?); it may have run';
            v_sqlstate := NULL; v_detail := NULL; v_hint := NULL; v_context := NULL;
        ELSIF NOT pgbg._from_worker(v_context)
              AND (v_message ~ '^lost connection to worker process' OR v_message ~ '^PID -?[0-9]+ is not attached') THEN
            unreadable := true;
            v_message := 'its worker ended without reporting an outcome (' || v_message || '): it may have run';
            v_sqlstate := NULL; v_detail := NULL; v_hint := NULL; v_context := NULL;
        ELSE
            v_context := pgbg._job_context(v_context);
        END IF;
    END;
    IF keep THEN
        SELECT s.messages, s.dropped INTO v_messages, v_dropped FROM pgbg._messages_stop() s;
    END IF;
    PERFORM pgbg._record_outcome(
        j.id, v_sqlstate IS NOT NULL, unreadable,
        v_sqlstate, v_message, v_detail, v_hint, v_context, v_tag, v_rows, res,
        j.worker_started, NULL, v_messages, v_dropped);
END
$$;
