-- pg_background's own counters: they describe only the calling session's workers.
-- {stats} is the extension's stats function, schema-qualified.
SELECT * FROM {stats}()
