"""Progress as figures (pure units): a VACUUM's overall progress across its phases, its pace
and time left, and the lines of the live display of ``wait`` / ``launch --wait``. What the
server reports is tested in test_watch.py; what the screen shows, in test_screens.py."""

from __future__ import annotations

import datetime as dt

import pytest

from pgbg_cli import progress
from pgbg_cli.commands import livebar

T = 10_000  # heap blocks
I = 2_000  # index blocks  # noqa: E741


def _vacuum(phase: str, **kw: int) -> dict[str, int | str]:
    """A progress_by_pid row of a VACUUM of a table with one index of I blocks."""
    row: dict[str, int | str] = {"command": "VACUUM", "phase": phase, "heap_blks_total": T, "heap_blks_scanned": 0,
                                 "heap_blks_vacuumed": 0, "index_vacuum_count": 0, "indexes": 1, "index_blks": I,
                                 "dead_items": 0, "block_size": 8192}
    row.update(kw)
    return row


@pytest.mark.parametrize("row, done, work", [
    (_vacuum("initializing"), 0, T),
    # no dead rows yet: one pass over the heap is all there is to do
    (_vacuum("scanning heap", heap_blks_scanned=2_500), 2_500, T),
    (_vacuum("scanning heap", heap_blks_scanned=2_500, indexes=0, dead_items=900), 2_500, T),
    # dead rows on a table with an index: the scan, a pass over the index, the heap again
    (_vacuum("scanning heap", heap_blks_scanned=2_500, dead_items=900), 2_500, 2 * T + I),
    (_vacuum("vacuuming indexes", heap_blks_scanned=T, dead_items=9_000), T, 2 * T + I),
    (_vacuum("vacuuming indexes", heap_blks_scanned=T, dead_items=9_000, indexes=2, indexes_total=2,
             indexes_processed=1), T + I / 2, 2 * T + I),
    (_vacuum("vacuuming heap", heap_blks_scanned=T, heap_blks_vacuumed=4_000, index_vacuum_count=1), T + I + 4_000,
     2 * T + I),
    # memory for dead rows ran out halfway: one index pass done, another to come
    (_vacuum("vacuuming heap", heap_blks_scanned=5_000, heap_blks_vacuumed=4_000, index_vacuum_count=1),
     5_000 + I + 4_000, 2 * T + 2 * I),
    (_vacuum("cleaning up indexes", heap_blks_scanned=T, heap_blks_vacuumed=9_990, index_vacuum_count=1),
     2 * T + I, 2 * T + I),
    (_vacuum("truncating heap", heap_blks_scanned=T), T, T),
])
def test_vacuum_work_across_phases(row, done, work):
    assert progress.vacuum_work(row) == (pytest.approx(done), pytest.approx(work))


def test_vacuum_work_needs_a_table_size():
    assert progress.vacuum_work(_vacuum("initializing", heap_blks_total=0)) is None


def test_a_vacuum_goes_forward_through_its_phases():
    """The percent does not start again at each phase (it used to)."""
    steps = [_vacuum("scanning heap", heap_blks_scanned=s, dead_items=s) for s in (1, 3_000, 6_000, T)]
    steps += [_vacuum("vacuuming indexes", heap_blks_scanned=T, dead_items=5_000)]
    steps += [_vacuum("vacuuming heap", heap_blks_scanned=T, heap_blks_vacuumed=v, index_vacuum_count=1)
              for v in (0, 5_000, T)]
    steps += [_vacuum("cleaning up indexes", heap_blks_scanned=T, heap_blks_vacuumed=T, index_vacuum_count=1)]
    fractions = [d / w for d, w in map(progress.vacuum_work, steps)]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_vacuum_progress_has_pace_and_time_left():
    job = {"state": "running", "worker_pid": 42}
    row = _vacuum("scanning heap", heap_blks_scanned=5_500, dead_items=100, done=5_500, total=T, unit="blocks")
    prog = progress.for_job(job, {42: row}, elapsed_ms=10_000)
    assert prog is not None
    assert prog.percent == pytest.approx(100 * 5_500 / (2 * T + I))  # 25%
    assert prog.rate_bytes_per_s == pytest.approx(5_500 * 8192 / 10)
    assert prog.eta_ms == pytest.approx(10_000 * 3)  # a quarter done in 10 s: 30 s to go
    d = prog.as_dict()
    assert (progress.pace(d), progress.left(d), progress.describe(d)) == (
        "4.5 MB/s", "30s left", "VACUUM scanning heap 5500/10000 blocks")
    line = livebar.job_line(livebar.Seen({"id": 9, "state": "running", "started_at": NOW}, d), NOW, 80)
    assert line == "job 9 [##--------]  25%      0s  30s left  4.5 MB/s  VACUUM scanning heap 5500/10000 blocks"


