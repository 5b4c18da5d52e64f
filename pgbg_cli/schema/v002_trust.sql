-- pgbg schema version 2: trust. Applied once, in one transaction, by `pgbg init`, after
-- version 1 (a new install applies both). Roles no longer write pgbg's tables: every change
-- goes through a function (fn_*.sql) owned by pgbg_owner, a NOLOGIN role that owns the
-- schema. A supervisor is known by a row it registers, not by an advisory lock anyone
-- could take; every transition of a job is kept in pgbg.job_event.

-- Who supervises which role: one row per live supervisor, written only by
-- pgbg._supervisor_register() from inside that role's pg_background worker. A row whose
-- backend (pid and start time) is gone is dead and may be replaced. `legacy`: a supervisor
-- that runs version 1's loop (found running when this file was applied): it finishes the
-- jobs it holds handles for and claims no new ones.
CREATE TABLE pgbg.supervisor (
    pid           integer NOT NULL,
    backend_start timestamptz NOT NULL,
    role          name NOT NULL,
    legacy        boolean NOT NULL DEFAULT false,
    registered_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_error    text,
    PRIMARY KEY (pid, backend_start)
);
CREATE INDEX supervisor_role_idx ON pgbg.supervisor (role);
CREATE UNIQUE INDEX supervisor_one_per_role ON pgbg.supervisor (role) WHERE NOT legacy;

