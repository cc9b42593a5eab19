"""The once-a-second tick shared by both run drivers (messages and Message Batches): hand the
views the driver's `EngineState`, journal the snapshot, its sample for the charts
(`anvil_cli.snapshot.series`) and the alerts it raised or cleared, then show it. The same path in both
modes, so the dashboard, `anvil status --json`, `GET /status` (both read the journal), the web
page and `/metrics` see one value."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from anvil_cli.alerts.rules import AlertChange
from anvil_cli.engine.journal.store import Journal
from anvil_cli.snapshot.metrics import RunMetrics
from anvil_cli.snapshot.series import Sampler
from anvil_cli.snapshot.state import EngineState
from anvil_cli.snapshot.types import Snapshot


class Observation(Protocol):
    """One tick's snapshot and the alerts it raised or cleared."""

    @property
    def snapshot(self) -> Snapshot: ...

    @property
    def changes(self) -> Sequence[AlertChange]: ...


class Monitor(Protocol):
    """What a driver needs of the views (`snapshot.monitor.RunMonitor`)."""

    def observe(self, state: EngineState, metrics: RunMetrics, now: float | None = None) -> Observation: ...

    def show(self, snapshot: Snapshot) -> None: ...

    def note(self, line: str) -> None: ...  # a line of progress from the driver (silent under -q)


class Ticker:
    """Publishes one driver's ticks: journal first (where `anvil status` and the HTTP API read
    it), then the screen."""

    def __init__(self, journal: Journal, run_id: str, monitor: Monitor) -> None:
        self.journal = journal
        self.run_id = run_id
        self.monitor = monitor
        self.capped_note: str | None = None  # the last time max_agents held the run back, why
        self.sampler = Sampler()  # a resumed run's new session appends to the same run's samples

    def tick(self, state: EngineState, metrics: RunMetrics, now: float) -> Snapshot:
        seen = self.monitor.observe(state, metrics, now)
        snap = seen.snapshot
        sample = self.sampler.take(snap, metrics, now)
        with self.journal.transaction():
            for change in seen.changes:
                self.journal.add_event(self.run_id, "alert", change.to_event(), at=change.at)
            self.journal.save_snapshot(self.run_id, dict(snap))
            if sample is not None:
                self.journal.add_sample(self.run_id, sample)
        self.monitor.show(snap)
        self.capped_note = snap["agents"]["capped_note"] or self.capped_note
        return snap