def test_time_left_only_where_it_can_be_told():
    assert progress.time_left_ms(0.5, 60_000) == 60_000
    assert progress.time_left_ms(0.005, 60_000) is None  # too little done to tell
    assert progress.time_left_ms(0.5, 500) is None  # too soon
    assert progress.time_left_ms(1.0, 60_000) is None
    # a phase's own figure (CREATE INDEX) starts again at each phase: no time left from it
    job = {"state": "running", "worker_pid": 7}
    ci = {"command": "CREATE INDEX", "phase": "building index: scanning table", "done": 50, "total": 100,
          "unit": "blocks"}
    prog = progress.for_job(job, {7: ci}, elapsed_ms=60_000)
    assert prog is not None and prog.percent == 50 and prog.eta_ms is None
    # the job's own percent is the whole job's
    reported = progress.for_job({"state": "running", "progress_pct": 25, "progress_msg": "x"}, {},
                                elapsed_ms=60_000)
    assert reported is not None and reported.eta_ms == 180_000


# --- the live display ---------------------------------------------------------------------------

NOW = dt.datetime(2026, 11, 25, 14, 0, tzinfo=dt.timezone.utc)


def _seen(job_id: int, state: str, *, age_s: float = 0, prog: dict | None = None) -> livebar.Seen:
    job = {"id": job_id, "state": state, "queued_at": NOW - dt.timedelta(seconds=age_s + 5),
           "started_at": None if state == "queued" else NOW - dt.timedelta(seconds=age_s)}
    return livebar.Seen(job, prog)


def test_one_job_line_keeps_bar_percent_and_clock_first():
    prog = {"percent": 42.0, "message": "copying the orders of the last quarter " * 3, "eta_ms": 83_000}
    line = livebar.job_line(_seen(12, "running", age_s=245, prog=prog), NOW, 80)
    assert line.startswith("job 12 [####------]  42%   4m05s  1m23s left  copying the orders")


def test_the_clock_counts_from_the_jobs_start():
    assert " 1h " in livebar.job_line(_seen(3, "running", age_s=3600), NOW, 80) + " "
    assert livebar.job_line(_seen(4, "queued", age_s=10), NOW, 80) == "job 4 queued     15s"  # waiting since queued


def test_many_jobs_say_done_of_total_and_show_running_ones_first():
    seen = [_seen(i, "succeeded") for i in range(1, 22)] + [_seen(22, "failed"), _seen(23, "canceled")]
    seen += [_seen(30 + i, "queued", age_s=i) for i in range(2)]
    seen += [_seen(40 + i, "running", age_s=100 - i, prog={"percent": 10.0 * i}) for i in range(5)]
    lines = livebar.frame(seen, NOW, 80, 24)
    assert lines[0] == "23/30 done (21 succeeded, 1 failed, 1 canceled), 5 running, 2 queued"
    assert [line.split()[1] for line in lines[1:]] == ["40", "41", "42", "43", "44", "30", "31"]
    assert livebar.frame([], NOW, 80, 24) == []  # before the first refresh: nothing, not "0/0 done"
    small = livebar.frame(seen, NOW, 80, 6)  # 5 lines: the summary, 3 jobs, what is left
    assert small[1:] == [livebar.job_line(s, NOW, 80) for s in seen[-5:-2]] + ["+4 more (2 running, 2 queued)"]
