-- Submitting jobs, and the two requests anyone who may manage a job can make of it:
-- cancel and detach. A request only sets a flag that the owner's supervisor (or, when it
-- is gone, reconcile) acts on; the one exception is a queued job, which has no worker yet
-- and is canceled at once.

-- What every submit checks, before anything is queued: p_proof shows the caller is p_owner
-- (pgbg._actor), p_owner may use pgbg and is no group role, and the options are in range.
-- Raises; returns nothing.
CREATE OR REPLACE FUNCTION pgbg._submit_check(p_owner name, p_proof text, p_timeout_ms bigint, p_queue_size integer,
                                              p_group_name text, p_group_limit integer)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgbg._actor(p_owner, p_proof);
    IF NOT pg_catalog.pg_has_role(p_owner, 'pgbg_user', 'USAGE') THEN
        RAISE EXCEPTION 'pgbg: role % may not use pgbg (pgbg grant %)', p_owner, p_owner USING ERRCODE = '42501';
    END IF;
    IF p_timeout_ms IS NOT NULL AND (p_timeout_ms <= 0 OR p_timeout_ms > 3155760000000) THEN
        RAISE EXCEPTION 'pgbg: a timeout is from 1 ms to 36525 days' USING ERRCODE = '22023';
    END IF;
    IF coalesce(p_queue_size, 0) NOT BETWEEN 0 AND 1073741824 THEN
        RAISE EXCEPTION 'pgbg: a queue size is from 0 to 1 GB' USING ERRCODE = '22023';
    END IF;
    IF p_group_name IS NOT NULL AND pg_catalog.length(p_group_name) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'pgbg: a group name has 1 to 200 characters' USING ERRCODE = '22023';
    END IF;
    IF p_group_limit IS NOT NULL AND (p_group_limit < 1 OR p_group_name IS NULL) THEN
        RAISE EXCEPTION 'pgbg: a group limit is a positive number of jobs, for a named group' USING ERRCODE = '22023';
    END IF;
    IF p_owner IN ('pgbg_admin', 'pgbg_owner', 'pgbg_user', 'pgbackground_role') THEN
        RAISE EXCEPTION 'pgbg: a group role (%) cannot own jobs', p_owner USING ERRCODE = '42501';
    END IF;
END
$$;

