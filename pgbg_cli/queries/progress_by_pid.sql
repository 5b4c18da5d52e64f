-- What PostgreSQL's progress views say of the given backends (any session may read them):
-- the command, its phase and how far the phase has got (done of total, in unit). VACUUM
-- also gives the counters its overall progress is computed from (pgbg_cli/progress.py);
-- its row is read through to_jsonb so that one text serves PostgreSQL 14 to 18, whose
-- views differ (num_dead_tuples became num_dead_item_ids in 17, which added indexes_total
-- and indexes_processed, reported during the index phases only). How many indexes the table
-- has, and their size in blocks, come from the catalog (pg_relation_size checks no
-- privilege). block_size turns blocks into bytes.
SELECT v.pid, 'VACUUM' AS command, v.phase,
       CASE v.phase WHEN 'scanning heap' THEN v.heap_blks_scanned
                    WHEN 'vacuuming heap' THEN v.heap_blks_vacuumed
                    WHEN 'vacuuming indexes' THEN (x ->> 'indexes_processed')::bigint
                    WHEN 'cleaning up indexes' THEN (x ->> 'indexes_processed')::bigint END AS done,
       CASE WHEN v.phase IN ('scanning heap', 'vacuuming heap') THEN v.heap_blks_total
            WHEN v.phase IN ('vacuuming indexes', 'cleaning up indexes') THEN (x ->> 'indexes_total')::bigint
       END AS total,
       CASE WHEN v.phase IN ('vacuuming indexes', 'cleaning up indexes') THEN 'indexes' ELSE 'blocks' END AS unit,
       v.heap_blks_total, v.heap_blks_scanned, v.heap_blks_vacuumed, v.index_vacuum_count,
       (x ->> 'indexes_total')::bigint AS indexes_total,
       (x ->> 'indexes_processed')::bigint AS indexes_processed,
       ix.indexes, ix.index_blks,
       coalesce((x ->> 'num_dead_item_ids')::bigint, (x ->> 'num_dead_tuples')::bigint) AS dead_items,
       pg_catalog.current_setting('block_size')::int AS block_size
  FROM pg_catalog.pg_stat_progress_vacuum v
       CROSS JOIN LATERAL pg_catalog.to_jsonb(v) AS x
       CROSS JOIN LATERAL (SELECT pg_catalog.count(*) AS indexes,
                                  pg_catalog.sum(pg_catalog.pg_relation_size(i.indexrelid))::bigint
                                    / pg_catalog.current_setting('block_size')::int AS index_blks
                             FROM pg_catalog.pg_index i WHERE i.indrelid = v.relid) AS ix
 WHERE v.pid = ANY(%(pids)s)
UNION ALL
SELECT pid, 'ANALYZE', phase, sample_blks_scanned, sample_blks_total, 'blocks',
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM pg_catalog.pg_stat_progress_analyze WHERE pid = ANY(%(pids)s)
UNION ALL
SELECT pid, command, phase,
       CASE WHEN blocks_total > 0 THEN blocks_done ELSE tuples_done END,
       CASE WHEN blocks_total > 0 THEN blocks_total ELSE tuples_total END,
       CASE WHEN blocks_total > 0 THEN 'blocks' ELSE 'tuples' END,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM pg_catalog.pg_stat_progress_create_index WHERE pid = ANY(%(pids)s)
UNION ALL
SELECT pid, command, phase, heap_blks_scanned, heap_blks_total, 'blocks',
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM pg_catalog.pg_stat_progress_cluster WHERE pid = ANY(%(pids)s)
UNION ALL
SELECT pid, command, type,
       CASE WHEN bytes_total > 0 THEN bytes_processed ELSE tuples_processed END,
       CASE WHEN bytes_total > 0 THEN bytes_total ELSE 0 END,
       CASE WHEN bytes_total > 0 THEN 'bytes' ELSE 'tuples' END,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM pg_catalog.pg_stat_progress_copy WHERE pid = ANY(%(pids)s)
