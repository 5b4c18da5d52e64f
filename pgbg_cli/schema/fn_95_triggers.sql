-- The triggers that hold the state machine, the audit trail and typed settings. Created
-- once, when missing: a trigger made anew on every `pgbg init` would lock the tables that
-- running supervisors use. The functions they call are re-applied like every other.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                    WHERE tgrelid = 'pgbg.settings'::pg_catalog.regclass AND tgname = 'settings_guard') THEN
        CREATE TRIGGER settings_guard BEFORE INSERT OR UPDATE OR DELETE ON pgbg.settings
            FOR EACH ROW EXECUTE FUNCTION pgbg._settings_guard();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                    WHERE tgrelid = 'pgbg.job'::pg_catalog.regclass AND tgname = 'job_guard') THEN
        CREATE TRIGGER job_guard BEFORE INSERT OR UPDATE OR DELETE ON pgbg.job
            FOR EACH ROW EXECUTE FUNCTION pgbg._job_guard();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                    WHERE tgrelid = 'pgbg.job'::pg_catalog.regclass AND tgname = 'job_audit') THEN
        CREATE TRIGGER job_audit AFTER INSERT OR UPDATE OF state ON pgbg.job
            FOR EACH ROW EXECUTE FUNCTION pgbg._job_audit();
    END IF;
END
$$;
