-- Keeping pgbg bound to pg_background when the extension changes under it, with no manual
-- step: made by `pgbg init` when a superuser runs it (event triggers need one), and owned by
-- that superuser, never by pgbg_owner (whose code these functions must not run).
--
-- pgbg's wrappers (api.sql) are bound to the extension's very functions, so PostgreSQL keeps
-- them as dependents: an ALTER EXTENSION pg_background UPDATE whose script drops functions
-- (1.10 to 2.0 drops every _v2 one) or a DROP EXTENSION would fail because of them. So:
--   * before ALTER/DROP EXTENSION naming pg_background, the wrappers are dropped;
--   * after CREATE/ALTER EXTENSION of pg_background, they are made again for the version now
--     installed, in whatever schema it now lives (pgbg._rebind()).
-- The wrappers of every version pgbg knows were rendered by `pgbg init` into this file's
-- brace placeholders (api.sql for 1.8, 1.9, 1.10 and 2.0, with the extension's schema written
-- as a placeholder identifier); nothing is read from a table, so no role but a superuser
-- decides what runs here. A failure never fails the DBA's command: it warns, and jobs wait
-- for `pgbg init` (supervisors stop rather than record outcomes they could not read).

-- Make pgbg's wrappers for the installed pg_background; returns its version, NULL if none.
CREATE OR REPLACE FUNCTION pgbg._rebind()
RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $rebind$
DECLARE
    v text;
    s name;
    n integer[];
    api text;
    r record;
BEGIN
    SELECT e.extversion, ns.nspname INTO v, s
      FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace ns ON ns.oid = e.extnamespace
     WHERE e.extname = 'pg_background';
    IF v IS NULL THEN
        RETURN NULL;
    END IF;
    n := pg_catalog.string_to_array(pg_catalog.regexp_replace(v, '[^0-9.]', '', 'g'), '.')::integer[];
    api := CASE WHEN n >= ARRAY[3] THEN NULL
                WHEN n >= ARRAY[2, 0] THEN {api_20}
                WHEN n >= ARRAY[1, 10] THEN {api_110}
                WHEN n >= ARRAY[1, 9] THEN {api_19}
                WHEN n >= ARRAY[1, 8] THEN {api_18} END;
    IF api IS NULL THEN
        RAISE WARNING 'pgbg: pg_background % is outside what this pgbg knows: run pgbg init with a pgbg that supports it', v;
        RETURN NULL;
    END IF;
    EXECUTE pg_catalog.replace(api, {placeholder_ident}, pg_catalog.quote_ident(s));
    FOR r IN SELECT p.oid::pg_catalog.regprocedure AS fn FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'pgbg'::pg_catalog.regnamespace
                AND (p.proname LIKE '\_bg\_%' OR p.proname = 'worker_slots')
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s OWNER TO pgbg_owner', r.fn);
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', r.fn);
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO pgbg_user', r.fn);
    END LOOP;
    EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %I TO pgbg_user', s);
    UPDATE pgbg.meta SET value = v WHERE key = 'extension_version';
    UPDATE pgbg.meta SET value = s WHERE key = 'extension_schema';
    RETURN v;
END
$rebind$;

-- Drop the wrappers (only they depend on the extension's functions).
CREATE OR REPLACE FUNCTION pgbg._unbind()
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    -- pgbg's functions that depend on any object of the extension (function, view, type)
    FOR r IN SELECT d.objid::pg_catalog.regprocedure AS fn
               FROM pg_catalog.pg_depend d
               JOIN pg_catalog.pg_proc p ON p.oid = d.objid
               JOIN pg_catalog.pg_depend x ON x.classid = d.refclassid AND x.objid = d.refobjid
                                          AND x.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                                          AND x.deptype = 'e'
               JOIN pg_catalog.pg_extension e ON e.oid = x.refobjid AND e.extname = 'pg_background'
              WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                AND p.pronamespace = 'pgbg'::pg_catalog.regnamespace
              GROUP BY d.objid
    LOOP
        EXECUTE pg_catalog.format('DROP FUNCTION %s', r.fn);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION pgbg._extension_ddl_start()
RETURNS event_trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- ddl_command_start cannot name its object: go by the command's text
    IF pg_catalog.current_query() ~* 'pg_background' THEN
        PERFORM pgbg._unbind();
    END IF;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'pgbg: could not unbind from pg_background (%): run pgbg init afterwards', SQLERRM;
END
$$;

CREATE OR REPLACE FUNCTION pgbg._extension_ddl_end()
RETURNS event_trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger_ddl_commands() c
                 JOIN pg_catalog.pg_extension e ON e.oid = c.objid AND e.extname = 'pg_background'
                WHERE c.classid = 'pg_catalog.pg_extension'::pg_catalog.regclass)
       OR (pg_catalog.current_query() ~* 'pg_background'
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                            WHERE p.pronamespace = 'pgbg'::pg_catalog.regnamespace AND p.proname = '_bg_launch')) THEN
        PERFORM pgbg._rebind();
    END IF;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'pgbg: could not bind to pg_background (%): run pgbg init', SQLERRM;
END
$$;
