-- Where pg_background lives, its version, which of its functions exist, and what the caller may do.
SELECT e.extversion AS version,
       n.nspname AS schema,
       has_schema_privilege(n.oid, 'USAGE') AS schema_usage,
       coalesce((SELECT array_agg(DISTINCT p.proname::text ORDER BY p.proname::text)
                   FROM pg_proc p
                  WHERE p.pronamespace = e.extnamespace
                    AND p.proname::text LIKE 'pg\_background\_%'), '{}') AS functions,
       coalesce((SELECT array_agg(DISTINCT p.proname::text ORDER BY p.proname::text)
                   FROM pg_proc p
                  WHERE p.pronamespace = e.extnamespace
                    AND p.proname::text LIKE 'pg\_background\_%'
                    AND has_function_privilege(p.oid, 'EXECUTE')), '{}') AS executable,
       EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgbackground_role') AS role_exists,
       current_user::text AS current_user,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS is_superuser,
       current_setting('server_version_num')::int AS server_version_num
  FROM pg_extension e
  JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'pg_background'
