-- pgbg's settings (pgbg.settings), for `pgbg settings`.
SELECT s.name, s.value, s.description FROM pgbg.settings s ORDER BY s.name
