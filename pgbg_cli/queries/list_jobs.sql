-- Live jobs, and those that ended in the last hour (or all history with %(all)s), newest first
-- (with %(live_first)s, as the watch views ask: live jobs before the others, so that the limit
-- never leaves out a running job for a finished one).
-- One index per branch, so a refresh of `pgbg list --watch` costs what the live jobs and the
-- last %(limit)s finished ones cost, however long the history: live jobs come from the
-- partial index job_active_idx, recently finished ones from job_finished_idx (or the
-- primary key), all history from the primary key read backwards.
-- statement_timestamp(), not clock_timestamp(): a volatile bound could not use an index.
-- Each row has the fields of the job record (jobview.record), the whole SQL included; with
-- %(counted)s, `total` is how many jobs match in all, however many the limit lets through
-- (a subquery run once, and only when asked: `pgbg list` says so when the limit cut the list).
SELECT j.id, j.cookie, j.id || ':' || j.cookie AS handle, j.label, j.group_name, j.state, j.owner, j.sql,
       j.queued_at, j.started_at, j.finished_at,
       greatest(0, round(extract(epoch FROM coalesce(j.finished_at, clock_timestamp())
                                            - coalesce(j.started_at, j.queued_at)) * 1000))::bigint AS elapsed_ms,
       j.timeout_ms, j.progress_pct, j.progress_msg, j.worker_pid, j.client_addr,
       j.sqlstate, j.message, j.detail, j.hint, j.context, j.command_tag, j.row_count, j.reason,
       j.messages, j.messages_dropped,
       CASE WHEN %(counted)s THEN
         (SELECT count(*) FROM pgbg.job c
           WHERE (%(all)s OR c.state IN ('queued', 'starting', 'running')
                  OR c.finished_at > statement_timestamp() - interval '1 hour')
             AND (%(states)s::text[] IS NULL OR c.state = ANY(%(states)s::text[]))
             AND (%(label)s::text IS NULL OR c.label LIKE %(label)s::text ESCAPE '\')
             AND (%(group)s::text IS NULL OR c.group_name = %(group)s::text)) END AS total
  FROM ((SELECT a.* FROM pgbg.job a
          WHERE NOT %(all)s AND a.state IN ('queued', 'starting', 'running'))
        UNION ALL
        (SELECT f.* FROM pgbg.job f
          WHERE NOT %(all)s
            AND f.finished_at > statement_timestamp() - interval '1 hour'
            AND f.state NOT IN ('queued', 'starting', 'running')
            AND (%(states)s::text[] IS NULL OR f.state = ANY(%(states)s::text[]))
            AND (%(label)s::text IS NULL OR f.label LIKE %(label)s::text ESCAPE '\')
            AND (%(group)s::text IS NULL OR f.group_name = %(group)s::text)
          ORDER BY f.id DESC
          LIMIT %(limit)s)
        UNION ALL
        (SELECT h.* FROM pgbg.job h
          WHERE %(all)s
            AND (%(states)s::text[] IS NULL OR h.state = ANY(%(states)s::text[]))
            AND (%(label)s::text IS NULL OR h.label LIKE %(label)s::text ESCAPE '\')
            AND (%(group)s::text IS NULL OR h.group_name = %(group)s::text)
          ORDER BY h.id DESC
          LIMIT %(limit)s)) j
 WHERE (%(states)s::text[] IS NULL OR j.state = ANY(%(states)s::text[]))
   AND (%(label)s::text IS NULL OR j.label LIKE %(label)s::text ESCAPE '\')
   AND (%(group)s::text IS NULL OR j.group_name = %(group)s::text)
 ORDER BY %(live_first)s AND j.state IN ('queued', 'starting', 'running') DESC, j.id DESC
 LIMIT %(limit)s