-- Submit a job as p_owner (default: the caller's current role); it starts queued with a
-- cookie nobody chose. Call pgbg.ensure_supervisor() after this commits. p_search_path
-- (default: the caller's) is the path the job's worker will run with. p_group_name puts the
-- job in a group of p_owner's jobs (groups are per owner: a role reaches only its own); with
-- p_group_limit N, the job starts only while fewer than N jobs of its group are starting or
-- running, and after every job queued before it in its group (pgbg._claim_next()).
DROP FUNCTION IF EXISTS pgbg.submit(text, text, bigint, integer, boolean, oid[], integer[], text[]);
DROP FUNCTION IF EXISTS pgbg.submit(text, text, bigint, integer, boolean, oid[], integer[], text[], name, text, text);
CREATE OR REPLACE FUNCTION pgbg.submit(
    p_sql text,
    p_label text DEFAULT NULL,
    p_timeout_ms bigint DEFAULT NULL,
    p_queue_size integer DEFAULT 0,
    p_want_result boolean DEFAULT false,
    p_result_types oid[] DEFAULT NULL,
    p_result_typmods integer[] DEFAULT NULL,
    p_result_names text[] DEFAULT NULL,
    p_owner name DEFAULT current_user,
    p_proof text DEFAULT pgbg._proof(),
    p_search_path text DEFAULT pg_catalog.current_setting('search_path'),
    p_group_name text DEFAULT NULL,
    p_group_limit integer DEFAULT NULL)
RETURNS SETOF pgbg.job
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgbg._submit_check(p_owner, p_proof, p_timeout_ms, p_queue_size, p_group_name, p_group_limit);
    IF p_sql IS NULL OR pg_catalog.btrim(p_sql) = '' THEN
        RAISE EXCEPTION 'pgbg: no SQL given' USING ERRCODE = '22023';
    END IF;
    IF coalesce(p_want_result, false) AND EXISTS (
           SELECT 1 FROM unnest(p_result_types) t(oid) LEFT JOIN pg_catalog.pg_type ty ON ty.oid = t.oid
            WHERE t.oid >= 16384 OR ty.typtype IS NULL OR ty.typtype = 'p') THEN
        RAISE EXCEPTION 'pgbg: rows are kept only in built-in types: cast the columns (e.g. ::text)'
            USING ERRCODE = '42804';
    END IF;
    RETURN QUERY
        INSERT INTO pgbg.job (owner, sql, label, timeout_ms, queue_size, want_result,
                              result_types, result_typmods, result_names, search_path, client_app,
                              group_name, group_limit)
        VALUES (p_owner, p_sql, p_label, p_timeout_ms, coalesce(p_queue_size, 0), coalesce(p_want_result, false),
                p_result_types, p_result_typmods, p_result_names, p_search_path,
                pg_catalog.current_setting('application_name', true), p_group_name, p_group_limit)
        RETURNING *;
END
$$;

-- Submit many jobs at once, in one statement (pgbg launch with several SQL arguments, a file
-- of statements or lines): the checks of pgbg.submit once, then one job per element of
-- p_sqls, in order, sharing label, timeout, queue size and group; none keeps rows
-- (--result is for a single job). p_shapes: a JSON array as long as p_sqls, each element
-- what pgbg.submit's p_result_types, p_result_typmods and p_result_names would be, as
-- {"t": [oid, ...], "m": [typmod, ...], "n": [name, ...]}, or null (several statements).
-- Returns each job's id and cookie, in the order of p_sqls. All or none: it is one statement.
CREATE OR REPLACE FUNCTION pgbg.submit_many(
    p_sqls text[],
    p_shapes jsonb,
    p_label text DEFAULT NULL,
    p_timeout_ms bigint DEFAULT NULL,
    p_queue_size integer DEFAULT 0,
    p_group_name text DEFAULT NULL,
    p_group_limit integer DEFAULT NULL,
    p_owner name DEFAULT current_user,
    p_proof text DEFAULT pgbg._proof(),
    p_search_path text DEFAULT pg_catalog.current_setting('search_path'))
RETURNS TABLE (id bigint, cookie bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n integer := coalesce(pg_catalog.array_length(p_sqls, 1), 0);
BEGIN
    PERFORM pgbg._submit_check(p_owner, p_proof, p_timeout_ms, p_queue_size, p_group_name, p_group_limit);
    IF n = 0 OR pg_catalog.array_ndims(p_sqls) <> 1 THEN
        RAISE EXCEPTION 'pgbg: no SQL given' USING ERRCODE = '22023';
    END IF;
    IF p_shapes IS NULL OR pg_catalog.jsonb_typeof(p_shapes) <> 'array' OR pg_catalog.jsonb_array_length(p_shapes) <> n
       OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(p_shapes) e(v)
                   WHERE pg_catalog.jsonb_typeof(e.v) NOT IN ('null', 'object')) THEN
        RAISE EXCEPTION 'pgbg: p_shapes is an array of one object or null per statement' USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_sqls) s(q) WHERE s.q IS NULL OR pg_catalog.btrim(s.q) = '') THEN
        RAISE EXCEPTION 'pgbg: no SQL given (job % of %)',
            (SELECT min(s.i) FROM unnest(p_sqls) WITH ORDINALITY s(q, i) WHERE s.q IS NULL OR pg_catalog.btrim(s.q) = ''),
            n USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
        INSERT INTO pgbg.job AS j (owner, sql, label, timeout_ms, queue_size, want_result,
                                   result_types, result_typmods, result_names, search_path, client_app,
                                   group_name, group_limit)
        SELECT p_owner, s.q, p_label, p_timeout_ms, coalesce(p_queue_size, 0), false,
               CASE WHEN sh.v IS NOT NULL THEN ARRAY(SELECT x.e::oid FROM pg_catalog.jsonb_array_elements_text(sh.v -> 't')
                                                    WITH ORDINALITY x(e, i) ORDER BY x.i) END,
               CASE WHEN sh.v IS NOT NULL THEN ARRAY(SELECT x.e::integer FROM pg_catalog.jsonb_array_elements_text(sh.v -> 'm')
                                                    WITH ORDINALITY x(e, i) ORDER BY x.i) END,
               CASE WHEN sh.v IS NOT NULL THEN ARRAY(SELECT x.e FROM pg_catalog.jsonb_array_elements_text(sh.v -> 'n')
                                                    WITH ORDINALITY x(e, i) ORDER BY x.i) END,
               p_search_path, pg_catalog.current_setting('application_name', true), p_group_name, p_group_limit
          FROM unnest(p_sqls) WITH ORDINALITY s(q, i)
          CROSS JOIN LATERAL (SELECT nullif(p_shapes -> (s.i::integer - 1), 'null'::jsonb) AS v) sh
         ORDER BY s.i
        RETURNING j.id, j.cookie;
