-- pgbg schema version 1: the job registry. Applied once, in one transaction, by `pgbg init`.
-- Functions live in functions.sql and api.sql, which are re-applied on every init.

CREATE TABLE pgbg.settings (
    name        text PRIMARY KEY,
    value       text NOT NULL,
    description text NOT NULL DEFAULT ''
);

INSERT INTO pgbg.settings (name, value, description) VALUES
  ('max_running_per_role', '8',
   'supervised jobs of one role that may run at once in this database; more are queued'),
  ('reserve_slots', '2',
   'max_worker_processes slots left free for parallel query, replication and others; launches beyond are queued'),
  ('poll_ms', '25', 'how often the supervisor looks at its running jobs (milliseconds)'),
  ('supervisor_idle_ms', '3000', 'how long an idle supervisor stays before it exits and frees its slot'),
  ('history_keep', '10000', 'finished jobs kept per role; older ones are pruned automatically'),
  ('history_max_age', '30 days', 'finished jobs older than this are pruned automatically');

CREATE TABLE pgbg.job (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cookie              bigint NOT NULL DEFAULT (('x' || substr(md5(gen_random_uuid()::text), 1, 16))::bit(64)::bigint
                                                & 9223372036854775807),
    owner               name NOT NULL DEFAULT current_user,
    label               text,
    sql                 text NOT NULL,
    state               text NOT NULL DEFAULT 'queued'
                        CHECK (state IN ('queued', 'starting', 'running', 'succeeded', 'failed',
                                         'canceled', 'timed_out', 'lost', 'detached')),
    queue_size          integer NOT NULL DEFAULT 0,
    timeout_ms          bigint CHECK (timeout_ms > 0),
    want_result         boolean NOT NULL DEFAULT false,
    result_types        oid[],
    result_typmods      integer[],
    result_names        text[],
    result              jsonb,
    worker_pid          integer,
    worker_cookie       bigint,
    worker_started      timestamptz,
    supervisor_pid      integer,
    cancel_requested_at timestamptz,
    cancel_grace_ms     integer,
    cancel_by           name,
    cancel_reason       text,
    cancel_signalled_at timestamptz,
    cancel_terminated   boolean NOT NULL DEFAULT false,
    detach_requested_at timestamptz,
    queued_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at          timestamptz,
    finished_at         timestamptz,
    sqlstate            text,
    message             text,
    detail              text,
    hint                text,
    context             text,
    command_tag         text,
    row_count           bigint,
    reason              text,
    progress_pct        integer,
    progress_msg        text,
    progress_at         timestamptz,
    client_addr         text DEFAULT host(inet_client_addr()),
    client_app          text DEFAULT current_setting('application_name', true),
    search_path         text DEFAULT current_setting('search_path', true)
);

CREATE INDEX job_active_idx ON pgbg.job (owner, id) WHERE state IN ('queued', 'starting', 'running');
CREATE INDEX job_finished_idx ON pgbg.job (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX job_label_idx ON pgbg.job (label) WHERE label IS NOT NULL;
CREATE INDEX job_queued_at_idx ON pgbg.job (queued_at);

ALTER TABLE pgbg.job ENABLE ROW LEVEL SECURITY;

-- A role sees and touches its own jobs; members of pgbg_admin see and touch all.
CREATE POLICY job_read ON pgbg.job FOR SELECT
    USING (owner = current_user OR pg_has_role(current_user, 'pgbg_admin', 'MEMBER'));
CREATE POLICY job_insert ON pgbg.job FOR INSERT
    WITH CHECK (owner = current_user);
CREATE POLICY job_update ON pgbg.job FOR UPDATE
    USING (owner = current_user OR pg_has_role(current_user, 'pgbg_admin', 'MEMBER'))
    WITH CHECK (owner = current_user OR pg_has_role(current_user, 'pgbg_admin', 'MEMBER'));
CREATE POLICY job_delete ON pgbg.job FOR DELETE
    USING ((owner = current_user OR pg_has_role(current_user, 'pgbg_admin', 'MEMBER'))
           AND state NOT IN ('queued', 'starting', 'running'));
