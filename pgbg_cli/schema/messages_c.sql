-- The C functions of pgbg_messages (ext/pgbg_messages), made by `pgbg init` when a superuser
-- runs it and the library is in the server's $libdir; see fn_45_messages.sql. They act on
-- the calling backend alone. EXECUTE: pgbg_user (supervisors run as its members), as for
-- every routine of the schema; never PUBLIC.
CREATE OR REPLACE FUNCTION pgbg._messages_begin(max_count integer, max_bytes integer)
RETURNS void LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS '$libdir/pgbg_messages', 'pgbg_messages_begin';

CREATE OR REPLACE FUNCTION pgbg._messages_take()
RETURNS jsonb LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS '$libdir/pgbg_messages', 'pgbg_messages_take';
