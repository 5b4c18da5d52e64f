-- Finishing a job: read its outcome (and, with --result, its rows) through pg_background,
-- then record it. Runs with the supervisor's role's rights; the handle is this session's.

CREATE OR REPLACE FUNCTION pgbg._finish(j pgbg.job, o record)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    e record;
    ri record;
    res jsonb;
    nrows bigint;
    v_sqlstate text; v_message text; v_detail text; v_hint text; v_context text;
    v_tag text := o.command_tag;
    v_rows bigint := o.row_count;
    v_last text;
    consumed boolean := false;
    unreadable boolean := false;
    keep boolean;
    v_messages jsonb;
    v_dropped integer := 0;
BEGIN
    IF NOT pgbg._bg_outcome_info() THEN
        PERFORM pgbg._finish_by_reading(j);  -- pg_background 1.8 (fn_55_finish_read.sql)
        RETURN;
    END IF;
    -- the job's WARNING, NOTICE and INFO messages reach this backend as its result is read
    keep := pgbg._messages_start();  -- fn_45_messages.sql
    SELECT * INTO ri FROM pgbg._bg_result_info(j.worker_pid, j.worker_cookie);
    IF coalesce(o.has_error, false) THEN
        SELECT * INTO e FROM pgbg._bg_error_info(j.worker_pid, j.worker_cookie);
        v_sqlstate := coalesce(e.sqlstate, o.sqlstate);
        v_message := coalesce(e.message, o.error_message);
        v_detail := e.detail; v_hint := e.hint; v_context := e.context;
        IF keep THEN
            PERFORM pgbg._messages_drain(j);  -- what it said before its error
            consumed := true;
        END IF;
    ELSIF (j.want_result OR NOT coalesce(o.completed, false)) AND pgbg._rows_nameable(j.result_types) THEN
        -- Rows are read only in types made with the server (oid below 16384): reading a
        -- value runs its type's input function, and a domain's CHECK or a composite's
        -- attributes would run their owner's code here, with the job owner's rights.
        -- pgbg.submit() refuses --result for other types. (Asked only when rows are read.)
        -- the rows (--result), or a count of them to free a worker that waits on its full
        -- queue; built-in base types only (pseudo types such as void and record cannot be
        -- named in a column definition list)
        BEGIN
            SELECT r.rows, r.n INTO res, nrows FROM pgbg._read_rows(j) r;  -- fn_55_finish_read.sql
            consumed := true;
            v_rows := nrows;
            v_tag := coalesce(v_tag, 'SELECT');
        EXCEPTION WHEN ambiguous_function OR undefined_function THEN
            -- someone made pg_background's result function ambiguous (an overload in its
            -- schema): the job's outcome was never read, so it is not reported as its error;
            -- the handle is released below, which also frees a worker blocked on its queue
            GET STACKED DIAGNOSTICS v_message = MESSAGE_TEXT;
            unreadable := true;
            v_message := 'pgbg could not read its rows (' || v_message || '): its outcome is unknown';
        WHEN query_canceled OR OTHERS THEN
            consumed := true;
            GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                                    v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT,
                                    v_context = PG_EXCEPTION_CONTEXT;
            IF v_sqlstate = '57014' AND NOT pgbg._from_worker(v_context) THEN
                RAISE;  -- this supervisor itself was canceled, not the job
            END IF;
        END;
    ELSIF coalesce(o.completed, false) THEN
        -- ended: its command tag and row count are in the result info; its messages are read
        IF keep THEN
            PERFORM pgbg._messages_drain(j);
            consumed := true;
        END IF;
    ELSE
        -- Still running, blocked on a queue full of what nobody reads while it runs: a flood of
        -- NOTICE or INFO (VACUUM VERBOSE of many tables), or rows of a statement pgbg could not
        -- describe at launch. Read it off; a statement without rows comes back as one text row,
        -- its command tag (e.g. "INSERT 0 5").
        BEGIN
            SELECT (pg_catalog.array_agg(t.tag))[pg_catalog.count(*)::pg_catalog.int4] INTO v_last
              FROM pgbg._bg_tags(j.worker_pid, j.worker_cookie) AS t(tag);
            consumed := true;
            v_tag := coalesce(nullif(pg_catalog.regexp_replace(v_last, '( [0-9]+)+$', ''), ''), v_tag);
            v_rows := coalesce(pg_catalog.substring(v_last, ' ([0-9]+)$')::bigint, v_rows);
        EXCEPTION WHEN query_canceled OR OTHERS THEN
            consumed := true;
            GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                                    v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT,
                                    v_context = PG_EXCEPTION_CONTEXT;
            IF v_sqlstate = '57014' AND NOT pgbg._from_worker(v_context) THEN
                RAISE;  -- this supervisor itself was canceled, not the job
            END IF;
            IF v_message LIKE 'remote query result rowtype does not match%' AND NOT pgbg._from_worker(v_context) THEN
                -- rows of a shape pgbg could not name: the read stopped and released them; the
                -- worker finishes unread, so nothing tells how it ended
                unreadable := true;
                v_sqlstate := NULL; v_message := NULL; v_detail := NULL; v_hint := NULL; v_context := NULL;
            END IF;
        END;
    END IF;

    IF NOT consumed THEN
        BEGIN
            PERFORM pgbg._bg_detach(j.worker_pid, j.worker_cookie);
        EXCEPTION WHEN OTHERS THEN
            -- already gone from this session: nothing left to release
            RAISE LOG 'pgbg: job %: detach after its outcome: %', j.id, SQLERRM;
        END;
    END IF;

    IF keep THEN
        SELECT s.messages, s.dropped INTO v_messages, v_dropped FROM pgbg._messages_stop() s;
    END IF;
    PERFORM pgbg._record_outcome(
        j.id, v_sqlstate IS NOT NULL OR (o.state = 'canceled' AND NOT unreadable), unreadable,
        v_sqlstate, v_message, v_detail, v_hint, v_context, v_tag, v_rows, res,
        ri.started_at, ri.finished_at, v_messages, v_dropped);
END
$$;
