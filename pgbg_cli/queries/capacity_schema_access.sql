-- Whether pgbg's schema is there and the caller may read its settings and jobs. Catalog
-- lookups by oid: naming pgbg.job (even in to_regclass) fails for a role without USAGE.
WITH rel AS (
    SELECT c.relname, c.oid
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'pgbg' AND c.relname IN ('job', 'settings')
), fn AS (
    SELECT p.oid
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'pgbg' AND p.proname = 'worker_slots' AND p.pronargs = 0
)
SELECT (SELECT count(*) FROM rel) = 2 AS present,
       has_schema_privilege('pgbg', 'USAGE')
         AND (SELECT bool_and(has_table_privilege(rel.oid, 'SELECT')) FROM rel)
         AND coalesce((SELECT has_function_privilege(fn.oid, 'EXECUTE') FROM fn), false) AS usable
 WHERE EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pgbg')
