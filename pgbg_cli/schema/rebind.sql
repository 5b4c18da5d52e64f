-- Keeping pgbg bound to pg_background when the extension changes under it, with no manual
-- step. Made by `pgbg init` when a superuser runs it (event triggers need one), in schema
-- pgbg_bind, which that superuser owns and no other role may use: these functions run as
-- whoever changes the extension (usually a superuser), so neither pgbg_owner (the owner of
-- schema pgbg and its tables) nor any granted role may decide what they run. They call no
-- function of schema pgbg and touch none of its tables.
--
-- pgbg's wrappers (api.sql) are bound to the extension's very functions, so PostgreSQL keeps
-- them as dependents: an ALTER EXTENSION pg_background UPDATE whose script drops functions
-- (1.10 to 2.0 drops every _v2 one) or a DROP EXTENSION would fail because of them. So:
--   * before an ALTER EXTENSION ... UPDATE or DROP EXTENSION of pg_background, the wrappers
--     are dropped (not when a function named like the extension's stands in its schema: pgbg
--     could not bind again; it warns and keeps them);
--   * after CREATE/ALTER/DROP EXTENSION, when pg_background exists and pgbg is not bound to
--     it, they are made again for the version now installed, in whatever schema it lives.
-- The wrappers of every version pgbg knows were rendered by `pgbg init` into this file's
-- brace placeholders (api.sql for 1.8, 1.9, 1.10 and 2.0, with the extension's schema written
-- as a placeholder identifier); nothing is read from a table. Only a superuser's own command
-- sets them off (in a trusted extension's script, session_user is the caller, not a
-- superuser), and a failure never fails that command: it warns, and pgbg waits for init.

CREATE SCHEMA IF NOT EXISTS pgbg_bind;
REVOKE ALL ON SCHEMA pgbg_bind FROM PUBLIC;

-- Functions in the extension's schema named like its own but not its own: pgbg's calls would
-- be ambiguous (pgbg init refuses them too). NULL when there are none.
CREATE OR REPLACE FUNCTION pgbg_bind.impostors()
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.string_agg(p.oid::pg_catalog.regprocedure::text || ' (owned by '
                                 || pg_catalog.pg_get_userbyid(p.proowner) || ')', ', ')
      FROM pg_catalog.pg_proc p
      JOIN pg_catalog.pg_extension e ON e.extname = 'pg_background' AND p.pronamespace = e.extnamespace
     WHERE p.proname::text LIKE 'pg\_background\_%'
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                        WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid
                          AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                          AND d.refobjid = e.oid AND d.deptype = 'e')
$$;

-- Is pgbg bound to the pg_background installed now (its launch wrapper depends on one of
-- the extension's functions)?
CREATE OR REPLACE FUNCTION pgbg_bind.bound()
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_proc w ON w.oid = d.objid AND w.proname = '_bg_launch'
                                   AND w.pronamespace = 'pgbg'::pg_catalog.regnamespace
          JOIN pg_catalog.pg_depend x ON x.classid = d.refclassid AND x.objid = d.refobjid AND x.deptype = 'e'
          JOIN pg_catalog.pg_extension e ON e.oid = x.refobjid AND e.extname = 'pg_background'
         WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass)
$$;

-- Make pgbg's wrappers for the installed pg_background; returns its version, NULL if none
-- (or when they cannot be made: a warning says why).
CREATE OR REPLACE FUNCTION pgbg_bind.rebind()
RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET lock_timeout = '5s' AS $rebind$
DECLARE
    v text;
    s name;
    n integer[];
    api text;
    odd text;
    r record;
BEGIN
    SELECT e.extversion, ns.nspname INTO v, s
      FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace ns ON ns.oid = e.extnamespace
     WHERE e.extname = 'pg_background';
    IF v IS NULL THEN
        RETURN NULL;
    END IF;
    odd := pgbg_bind.impostors();
    IF odd IS NOT NULL THEN
        RAISE WARNING 'pgbg: cannot bind to pg_background: schema % holds functions named like its own that are not: %; drop them, then run pgbg init', s, odd;
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
    RETURN v;
END
$rebind$;

-- Drop the wrappers (only they depend on the extension's objects: functions, views, types).
CREATE OR REPLACE FUNCTION pgbg_bind.unbind()
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET lock_timeout = '5s' AS $$
DECLARE
    r record;
BEGIN
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

-- Does a superuser's own command (not a trusted extension's script) set this off?
CREATE OR REPLACE FUNCTION pgbg_bind.by_superuser()
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = session_user), false)
$$;

CREATE OR REPLACE FUNCTION pgbg_bind.on_ddl_start()
RETURNS event_trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET lock_timeout = '5s' AS $$
DECLARE
    odd text;
BEGIN
    IF NOT pgbg_bind.by_superuser() THEN
        RETURN;
    END IF;
    -- ddl_command_start cannot name its object: go by the command's text, and only for what
    -- may drop the extension's objects (UPDATE, DROP; not SET SCHEMA, which keeps them)
    IF pg_catalog.current_query() !~* '(alter|drop)\s+extension\s+(if\s+exists\s+)?("?)pg_background\3(\s|;|$)'
       OR pg_catalog.current_query() ~* 'alter\s+extension\s+("?)pg_background\1\s+set\s+schema' THEN
        RETURN;
    END IF;
    odd := pgbg_bind.impostors();
    IF odd IS NOT NULL THEN
        RAISE WARNING 'pgbg: keeps its functions bound to pg_background (a command that drops its functions then fails on them): it could not bind again while its schema holds functions named like its own that are not: %', odd;
        RETURN;
    END IF;
    PERFORM pgbg_bind.unbind();
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'pgbg: could not let go of pg_background (%): run pgbg init afterwards', SQLERRM;
END
$$;

CREATE OR REPLACE FUNCTION pgbg_bind.on_ddl_end()
RETURNS event_trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET lock_timeout = '5s' AS $$
BEGIN
    IF NOT pgbg_bind.by_superuser()
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger_ddl_commands() c WHERE c.in_extension) THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_background')
       AND (NOT pgbg_bind.bound()
            OR EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger_ddl_commands() c
                         JOIN pg_catalog.pg_extension e ON e.oid = c.objid AND e.extname = 'pg_background'
                        WHERE c.classid = 'pg_catalog.pg_extension'::pg_catalog.regclass)) THEN
        PERFORM pgbg_bind.rebind();
    END IF;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'pgbg: could not bind to pg_background (%): run pgbg init', SQLERRM;
END
$$;
