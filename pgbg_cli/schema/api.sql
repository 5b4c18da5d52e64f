-- Thin wrappers over the installed pg_background, re-made by every `pgbg init` with the
-- schema and function names that `pgbg_cli.extension` picked for the installed version.
-- Brace placeholders are filled with psycopg.sql identifiers; nothing else is templated.
-- They run with the caller's rights (whoever calls pg_background decides whose rights a
-- worker has) and pin search_path (pg_catalog, pg_temp). Their bodies are SQL-standard
-- (BEGIN ATOMIC): each call of the extension is bound to that very function when the wrapper
-- is made, so a function or overload created later in the extension's schema (often the
-- writable `public`) can neither shadow it nor make the call ambiguous. pgbg never calls the
-- extension's PL/pgSQL functions (pg_background_outcome resolves names at run time).

-- A worker inherits the GUCs in force when it is launched: p_search_path (the job's, as
-- its submitter had it) is set for the launch alone; NULL keeps the pinned path (the
-- supervisor's own worker). The function's SET clause puts the pinned path back on return.
CREATE OR REPLACE FUNCTION pgbg._bg_launch(p_sql text, p_queue_size integer, p_label text, p_search_path text)
RETURNS TABLE (pid integer, cookie bigint) LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT pg_catalog.set_config('search_path', coalesce(p_search_path, 'pg_catalog, pg_temp'), true);
    -- Before 2.0 a worker inherits application_name (1.8 has no labels at all): set it the
    -- way 2.0 names its workers from their labels (pg_background:<label>:<pid>, less the
    -- pid), so that pg_stat_activity still tells pgbg's workers apart. (2.0 keeps an
    -- application_name it inherits: never set there.)
    SELECT pg_catalog.set_config('application_name',
                                 pg_catalog.left('pg_background:' || coalesce(p_label, '') || ':', 63), true)
     WHERE NOT {names_workers};
    -- p_sql || '': a fresh value. pg_background 1.8 mangles a short text that comes straight
    -- from a table column (it drops its first three bytes).
    SELECT h.pid, h.cookie FROM {launch_call} AS h;
END;

CREATE OR REPLACE FUNCTION pgbg._bg_detach(p_pid integer, p_cookie bigint)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT {detach}(p_pid, p_cookie);
END;

CREATE OR REPLACE FUNCTION pgbg._bg_cancel(p_pid integer, p_cookie bigint)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT {cancel}(p_pid, p_cookie, 0);
END;

-- Wait up to p_ms (at least 1: 0 would block for good on 2.0) for the worker to stop; true
-- once it has. The supervisor sleeps here between passes, on its oldest running job.
CREATE OR REPLACE FUNCTION pgbg._bg_wait(p_pid integer, p_cookie bigint, p_ms integer)
RETURNS boolean LANGUAGE sql SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT {wait}(p_pid, p_cookie, GREATEST(p_ms, 1));
END;

-- The state pg_background's session list gives the handle (NULL: not listed).
CREATE OR REPLACE FUNCTION pgbg._bg_state(p_pid integer, p_cookie bigint)
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT l.state FROM {list_source} WHERE l.pid = p_pid AND l.cookie = p_cookie;
END;

CREATE OR REPLACE FUNCTION pgbg._bg_error_info(p_pid integer, p_cookie bigint)
RETURNS TABLE (sqlstate text, message text, detail text, hint text, context text) LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    {error_info_query};
END;

CREATE OR REPLACE FUNCTION pgbg._bg_result_info(p_pid integer, p_cookie bigint)
RETURNS TABLE (row_count bigint, command_tag text, completed boolean, has_error boolean,
               started_at timestamptz, finished_at timestamptz)
LANGUAGE sql SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    {result_info_query};
END;

CREATE OR REPLACE FUNCTION pgbg._bg_get_progress(p_pid integer, p_cookie bigint)
RETURNS TABLE (pct integer, msg text) LANGUAGE sql SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT (p).progress_pct, (p).progress_msg FROM (SELECT {get_progress}(p_pid, p_cookie) AS p) x;
END;

