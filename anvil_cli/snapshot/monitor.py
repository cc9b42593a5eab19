"""The views' side of a tick: snapshot, alerts, then the screen.

`anvil run` passes a `RunMonitor` to `execute_run(monitor=...)`; each tick a run driver (either
mode) hands it an `EngineState` through `engine.ticker.Ticker`, which stores the snapshot and its
alert changes in the journal, serves it to the API, then calls `show(snapshot)`. It is the
small driver around pure pieces: `build_snapshot` (figures), `AlertEngine` (decisions),
`deliver` (the user's alert command), `WebhookSender` (`alerts.webhooks`) and a `Screen` (what
shows them: a reporter of `views.dashboard`, which this module does not import).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from anvil_cli.alerts.delivery import deliver
from anvil_cli.alerts.rules import ENDED_STATES, AlertChange, AlertEngine
from anvil_cli.alerts.webhook import WebhookSender, webhook_sender
from anvil_cli.config.settings import Settings
from anvil_cli.config.vault import secret
from anvil_cli.snapshot.build import Snapshot, build_snapshot, pending_of
from anvil_cli.snapshot.metrics import RunMetrics
from anvil_cli.snapshot.otlp_metrics import exporter as otlp_exporter
from anvil_cli.snapshot.state import EngineState

BACKLOG_WINDOW_S = 60.0


class Backlog:
    """A batch starts with every job waiting, so a big backlog alone means nothing. The queue
    alert looks at a backlog that has grown over the last minute (jobs arriving through the API
    faster than they finish): `note` returns the backlog then, else 0."""

    def __init__(self, window_s: float = BACKLOG_WINDOW_S) -> None:
        self.window_s = window_s
        self._seen: deque[tuple[float, int]] = deque()  # (now, jobs waiting)

    def note(self, now: float, waiting: int) -> int:
        self._seen.append((now, waiting))
        while self._seen and self._seen[0][0] < now - self.window_s:
            self._seen.popleft()
        lowest = min(n for _, n in self._seen)
        return waiting if waiting > lowest else 0


class Screen(Protocol):
    """What shows a run while it runs (the reporters of `views.dashboard`)."""

    def update(self, snapshot: Snapshot) -> None: ...
    def alert(self, change: AlertChange) -> None: ...
    def note(self, line: str) -> None: ...


class NoScreen:
    """Nothing shows the run (a run driven from code, or one whose views read the journal):
    the snapshot is still built, stored and served, and the alerts still judged and delivered."""

    def update(self, snapshot: Snapshot) -> None:
        pass

    def alert(self, change: AlertChange) -> None:
        pass

    def note(self, line: str) -> None:
        pass


@dataclass(frozen=True)
class Observed:
    """One tick's snapshot and the alerts it raised or cleared (for the driver to journal)."""

    snapshot: Snapshot
    changes: list[AlertChange]


class RunMonitor:
    """Builds the snapshot each tick, raises/clears alerts, and shows them."""

    def __init__(
        self,
        settings: Settings,
        reporter: Screen,
        *,
        batch_path: str,
        wall_clock: Callable[[], float] = time.time,
        mono_clock: Callable[[], float] = time.monotonic,
        deliver_alert: Callable[[str, AlertChange], Any] = deliver,
        webhooks: WebhookSender | None = None,  # default: those of `alerts.webhooks`, if any
    ) -> None:
        self.settings = settings
        self.reporter = reporter
        self.batch_path = batch_path
        self.alerts = AlertEngine(settings.alerts)
        self._wall = wall_clock
        self._mono = mono_clock
        self._deliver = deliver_alert
        self.webhooks = webhooks if webhooks is not None else webhook_sender(settings.alerts, secret)
        self._flushed = False
        self._started_wall: float | None = None
        self._backlog = Backlog()
        self.otlp = otlp_exporter()  # the run's metrics over OTLP when OTEL_* ask (None: off)

    def observe(self, state: EngineState, metrics: RunMetrics, now: float | None = None) -> Observed:
        """The snapshot with its alerts evaluated; alert changes are printed by the reporter and
        handed to `alerts.command` and `alerts.webhooks`, and returned for the driver to record.
        Shows nothing."""
        now = self._mono() if now is None else now
        if self._started_wall is None:  # wall time of the metrics' start, derived once
            self._started_wall = self._wall() - (now - metrics.started_at)
        snap = build_snapshot(
            state,
            metrics,
            batch_path=self.batch_path,
            started_wall=self._started_wall,
            now=now,
            alerts=self.alerts.active(),
            growing=self._backlog.note(now, pending_of(state, metrics)),
        )
        checks = metrics.checks.summary()
        if checks is not None:  # only once a job was checked: without checks the JSON is as it was
            snap["checks"] = {**checks.to_json(), "by": {key: {} for key in self.settings.checks.by}}
        changes = self.alerts.evaluate(snap, snap["updated_at"])
        snap["alerts"] = self.alerts.active()
        for change in changes:
            self.reporter.alert(change)
            if self.settings.alerts.command:
                self._deliver(self.settings.alerts.command, change)
            if self.webhooks is not None:
                self.webhooks.send(change, snap["run_id"])
        if self.webhooks is not None and snap["state"] in ENDED_STATES and not self._flushed:
            self._flushed = True  # the run's last tick: a bounded wait, once, for what is queued
            self.webhooks.flush()
        if self.otlp is not None:  # fed each tick; its last figures sent on the run's last
            self.otlp.update(snap)
            if snap["state"] in ENDED_STATES:
                self.otlp.ended()
                self.otlp = None
        return Observed(snap, changes)

    def note(self, line: str) -> None:
        self.reporter.note(line)

    def show(self, snapshot: Snapshot) -> None:
        """Show a snapshot `observe` built (handed back by `engine.ticker`)."""
        self.reporter.update(snapshot)
