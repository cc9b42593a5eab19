"""The conductor's once-a-second tick: snapshot, alerts, journal, reporter, in that order.

`anvil run` passes a `RunMonitor` to `execute_run(monitor=...)`; each tick the conductor calls
`snapshot(conductor, now)`, stores the snapshot and serves it to the API, then calls
`show(snapshot)` (`on_tick` does all three, for callers that drive it themselves). It is the
small driver around pure pieces: `build_snapshot` (figures), `AlertEngine` (decisions),
`deliver` (the user's alert command) and a `Reporter` (the screen).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from anvil_cli.alerts import AlertChange, AlertEngine, deliver
from anvil_cli.config import Settings
from anvil_cli.dashboard.reporter import Reporter
from anvil_cli.engine.conductor import run_state
from anvil_cli.snapshot import build_snapshot

if TYPE_CHECKING:
    from anvil_cli.engine.conductor import Conductor

BACKLOG_WINDOW_S = 60.0


def conductor_snapshot(
    conductor: Conductor, *, batch_path: str, started_wall: float, alerts: list[dict[str, Any]], now: float
) -> dict[str, Any]:
    """`build_snapshot` with every input read from the conductor (`now`: monotonic)."""
    pool, metrics, scaling = conductor.pool, conductor.metrics, conductor.settings.scaling
    in_flight = pool.in_flight()
    workers = [
        {"id": w.worker_id, "pid": w.process.pid, "alive": w.alive, "jobs": len(w.jobs)}
        for w in pool.workers.values()
    ]
    return build_snapshot(
        run_id=conductor.run_id,
        batch_path=batch_path,
        state=run_state(conductor),
        started_wall=started_wall,
        metrics=metrics,
        now=now,
        in_flight=in_flight,
        agent_limit=conductor.agent_limit,
        agent_min=scaling.min_agents,
        agent_max=scaling.max_agents,
        queue_depth=len(conductor.ready),
        pending=max(0, metrics.total - metrics.done - metrics.already_done - in_flight),
        workers=workers,
        worker_restarts=pool.restarts,
        governor=conductor.governor_snapshot(),
        alerts=alerts,
        paused=conductor.paused,
    )


class RunMonitor:
    """Builds the snapshot each tick, raises/clears alerts, stores both, and shows them."""

    def __init__(
        self,
        settings: Settings,
        reporter: Reporter,
        *,
        batch_path: str,
        wall_clock: Callable[[], float] = time.time,
        mono_clock: Callable[[], float] = time.monotonic,
        deliver_alert: Callable[[str, AlertChange], Any] = deliver,
    ) -> None:
        self.settings = settings
        self.reporter = reporter
        self.batch_path = batch_path
        self.alerts = AlertEngine(settings.alerts)
        self._wall = wall_clock
        self._mono = mono_clock
        self._deliver = deliver_alert
        self._started_wall: float | None = None
        self.last: dict[str, Any] | None = None
        self._backlog: deque[tuple[float, int]] = deque()  # (now, jobs waiting) over the last minute

    def snapshot(self, conductor: Conductor, now: float | None = None) -> dict[str, Any]:
        """The snapshot with its alerts evaluated; alert changes are recorded in the journal,
        printed by the reporter and handed to `alerts.command`. Neither saves nor shows it."""
        now = self._mono() if now is None else now
        if self._started_wall is None:  # wall time of the metrics' start, derived once
            self._started_wall = self._wall() - (now - conductor.metrics.started_at)
        snap = conductor_snapshot(
            conductor,
            batch_path=self.batch_path,
            started_wall=self._started_wall,
            alerts=self.alerts.active(),
            now=now,
        )
        self._note_backlog(snap, now)
        changes = self.alerts.evaluate(snap, snap["updated_at"])
        snap["alerts"] = self.alerts.active()
        for change in changes:
            conductor.journal.add_event(conductor.run_id, "alert", change.to_event(), at=change.at)
            self.reporter.alert(change)
            if self.settings.alerts.command:
                self._deliver(self.settings.alerts.command, change)
        self.last = snap
        return snap

    def _note_backlog(self, snap: dict[str, Any], now: float) -> None:
        """A batch starts with every job waiting, so a big backlog alone means nothing. The queue
        alert looks at a backlog that has grown over the last minute (jobs arriving through the
        API faster than they finish): `queue.growing` is the backlog then, else 0."""
        queue = snap.setdefault("queue", {})
        waiting = int(queue.get("pending") or 0)  # not yet dispatched (the ready queue is part of it)
        self._backlog.append((now, waiting))
        while self._backlog and self._backlog[0][0] < now - BACKLOG_WINDOW_S:
            self._backlog.popleft()
        lowest = min(n for _, n in self._backlog)
        queue["growing"] = waiting if waiting > lowest else 0

    def show(self, snapshot: dict[str, Any]) -> None:
        self.reporter.update(snapshot)

    def on_tick(self, conductor: Conductor) -> None:
        """Everything once a second: snapshot and alerts, stored in the journal, then shown."""
        snap = self.snapshot(conductor)
        conductor.journal.save_snapshot(conductor.run_id, snap)
        self.show(snap)
