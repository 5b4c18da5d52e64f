"""``pgbg list --watch`` on several targets: each refresh reads every target at once (a thread
and a kept connection each, made again when a target comes back) and shows one view, the
target named on every row; a target that cannot be read is counted and named in the header."""

from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING, Any

from pgbg_cli import jobview, output, stats, watch
from pgbg_cli.targets import SEPARATOR, Target

if TYPE_CHECKING:
    from rich.console import RenderableType


class _One:
    """One target's ListView over its own connection (None while it cannot be reached)."""

    def __init__(self, target: Target, options: dict[str, Any]) -> None:
        self.target = target
        self.options = options
        self.view: watch.ListView | None = None
        self.error: str | None = None

    def fetch(self) -> watch.Snapshot | None:
        from pgbg_cli import db, preflight
        from pgbg_cli.targets import _reason

        try:
            if self.view is None:
                conn = db.connect(self.target.dsn, pin=False)
                try:
                    preflight.check(conn)
                except BaseException:
                    conn.close()
                    raise
                self.view = watch.ListView(conn, **self.options)
            snap = self.view.fetch()
            self.error = None
            return snap
        except Exception as exc:
            self.error = _reason(exc)[0]
            if self.view is not None:  # dropped: made again at the next refresh
                self.view.conn.close()
                self.view = None
            return None


class ManyListView:
    """The list view of several targets (watch.View)."""

    def __init__(self, targets: list[Target], **options: Any) -> None:
        self.ones = [_One(t, options) for t in targets]

    def fetch(self) -> watch.Snapshot:
        snaps: list[watch.Snapshot | None] = [None] * len(self.ones)

        def read(at: int) -> None:
            snaps[at] = self.ones[at].fetch()

        threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(len(self.ones))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rows: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        used = most = bg = 0
        for one, snap in zip(self.ones, snaps, strict=True):
            if snap is None:
                continue
            for row in snap.jobs:
                rows.append(dict(row, target=one.target.name))
            for state, n in snap.counts.items():
                counts[state] = counts.get(state, 0) + n
            # slots are a server's: the busiest target's (databases of one server share them)
            used, most = max(used, snap.slots.used), max(most, snap.slots.max_worker_processes)
            bg = max(bg, snap.slots.pg_background)
        slots = stats.Slots(used=used, max_worker_processes=most, pg_background=bg)
        return watch.Snapshot(at=dt.datetime.now(dt.timezone.utc), slots=slots, jobs=watch.by_importance(rows),
                              counts=counts)

    def _failed(self) -> list[_One]:
        return [one for one in self.ones if one.error is not None]

    def line(self, snap: watch.Snapshot) -> list[str]:
        c = watch._counts(snap)
        counts = " ".join(f"{state}={c[state]}" for state in watch.LINE_STATES)
        down = self._failed()
        return [f"{stats.utc_stamp(snap.at)} {counts} targets={len(self.ones) - len(down)}/{len(self.ones)}"
                + "".join(f" unread={one.target.name}" for one in down)]

    def csv_rows(self, snap: watch.Snapshot) -> list[dict[str, Any]]:
        return [{"at": stats.utc_stamp(snap.at), **watch._counts(snap),
                 "targets_read": len(self.ones) - len(self._failed()), "targets": len(self.ones)}]

    def record(self, snap: watch.Snapshot) -> dict[str, Any]:
        return {"at": snap.at, "counts": snap.counts,
                "targets": [{"target": one.target.name, "error": one.error} for one in self.ones],
                "jobs": [jobview.record(j, now=snap.at) for j in snap.jobs]}  # each naming its target

    def render(self, snap: watch.Snapshot, width: int, height: int) -> RenderableType:
        from rich.console import Group
        from rich.text import Text

        c = watch._counts(snap)
        down = self._failed()
        head = [f"{snap.at.astimezone():%H:%M:%S}  {c['running']} running, {c['queued']} queued"
                f" · {len(self.ones) - len(down)} of {len(self.ones)} targets read",
                "last 1h: " + ", ".join(f"{c[state]} {state}" for state in watch.LINE_STATES[2:])]
        head += [f"{one.target.name}: {one.error}" for one in down]
        parts: list[RenderableType] = [Text(output.printable(line), no_wrap=True, overflow="ellipsis",
                                            style="bold" if i == 0 else None) for i, line in enumerate(head)]
        named = [dict(row, handle=f"{row['target']}{SEPARATOR}{row.get('handle') or row.get('id')}",
                      id=f"{row['target']}{SEPARATOR}{row.get('id')}") for row in snap.jobs]
        parts += watch.jobs_table(named, width, height - len(head))
        return Group(*parts)

    def close(self) -> None:
        for one in self.ones:
            if one.view is not None:
                one.view.conn.close()
