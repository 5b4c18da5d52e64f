-- What PostgreSQL's progress views say of the given backends (any session may read them).
SELECT pid, 'VACUUM' AS command, phase,
       CASE WHEN phase = 'vacuuming heap' THEN heap_blks_vacuumed ELSE heap_blks_scanned END AS done,
       heap_blks_total AS total, 'blocks' AS unit
  FROM pg_stat_progress_vacuum WHERE pid = ANY(%(pids)s)
UNION ALL
SELECT pid, 'ANALYZE', phase, sample_blks_scanned, sample_blks_total, 'blocks'
  FROM pg_stat_progress_analyze WHERE pid = ANY(%(pids)s)
UNION ALL
SELECT pid, command, phase,
       CASE WHEN blocks_total > 0 THEN blocks_done ELSE tuples_done END,
       CASE WHEN blocks_total > 0 THEN blocks_total ELSE tuples_total END,
       CASE WHEN blocks_total > 0 THEN 'blocks' ELSE 'tuples' END
  FROM pg_stat_progress_create_index WHERE pid = ANY(%(pids)s)
UNION ALL
SELECT pid, command, phase, heap_blks_scanned, heap_blks_total, 'blocks'
  FROM pg_stat_progress_cluster WHERE pid = ANY(%(pids)s)
UNION ALL
SELECT pid, command, type,
       CASE WHEN bytes_total > 0 THEN bytes_processed ELSE tuples_processed END,
       CASE WHEN bytes_total > 0 THEN bytes_total ELSE 0 END,
       CASE WHEN bytes_total > 0 THEN 'bytes' ELSE 'tuples' END
  FROM pg_stat_progress_copy WHERE pid = ANY(%(pids)s)