-- Each role's secret, from which it proves who it is to pgbg's SECURITY DEFINER functions
-- (pgbg._proof(), fn_00_common.sql). A role reads its own row and no other; nobody writes
-- here but `pgbg grant`/`pgbg revoke` (and a superuser's first proof).
CREATE TABLE pgbg.role_key (
    role   name PRIMARY KEY,
    secret text NOT NULL DEFAULT (pg_catalog.gen_random_uuid()::text || pg_catalog.gen_random_uuid()::text),
    admin  boolean NOT NULL DEFAULT false  -- `pgbg grant --admin` in this database
);
ALTER TABLE pgbg.role_key ENABLE ROW LEVEL SECURITY;
CREATE POLICY role_key_own ON pgbg.role_key FOR SELECT USING (role = current_user);
-- When version 1 was installed here (an upgrade, not a new install): the roles it let use
-- pgbg (its grants were the cluster's roles, so all of them) keep using it.
INSERT INTO pgbg.role_key (role, admin)
SELECT DISTINCT r.rolname, pg_catalog.pg_has_role(r.oid, 'pgbg_admin', 'USAGE')
  FROM pg_catalog.pg_auth_members m
  JOIN pg_catalog.pg_roles r ON r.oid = m.member
 WHERE m.roleid IN (SELECT g.oid FROM pg_catalog.pg_roles g WHERE g.rolname IN ('pgbg_user', 'pgbg_admin'))
   AND r.rolname NOT IN ('pgbg_admin', 'pgbg_owner', 'pgbg_user', 'pgbackground_role')
   AND EXISTS (SELECT 1 FROM pgbg.meta WHERE key = 'schema_version')
ON CONFLICT DO NOTHING;

-- Is p_role a pgbg admin in this database: a superuser, or granted pgbg_admin (with its
-- privileges in use) and made admin here by `pgbg grant --admin`. Made here for the policies
-- below; fn_00_common.sql keeps it current.
CREATE FUNCTION pgbg._is_admin(p_role name)
RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT false
$$;

-- Read policies: admins of this database see every job (version 1 counted any member of
-- pgbg_admin, in any database, even without its privileges).
DROP POLICY job_read ON pgbg.job;
CREATE POLICY job_read ON pgbg.job FOR SELECT
    USING (owner = current_user OR pgbg._is_admin(current_user));

-- The registry, the settings and the meta data are read through pgbg's functions or as
-- they are; row-level security on them too, so that a role granted pg_write_all_data
-- still cannot write them.
ALTER TABLE pgbg.supervisor ENABLE ROW LEVEL SECURITY;
ALTER TABLE pgbg.settings ENABLE ROW LEVEL SECURITY;
CREATE POLICY settings_read ON pgbg.settings FOR SELECT USING (true);
ALTER TABLE pgbg.meta ENABLE ROW LEVEL SECURITY;
CREATE POLICY meta_read ON pgbg.meta FOR SELECT USING (true);

-- Version 1's wrappers whose columns changed (api.sql makes them again).
DROP FUNCTION IF EXISTS pgbg._bg_error_info(integer, bigint);
DROP FUNCTION IF EXISTS pgbg._bg_result_info(integer, bigint);
DROP FUNCTION IF EXISTS pgbg._bg_launch(text, integer, text);

-- Every state change of every job: who caused it (session and current role), from which
-- backend, and why. Written by the job table's trigger; deleted with its job.
CREATE TABLE pgbg.job_event (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id     bigint NOT NULL REFERENCES pgbg.job (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    from_state text,
    to_state   text NOT NULL,
    actor      name NOT NULL,
    pid        integer NOT NULL,
    reason     text
);
CREATE INDEX job_event_job_idx ON pgbg.job_event (job_id);

-- Reading stays behind row-level security: a role sees the events of the jobs it sees.
ALTER TABLE pgbg.job_event ENABLE ROW LEVEL SECURITY;
CREATE POLICY job_event_read ON pgbg.job_event FOR SELECT
    USING (EXISTS (SELECT 1 FROM pgbg.job j WHERE j.id = job_event.job_id));

-- Version 1's guard trigger (INSERT and UPDATE only) makes way for this version's
-- (fn_95_triggers.sql), which also guards DELETE.
DROP TRIGGER IF EXISTS job_guard ON pgbg.job;

-- Roles write through functions only: the write policies go (the tables' grants go in
-- `pgbg init`), reading stays behind row-level security.
DROP POLICY IF EXISTS job_insert ON pgbg.job;
DROP POLICY IF EXISTS job_update ON pgbg.job;
DROP POLICY IF EXISTS job_delete ON pgbg.job;
ALTER TABLE pgbg.job ALTER COLUMN owner DROP DEFAULT;
ALTER TABLE pgbg.job ALTER COLUMN search_path DROP DEFAULT;
ALTER TABLE pgbg.job ALTER COLUMN client_app DROP DEFAULT;
ALTER TABLE pgbg.job ADD COLUMN supervisor_start timestamptz;
-- at most 36525 days: an interval PostgreSQL can add to a time stamp
ALTER TABLE pgbg.job ADD CONSTRAINT job_timeout_range CHECK (timeout_ms <= 3155760000000) NOT VALID;
ALTER TABLE pgbg.job ADD CONSTRAINT job_queue_size_range CHECK (queue_size BETWEEN 0 AND 1073741824) NOT VALID;

-- Version 1's supervisors, still running their old loop: they hold session advisory lock
-- (1885823591, role oid, objsubid 2). Only a real one is registered: a pg_background
-- backend of that very role, labelled as pgbg's supervisor, in this database; an advisory
-- lock held by anything else (anyone can take one) is ignored.
INSERT INTO pgbg.supervisor (pid, backend_start, role, legacy)
SELECT DISTINCT ON (r.rolname) a.pid, a.backend_start, r.rolname, true
  FROM pg_catalog.pg_locks l
  JOIN pg_catalog.pg_roles r ON (r.oid::bigint % 2147483648) = l.objid::bigint
  JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 1885823591 AND l.objsubid = 2
   AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
   AND a.backend_type = 'pg_background' AND a.usename = r.rolname
   AND (a.application_name LIKE 'pg\_background:pgbg:supervisor:%' OR a.query = 'CALL pgbg.supervise()')
 ORDER BY r.rolname, a.backend_start;
UPDATE pgbg.job j SET supervisor_start = s.backend_start
  FROM pgbg.supervisor s
 WHERE s.pid = j.supervisor_pid AND s.role = j.owner AND j.state IN ('starting', 'running');