-- What pg_background_outcome() tells, from the bound wrappers above: never raises; NULL
-- fields where pg_background has nothing to say.
CREATE OR REPLACE FUNCTION pgbg._bg_outcome(p_pid integer, p_cookie bigint)
RETURNS TABLE (state text, completed boolean, has_error boolean, row_count bigint,
               command_tag text, sqlstate text, error_message text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    ri record;
    er record;
BEGIN
    state := pgbg._bg_state(p_pid, p_cookie);
    IF NOT pgbg._bg_outcome_info() THEN
        -- 1.8: the outcome is in the result itself (pgbg._finish reads it); a stopped worker
        -- has said all it will
        completed := state IN ('stopped', 'postmaster_died');
        RETURN NEXT;
        RETURN;
    END IF;
    BEGIN
        SELECT * INTO ri FROM pgbg._bg_result_info(p_pid, p_cookie);
        completed := ri.completed; has_error := ri.has_error;
        row_count := ri.row_count; command_tag := ri.command_tag;
    EXCEPTION WHEN OTHERS THEN
        NULL;  -- not listed, or no result yet: the state says which
    END;
    IF coalesce(has_error, false) THEN
        BEGIN
            SELECT * INTO er FROM pgbg._bg_error_info(p_pid, p_cookie);
            sqlstate := er.sqlstate; error_message := er.message;
        EXCEPTION WHEN OTHERS THEN
            NULL;  -- _finish reads the error again and records what it finds
        END;
    END IF;
    RETURN NEXT;
END
$f$;

-- The text rows of a result: the command tags of a job whose last statement returns no rows
-- (one per statement, e.g. "UPDATE 5"). Bound like the others; only --result rows, whose
-- column list is known at run time alone, are read through EXECUTE.
CREATE OR REPLACE FUNCTION pgbg._bg_tags(p_pid integer, p_cookie bigint)
RETURNS SETOF text LANGUAGE sql SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT r.tag FROM {result}(p_pid, p_cookie) AS r(tag pg_catalog.text);
END;

-- Can pg_background be called at all? A harmless call of one of its C functions: it fails
-- (42883, "could not find function ... in file") when a package of another version was
-- installed over the extension's SQL objects. pgbg.ensure_supervisor() asks first.
CREATE OR REPLACE FUNCTION pgbg._bg_probe()
RETURNS integer LANGUAGE sql SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT (s).max_workers FROM (SELECT {stats}() AS s) x;
END;

-- Does this pg_background tell an outcome without consuming the result (1.9 and on)?
CREATE OR REPLACE FUNCTION pgbg._bg_outcome_info()
RETURNS boolean LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $f$
    SELECT {outcome_info}
$f$;

-- The quoted, schema-qualified name of the result function, for EXECUTE with a column
-- definition list (--result rows): looked up where the extension lives now.
CREATE OR REPLACE FUNCTION pgbg._bg_result_fn()
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $f$
    SELECT pg_catalog.format('%I.%I', n.nspname, {result_fname}::pg_catalog.text)
      FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pg_background'
$f$;

-- Who holds the slots of max_worker_processes (the same query as `pgbg capacity`). SECURITY
-- DEFINER: pgbg_owner (granted pg_read_all_stats) sees every process's backend_type; a
-- plain role sees only its own, so its supervisor would undercount the slots in use. Only
-- counts come out. Replaced, never dropped: a function of someone else's that depends on it
-- would make every later init fail.
CREATE OR REPLACE FUNCTION pgbg.worker_slots()
RETURNS TABLE (max_worker_processes integer, max_parallel_workers integer, pg_background integer,
               parallel integer, replication integer, other integer, used integer,
               pgbg_jobs integer, pgbg_supervisors integer, pg_background_other integer, hidden integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
{worker_slots}
$f$;
