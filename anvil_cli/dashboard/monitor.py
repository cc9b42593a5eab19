"""The conductor's once-a-second tick: snapshot, alerts, journal, reporter, in that order.

`anvil run` passes a `RunMonitor` to `execute_run(monitor=...)`; each tick a run driver (either
mode) hands it an `EngineState` through `engine.ticker.Ticker`, which stores the snapshot and its
alert changes in the journal, serves it to the API, then calls `show(snapshot)`. It is the
small driver around pure pieces: `build_snapshot` (figures), `AlertEngine` (decisions),
`deliver` (the user's alert command) and a `Reporter` (the screen).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anvil_cli.alert_command import deliver
from anvil_cli.alerts import AlertChange, AlertEngine
from anvil_cli.config import Settings
from anvil_cli.dashboard.reporter import Reporter
from anvil_cli.metrics import RunMetrics
from anvil_cli.snapshot import build_snapshot
from anvil_cli.state import EngineState

BACKLOG_WINDOW_S = 60.0


def engine_snapshot(
    state: EngineState,
    metrics: RunMetrics,
    *,
    batch_path: str,
    started_wall: float,
    alerts: list[dict[str, Any]],
    now: float,
) -> dict[str, Any]:
    """`build_snapshot` from the value a run driver hands over (`now`: monotonic)."""
    return build_snapshot(
        run_id=state.run_id,
        batch_path=batch_path,
        state=state.phase,
        started_wall=started_wall,
        metrics=metrics,
        now=now,
        in_flight=state.in_flight,
        agent_limit=state.agent_limit,
        agent_min=state.agent_min,
        agent_max=state.agent_max,
        queue_depth=state.queue_depth,
        pending=max(0, metrics.total - metrics.done - metrics.already_done - state.in_flight),
        workers=[{"id": w.id, "pid": w.pid, "alive": w.alive, "jobs": w.jobs} for w in state.workers],
        worker_restarts=state.worker_restarts,
        governor=dict(state.governor),
        alerts=alerts,
        paused=state.paused,
    )


@dataclass(frozen=True)
class Observed:
    """One tick's snapshot and the alerts it raised or cleared (for the driver to journal)."""

    snapshot: dict[str, Any]
    changes: list[AlertChange]


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

    def observe(self, state: EngineState, metrics: RunMetrics, now: float | None = None) -> Observed:
        """The snapshot with its alerts evaluated; alert changes are printed by the reporter and
        handed to `alerts.command`, and returned for the driver to record. Shows nothing."""
        now = self._mono() if now is None else now
        if self._started_wall is None:  # wall time of the metrics' start, derived once
            self._started_wall = self._wall() - (now - metrics.started_at)
        snap = engine_snapshot(
            state,
            metrics,
            batch_path=self.batch_path,
            started_wall=self._started_wall,
            alerts=self.alerts.active(),
            now=now,
        )
        self._note_backlog(snap, now)
        changes = self.alerts.evaluate(snap, snap["updated_at"])
        snap["alerts"] = self.alerts.active()
        for change in changes:
            self.reporter.alert(change)
            if self.settings.alerts.command:
                self._deliver(self.settings.alerts.command, change)
        self.last = snap
        return Observed(snap, changes)

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