END
$$;

-- Ask for jobs to stop, by handle (id and cookie: a wrong cookie reads like an unknown id).
-- Only jobs p_actor may manage (its own; any as pgbg_admin). A queued job is canceled
-- here and now; a running one is stopped by its supervisor, or by reconcile when orphaned.
-- Returns the ids it asked.
CREATE OR REPLACE FUNCTION pgbg.request_cancel(p_ids bigint[], p_cookies bigint[], p_grace_ms integer DEFAULT 0,
                                               p_actor name DEFAULT current_user,
    p_proof text DEFAULT pgbg._proof())
RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgbg._actor(p_actor, p_proof);
    IF p_grace_ms IS NULL OR p_grace_ms < 0 THEN
        RAISE EXCEPTION 'pgbg: a grace period cannot be negative' USING ERRCODE = '22023';
    END IF;
    -- the rows locked in id order first, the order a supervisor's pass records them in: a
    -- cancel of several jobs never deadlocks with a pass that records several of them
    -- (only rows the UPDATE below would take: no role locks another's jobs through this)
    PERFORM 1 FROM pgbg.job j, unnest(p_ids, p_cookies) AS h(id, cookie)
     WHERE j.id = h.id AND j.cookie = h.cookie AND j.state IN ('queued', 'starting', 'running')
       AND pgbg._may_manage(p_actor, j.owner)
     ORDER BY j.id FOR NO KEY UPDATE OF j;
    RETURN QUERY
        UPDATE pgbg.job j
           SET cancel_requested_at = coalesce(j.cancel_requested_at, pg_catalog.clock_timestamp()),
               cancel_grace_ms = coalesce(j.cancel_grace_ms, p_grace_ms),
               cancel_by = coalesce(j.cancel_by, p_actor),
               state = CASE WHEN j.state = 'queued' THEN 'canceled' ELSE j.state END,
               reason = CASE WHEN j.state = 'queued' THEN 'canceled by ' || p_actor || ' while queued'
                             ELSE j.reason END
          FROM unnest(p_ids, p_cookies) AS h(id, cookie)
         WHERE j.id = h.id AND j.cookie = h.cookie AND j.state IN ('queued', 'starting', 'running')
           AND pgbg._may_manage(p_actor, j.owner)
        RETURNING j.id;
END
$$;

-- Ask pgbg to stop tracking running jobs; their workers go on. Same rules as cancel.
CREATE OR REPLACE FUNCTION pgbg.request_detach(p_ids bigint[], p_cookies bigint[], p_actor name DEFAULT current_user,
    p_proof text DEFAULT pgbg._proof())
RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgbg._actor(p_actor, p_proof);
    PERFORM 1 FROM pgbg.job j, unnest(p_ids, p_cookies) AS h(id, cookie)  -- in id order first, as request_cancel
     WHERE j.id = h.id AND j.cookie = h.cookie AND j.state IN ('starting', 'running')
       AND pgbg._may_manage(p_actor, j.owner)
     ORDER BY j.id FOR NO KEY UPDATE OF j;
    RETURN QUERY
        UPDATE pgbg.job j
           SET detach_requested_at = coalesce(j.detach_requested_at, pg_catalog.clock_timestamp())
          FROM unnest(p_ids, p_cookies) AS h(id, cookie)
         WHERE j.id = h.id AND j.cookie = h.cookie AND j.state IN ('starting', 'running')
           AND pgbg._may_manage(p_actor, j.owner)
        RETURNING j.id;
END
$$;
