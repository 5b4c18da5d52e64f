-- pg_background.max_workers, the extension's limit on the workers one session may have
-- at a time. The setting exists only once the library is loaded in this session, which
-- calling the extension's stats function ({stats}) does; its max_workers column is the
-- same figure (and the fallback).
SELECT s.max_workers::int AS max_workers,
       current_setting('pg_background.max_workers', true) AS setting
  FROM {stats}() s
