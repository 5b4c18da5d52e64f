-- Launching a claimed job as a worker of the supervisor's session: with the supervisor's
-- role's rights (SECURITY INVOKER), the job's own search_path, and none of the
-- supervisor's own timeouts.

-- Launch a claimed job. Returns false when no slot was free (the job is queued again).
CREATE OR REPLACE FUNCTION pgbg._launch_claimed(p_id bigint)
RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j pgbg.job;
    h record;
    v_state text;
    v_message text;
    keep boolean;
BEGIN
    -- locked first: a lock timeout here comes before anything runs
    j := pgbg._lock_claimed(p_id);
    IF j.id IS NULL THEN
        RETURN true;
    END IF;
    -- Nobody reads a worker's messages while it runs, and once they fill its queue the worker
    -- blocks until this supervisor reads the queue to the end of the job, stalling every
    -- other job meanwhile. Where the job's messages are kept (fn_45_messages.sql) its NOTICEs
    -- go to the queue too, which is then 1 MB unless the job asked for a size (about 5000
    -- messages); elsewhere they are kept out of it. The job's statements wait for locks as
    -- they would anywhere (no lock_timeout of the supervisor's).
    keep := pgbg._messages_available();
    PERFORM pg_catalog.set_config('client_min_messages', CASE WHEN keep THEN 'notice' ELSE 'warning' END, true);
    PERFORM pg_catalog.set_config('lock_timeout', '0', true);
    BEGIN
        SELECT * INTO h FROM pgbg._bg_launch(
            j.sql || coalesce(pgbg._tag_statement(j), ''),
            CASE WHEN keep AND j.queue_size = 0 THEN 1048576 ELSE j.queue_size END,
            pg_catalog.left('pgbg:' || j.id || ':' || coalesce(j.label, ''), 60), j.search_path);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
        IF v_state = '42883' THEN
            -- pg_background cannot be called: its library lacks a function of its SQL objects
            -- (a package of another version installed over it), or pgbg's wrappers went with
            -- a DROP EXTENSION. Nothing ran: the job waits, and this supervisor stops (see
            -- pgbg._supervisor_stop()) instead of failing every job it would launch.
            PERFORM pgbg._record_requeued(j.id, 'waiting: pg_background cannot be called (' || v_message || ')');
            PERFORM pgbg._supervisor_stop(v_message);
            RETURN false;
        END IF;
        IF v_state IN ('53000', '53400') THEN
            -- 53000: no free slot of max_worker_processes; 53400: this session holds
            -- pg_background.max_workers handles already. Either way: queued again, not failed.
            PERFORM pgbg._record_requeued(j.id, 'waiting for a free worker slot');
            RETURN false;
        END IF;
        PERFORM pgbg._record_launch_failed(j.id, v_state, v_message);
        RETURN true;
    END;
    -- The launch's record commits without waiting for its WAL to reach the disk: one flush a
    -- job less on a server with fsync on. Set only now, after the worker has copied this
    -- session's settings: the job keeps its role's synchronous_commit. A crash that loses the
    -- record leaves the job 'starting' with no worker, which reconcile reports lost, never
    -- queues again; and any later flush (the job's own commit, the record of its end) writes
    -- the record first, since WAL goes to the disk in order.
    PERFORM pg_catalog.set_config('synchronous_commit', 'off', true);
    PERFORM pgbg._record_launched(j.id, h.pid, h.cookie);
    RETURN true;
END
$$;
