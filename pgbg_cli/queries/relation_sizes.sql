-- The total size (table, indexes, TOAST) of relations named schema.name, as a VACUUM or ANALYZE
-- of a group's job names them (group_progress.py passes only such names); NULL for a name that
-- finds nothing.
SELECT n.name, pg_catalog.pg_total_relation_size(pg_catalog.to_regclass(n.name)) AS bytes
  FROM pg_catalog.unnest(%(names)s::text[]) AS n(name)
