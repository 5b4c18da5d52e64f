-- The databases of the server that take connections (templates and datallowconn = false left out).
SELECT d.datname
  FROM pg_catalog.pg_database AS d
 WHERE d.datallowconn AND NOT d.datistemplate
 ORDER BY d.datname
