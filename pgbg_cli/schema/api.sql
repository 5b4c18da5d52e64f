-- Thin wrappers over the installed pg_background, re-made by every `pgbg init` with the
-- schema and function names that `pgbg_cli.extension` picked for the installed version.
-- Brace placeholders are filled with psycopg.sql identifiers; nothing else is templated.
-- They run with the caller's rights (whoever calls pg_background decides whose rights a
-- worker has) and pin search_path: pg_catalog first, the extension's schema only where the
-- extension's own code needs it, pg_temp last; the extension's functions are named with
-- their schema.

-- A worker inherits the GUCs in force when it is launched: p_search_path (the job's, as
-- its submitter had it) is set for the launch statement alone, which names nothing but the
-- extension's schema-qualified function; NULL keeps the pinned path (the supervisor's own
-- worker).
DROP FUNCTION IF EXISTS pgbg._bg_launch(text, integer, text);
CREATE OR REPLACE FUNCTION pgbg._bg_launch(p_sql text, p_queue_size integer, p_label text, p_search_path text)
RETURNS TABLE (pid integer, cookie bigint) LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    h record;
BEGIN
    IF p_search_path IS NOT NULL THEN
        PERFORM pg_catalog.set_config('search_path', p_search_path, true);
    END IF;
    SELECT x.pid, x.cookie INTO h FROM {launch}(p_sql, p_queue_size, p_label) AS x;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    pid := h.pid;
    cookie := h.cookie;
    RETURN NEXT;
END
$f$;

CREATE OR REPLACE FUNCTION pgbg._bg_detach(p_pid integer, p_cookie bigint)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $f$
    SELECT {detach}(p_pid, p_cookie)
$f$;

CREATE OR REPLACE FUNCTION pgbg._bg_cancel(p_pid integer, p_cookie bigint)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $f$
    SELECT {cancel}(p_pid, p_cookie, 0)
$f$;

-- pg_background_outcome() is PL/pgSQL that names the extension's view and types unqualified:
-- with the extension in a schema of its own, it needs that schema on the search_path, after
-- pg_catalog, so nothing created there can shadow a built-in.
CREATE OR REPLACE FUNCTION pgbg._bg_outcome(p_pid integer, p_cookie bigint)
RETURNS TABLE (state text, completed boolean, has_error boolean, row_count bigint,
               command_tag text, sqlstate text, error_message text) LANGUAGE sql
SET search_path = pg_catalog, {ext_schema}, pg_temp AS $f$
    SELECT o.state, o.completed, o.has_error, o.row_count, o.command_tag, o.sqlstate, o.error_message
      FROM {outcome}(p_pid, p_cookie) o
$f$;

CREATE OR REPLACE FUNCTION pgbg._bg_error_info(p_pid integer, p_cookie bigint)
RETURNS TABLE (sqlstate text, message text, detail text, hint text, context text) LANGUAGE sql
SET search_path = pg_catalog, pg_temp AS $f$
    SELECT e.sqlstate, e.message, e.detail, e.hint, e.context FROM {error_info}(p_pid, p_cookie) e
$f$;

CREATE OR REPLACE FUNCTION pgbg._bg_result_info(p_pid integer, p_cookie bigint)
RETURNS TABLE (row_count bigint, command_tag text, started_at timestamptz, finished_at timestamptz)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $f$
    SELECT r.row_count, r.command_tag, r.started_at, r.finished_at FROM {result_info}(p_pid, p_cookie) r
$f$;

CREATE OR REPLACE FUNCTION pgbg._bg_get_progress(p_pid integer, p_cookie bigint)
RETURNS TABLE (pct integer, msg text) LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $f$
    SELECT p.progress_pct, p.progress_msg FROM {get_progress}(p_pid, p_cookie) p
$f$;

-- The quoted, schema-qualified name of the result function, for EXECUTE with a column
-- definition list.
CREATE OR REPLACE FUNCTION pgbg._bg_result_fn()
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $f$
    SELECT {result_name}::text
$f$;

-- Who holds the slots of max_worker_processes (the same query as `pgbg capacity`). SECURITY
-- DEFINER: pgbg_owner (granted pg_read_all_stats) sees every process's backend_type; a
-- plain role sees only its own, so its supervisor would undercount the slots in use. Only
-- counts come out. Dropped first: CREATE OR REPLACE cannot change the columns of an older
-- install.
DROP FUNCTION IF EXISTS pgbg.worker_slots();
CREATE FUNCTION pgbg.worker_slots()
RETURNS TABLE (max_worker_processes integer, max_parallel_workers integer, pg_background integer,
               parallel integer, replication integer, other integer, used integer,
               pgbg_jobs integer, pgbg_supervisors integer, pg_background_other integer, hidden integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
{worker_slots}
$f$;
