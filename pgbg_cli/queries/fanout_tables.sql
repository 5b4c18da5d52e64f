-- The tables a statement template is expanded over (pgbg fanout): ordinary tables (partitions
-- included) and materialized views whose schema and name match the patterns (anchored POSIX
-- regular expressions, made by fanout.py from shell-style patterns), at or above the size,
-- dead-tuple and transaction-id-age floors, most urgent first by the chosen key. Without a
-- schema pattern, the system's schemas and pgbg's own are left out; other sessions' temporary
-- tables always are. `target` is the schema-qualified name, each part quoted as the server
-- quotes identifiers (quote_ident: `schema_q`, `name_q`).
-- `may_maintain`: VACUUM and ANALYZE skip, with a mere WARNING, a table the role may not
-- maintain (PostgreSQL 17 and later: the MAINTAIN privilege, or owning the database; before:
-- owning the table or the database).
WITH t AS (
    SELECT pg_catalog.format('%%I.%%I', n.nspname, c.relname) AS target,
           n.nspname::text AS schema, c.relname::text AS name,
           pg_catalog.quote_ident(n.nspname) AS schema_q, pg_catalog.quote_ident(c.relname) AS name_q,
           CASE c.relkind WHEN 'm' THEN 'materialized view' ELSE 'table' END AS kind,
           pg_catalog.pg_total_relation_size(c.oid) AS bytes,
           COALESCE(s.n_dead_tup, 0) AS dead_tuples,
           pg_catalog.age(c.relfrozenxid)::bigint AS xid_age,
           (NOT c.relisshared AND pg_catalog.pg_has_role(
                (SELECT d.datdba FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()),
                'USAGE'))
           OR CASE WHEN %(maintain)s THEN pg_catalog.has_table_privilege(c.oid, 'MAINTAIN')
                   ELSE pg_catalog.pg_has_role(c.relowner, 'USAGE') END AS may_maintain
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid = c.oid
     WHERE c.relkind IN ('r', 'm')
       AND c.relpersistence <> 't'
       AND (CASE WHEN pg_catalog.cardinality(%(schemas)s::text[]) > 0
                 THEN n.nspname ~ ANY (%(schemas)s::text[])
                 ELSE n.nspname <> ALL (%(hidden)s::text[]) AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)' END)
       AND (pg_catalog.cardinality(%(tables)s::text[]) = 0
            OR c.relname ~ ANY (%(tables)s::text[])
            OR (n.nspname || '.' || c.relname) ~ ANY (%(tables)s::text[]))
       AND NOT (c.relname ~ ANY (%(excluded)s::text[]) OR (n.nspname || '.' || c.relname) ~ ANY (%(excluded)s::text[]))
)
SELECT * FROM t
 WHERE bytes >= %(min_bytes)s AND dead_tuples >= %(min_dead)s AND xid_age >= %(min_xid_age)s
 ORDER BY CASE %(order)s WHEN 'size' THEN bytes WHEN 'dead' THEN dead_tuples WHEN 'xid-age' THEN xid_age END DESC
          NULLS LAST, schema, name
