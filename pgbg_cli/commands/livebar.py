"""A live progress bar on stderr while ``launch --wait`` / ``wait`` runs (terminals only)."""

from __future__ import annotations

import sys
from typing import Any

from pgbg_cli import progress
from pgbg_cli.output import printable


class LiveBar:
    """Rich progress on stderr, fed by the job row and pg_stat_progress_* of its worker."""

    def __init__(self, conn: Any, enabled: bool | None = None) -> None:
        self.conn = conn
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Any = None
        self._tasks: dict[int, Any] = {}

    def __enter__(self) -> LiveBar:
        if self.enabled:
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

            from pgbg_cli.output import stderr_console

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[detail]}", markup=False),  # job text, never markup
                console=stderr_console(),
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def update(self, jobs: list[dict[str, Any]]) -> None:
        if self._progress is None:
            return
        views = progress.by_pid(self.conn, [j.get("worker_pid") for j in jobs if j["state"] == "running"])
        for job in jobs:
            prog = progress.for_job(job, views)
            pct = prog.percent if prog else None
            desc = f"job {job['id']} {job['state']}"
            detail = printable(prog.text if prog else (job.get("reason") or ""))
            task = self._tasks.get(job["id"])
            if task is None:
                task = self._progress.add_task(desc, total=100 if pct is not None else None, detail=detail)
                self._tasks[job["id"]] = task
            self._progress.update(task, description=desc, detail=detail,
                                  total=100 if pct is not None else None,
                                  completed=pct if pct is not None else 0)
