"""What the conductor holds for one run, and the few moves every part of it makes: stop the run,
drain the workers, note a live event. The parts (events, worker losses, the governor, the
shutdown) build on this; `engine/conductor/core.py` puts them together as the `Conductor`."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from anvil_cli.config.endpoint import Endpoint
from anvil_cli.config.settings import Settings
from anvil_cli.engine.backend import Backend
from anvil_cli.engine.commands import CommandSource
from anvil_cli.engine.conductor.holdings import Holdings
from anvil_cli.engine.conductor.ready import ReadyQueue
from anvil_cli.engine.conductor.sizing import AgentSizing
from anvil_cli.engine.conductor.watch import WorkerWatch
from anvil_cli.engine.events import Drain
from anvil_cli.engine.governor_host.client import GovernorClient
from anvil_cli.engine.governor_host.link import GovernorHost, GovernorLink
from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.process.signals import SignalState
from anvil_cli.engine.result_cache import CachedResult, ResultCache
from anvil_cli.engine.run_end import RunEnd
from anvil_cli.engine.ticker import Ticker
from anvil_cli.policy.unreachable import Reachability
from anvil_cli.snapshot.metrics import RunMetrics

HISTORY_KEPT = 50  # breaker and scaling events shown live (all of them stay in the journal)
JOURNAL_ERROR = "journal_error"  # the stop reason when the journal cannot be written

Clock = Callable[[], float]  # seconds, monotonic: `time.monotonic`, or a test's clock


class ConductorState:
    """The run's journal, backend, governor, queue and books, as the conductor's parts share them.

    `clock` is read for every time the conductor measures (the drain deadline, the once-a-second
    tick, silent workers, the figures): `time.monotonic` in a run, a fake clock in a test."""

    def __init__(
        self,
        settings: Settings,
        journal: Journal,
        run_id: str,
        backend: Backend,
        governor: GovernorClient,
        signals: SignalState,
        metrics: RunMetrics,
        ticker: Ticker,
        control: CommandSource | None = None,
        governor_host: GovernorHost | None = None,
        endpoint: Endpoint | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.run_id = run_id
        self.backend = backend
        self.clock = clock
        self.held = Holdings()
        self._spent: dict[int, float] = {}  # seq -> cost journaled during its current dispatch
        self.gov = GovernorLink(governor, governor_host)
        self.signals = signals
        self.metrics = metrics
        self.ticker = ticker
        self.control = control
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY_KEPT)  # breaker and scaling
        # the one writer of the result cache: workers only read it
        self.cache = ResultCache(settings.state_dir) if settings.cache.enabled else None
        self._to_cache: list[tuple[str, CachedResult]] = []
        self.sizing = AgentSizing(settings, clock())
        self.ready = ReadyQueue(
            lambda after, limit: journal.pending_after(run_id, after, limit), settings.scaling.queue_size
        )
        self.end = RunEnd()
        self._drain_deadline: float | None = None
        self._last_snapshot = 0.0
        self._stillborn = 0  # workers in a row that died before becoming ready
        self._crashes: Counter[int] = Counter()  # seq -> workers that died holding it
        self.ended = False  # set for the last tick, after the workers have stopped
        self.paused = False
        self._draining = False
        self.watch = WorkerWatch(settings.run.worker_silence_s)
        self._cache_failed = False
        where = endpoint.describe() if endpoint is not None else "the configured base URL"
        self.reach = Reachability(settings.run.unreachable_after_s, where)

    def _stopping(self) -> bool:
        return self.end.stopped_early

    def _begin_drain(self) -> None:
        """Stop dispatching; in-flight calls may finish within the grace period."""
        self._tell_all_drain()
        self._drain_deadline = self.clock() + self.settings.run.grace_period_s

    def stop_run(self, reason: str, message: str) -> None:
        if self.end.stop_reason is None:
            self.end.stop_reason = reason
            self.end.stop_message = message
            self.journal.add_event(self.run_id, "run_stopping", {"reason": reason, "message": message})
            self._begin_drain()

    def _tell_all_drain(self) -> None:
        """Tell every worker the run is stopping: no retries, no waiting for the governor."""
        self._draining = True
        for info in self.backend.workers():
            self.backend.send(info.id, Drain())

    def _note_history(self, kind: str, data: dict[str, Any]) -> None:
        self._history.append({"at": round(time.time(), 3), "kind": kind, **data})

    def _tick(self, now: float) -> None:
        """Once a second: the live figures (the conductor's own, engine/conductor/core.py)."""
        raise NotImplementedError
