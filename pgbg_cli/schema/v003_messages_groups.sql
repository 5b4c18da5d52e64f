-- pgbg schema version 3: what a job said, and groups of jobs. Applied once, in one
-- transaction, by `pgbg init`, after version 2.

-- The WARNING, NOTICE and INFO messages a job emitted, in order, as a JSON array of objects
-- ({"severity", "sqlstate", "message", "detail", "hint"}), kept by its supervisor with the
-- outcome. NULL: not kept (the server lacks pgbg's message module, or the job ended before
-- this version); [] : the job emitted none. The array is bounded; `messages_dropped` counts
-- the messages left out beyond the bound.
ALTER TABLE pgbg.job
    ADD COLUMN messages         jsonb CHECK (messages IS NULL OR pg_catalog.jsonb_typeof(messages) = 'array'),
    ADD COLUMN messages_dropped integer NOT NULL DEFAULT 0 CHECK (messages_dropped >= 0);

-- A group: jobs of one role that share a name run at most `group_limit` at a time, in the
-- order they were queued, whatever the role's other jobs do. NULL group_name: no group.
ALTER TABLE pgbg.job
    ADD COLUMN group_name  text CHECK (group_name IS NULL OR pg_catalog.length(group_name) BETWEEN 1 AND 200),
    ADD COLUMN group_limit integer CHECK (group_limit IS NULL OR group_limit > 0),
    ADD CONSTRAINT job_group_limit_needs_group CHECK (group_limit IS NULL OR group_name IS NOT NULL);

CREATE INDEX job_owner_group_idx ON pgbg.job (owner, group_name, id) WHERE group_name IS NOT NULL;
