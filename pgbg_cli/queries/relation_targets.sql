-- The relations a VACUUM, ANALYZE, REINDEX or CLUSTER names (as written, for to_regclass),
-- found the way the job will find them: with the job's search_path, set for this one
-- transaction. Their kind, and whether the current role may maintain them: VACUUM and
-- ANALYZE skip, with a mere WARNING, a table the role may not maintain (PostgreSQL 17 and
-- later: the MAINTAIN privilege, or owning the database; before: owning the table or the
-- database).
SELECT pg_catalog.set_config('search_path', %(path)s, true);
SELECT n.i, c.oid IS NOT NULL AS found, c.relkind::text AS relkind,
       c.oid IS NOT NULL AND (
           (NOT c.relisshared AND pg_catalog.pg_has_role(
               (SELECT d.datdba FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()),
               'USAGE'))
           OR CASE WHEN %(maintain)s THEN pg_catalog.has_table_privilege(c.oid, 'MAINTAIN')
                   ELSE pg_catalog.pg_has_role(c.relowner, 'USAGE') END) AS may_maintain
  FROM unnest(%(names)s::text[]) WITH ORDINALITY AS n(name, i)
  LEFT JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(n.name)
 ORDER BY n.i
