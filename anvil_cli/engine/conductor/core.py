"""The conductor: the parent process. Feeds workers from the ready queue, records every event
in the journal before acting on it, watches workers, and stops cleanly on signals and limits.

Its parts, one concept each: what it holds (`state`), its workers' events (`recording`), lost
workers (`losses`), the governor (`governor_watch`), the end of the run (`shutdown`). This
module is the loop that turns them: `Conductor.run()`, or `start()`, `step()`... `finish()`
for a test that drives it one turn at a time."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import replace

from anvil_cli.config.settings import Settings
from anvil_cli.engine import garbage
from anvil_cli.engine.conductor.losses import MAX_CRASHES_PER_JOB, WorkerLosses
from anvil_cli.engine.conductor.shutdown import Shutdown
from anvil_cli.engine.conductor.state import JOURNAL_ERROR
from anvil_cli.engine.control import SteeringHooks, apply_commands
from anvil_cli.engine.events import ReadyRow, RunJob
from anvil_cli.engine.run_end import RunEnd, phase
from anvil_cli.policy.governor.view import GovernorView
from anvil_cli.policy.workers import workers_needed
from anvil_cli.snapshot.state import EngineState

__all__ = ["JOURNAL_ERROR", "Conductor", "workers_for"]

SNAPSHOT_EVERY_S = 1.0


class Conductor(Shutdown, WorkerLosses):
    """Runs one run to completion (or to a clean stop). Built as `ConductorState` says
    (engine/conductor/state.py): settings, journal, run id, backend, governor, signals,
    metrics, ticker, and optionally the control, the governor's host, the endpoint, a clock."""

    # -- main loop ----------------------------------------------------------------------------

    def run(self) -> RunEnd:
        before = garbage.for_the_run()  # a loop of many small objects: collect less often
        try:
            self.start()
            return self.finish()
        finally:
            garbage.restore(before)

    def start(self) -> None:
        """Start the workers."""
        models = self.journal.models(self.run_id)
        for wid in self.backend.start(workers_for(self.settings, self.sizing.limit, models)):
            self.held.add_worker(wid)

    def step(self) -> None:
        """One turn of the loop: signals, steering, dispatch, events, workers, governor, tick."""
        self._check_signals()
        self._apply_commands()
        if not self._stopping() and not self.paused:
            self._dispatch()
        self._pump_events()
        self._reap_workers()
        self._check_governor()
        self._periodic()

    def finish(self) -> RunEnd:
        """Turn the loop until the run is over, then stop the workers; how it ended."""
        try:
            while not self._should_exit():
                self.step()
        except sqlite3.Error as exc:  # nothing more can be recorded: stop at once, resumably
            self.end.aborted = True
            self.end.stop_reason = JOURNAL_ERROR
            self.end.stop_message = (
                f"the journal cannot be written ({exc}); everything committed before is kept: fix the"
                " cause (disk space, permissions) and run the same command again"
            )
        finally:
            self._shutdown()
        return self.end

    def over(self) -> bool:
        """Nothing more to do (all done, or stopped and drained, or past the drain's deadline)."""
        return self._should_exit()

    def _should_exit(self) -> bool:
        if self.end.aborted:
            return True
        in_flight = self.held.in_flight()
        if self._stopping():
            if in_flight == 0:
                return True
            return self._drain_deadline is not None and self.clock() >= self._drain_deadline
        if self.paused:
            return False
        return in_flight == 0 and len(self.ready) == 0 and self.ready.exhausted

    def _check_signals(self) -> None:
        count = self.signals.count
        if count >= 2 and not self.end.aborted:
            self.end.aborted = True
            self.end.interrupted = True
        elif count >= 1 and not self.end.interrupted:
            self.end.interrupted = True
            self._begin_drain()

    def _apply_commands(self) -> None:
        """Steering from the HTTP API, applied on this thread (journaled first: `engine.control`)."""
        commands = self.control.pending_commands() if self.control is not None else []
        if not commands:
            return

        def jobs_added(count: int) -> None:
            self.ready.rewind()  # they are in the journal: the ready queue reads it again
            self.metrics.total += count

        def set_paused(paused: bool) -> None:
            self.paused = paused

        def drain() -> None:
            if not self.end.interrupted:
                self.end.interrupted = True
                self._begin_drain()

        # sizing.pin: a manual setting holds
        hooks = SteeringHooks(jobs_added, self.sizing.pin, self.gov.set_breaker, set_paused, drain)
        apply_commands(commands, self.journal, self.run_id, hooks)

    # -- dispatch -----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Move jobs from the ready queue to workers: journal first, then send. At most the
        in-flight window: what the agent limit allows and the rate limits can feed."""
        window = self.sizing.window()
        free = window - self.held.in_flight()
        if free <= 0:
            return
        batch: list[tuple[int, ReadyRow]] = []
        for _ in range(free):
            worker = self.held.pick(window)
            if worker is None:
                break
            row = self.ready.pop()
            if row is None:
                break
            if self.held.holds(row.seq):  # never run one job twice at once (the journal says: running)
                continue
            if self._crashes[row.seq] >= MAX_CRASHES_PER_JOB:
                self._fail_poison(row)
                continue
            self.held.hold(worker, row)  # reserve its slot so pick() balances the batch
            batch.append((worker, row))
        if not batch:
            return
        with self.journal.transaction():
            self.journal.mark_dispatched(self.run_id, [row.seq for _, row in batch], time.time())
        for worker, row in batch:
            self.backend.send(worker, RunJob(row))  # a lost worker: lost() hands its jobs back

    # -- once a second ------------------------------------------------------------------------

    def _periodic(self) -> None:
        now = self.clock()
        if now - self._last_snapshot < SNAPSHOT_EVERY_S:
            return
        self._last_snapshot = now
        self._check_reachable(now)
        self._record_governor_events()
        self.gov.refresh()
        self._autoscale(now)
        self._tick(now)

    def _autoscale(self, now: float) -> None:
        """The agent limit and the in-flight window for the coming second (engine/conductor/sizing.py)."""
        if self._stopping():
            return
        waiting = len(self.ready) if len(self.ready) or self.ready.exhausted else 1
        busy = self.held.in_flight()
        change = self.sizing.tick(self.governor_snapshot(), busy, waiting, self.metrics.call_load(now), now)
        if change is not None:
            self.journal.add_event(self.run_id, "scaled", change)
            self._note_history("scaled", change)

    def _tick(self, now: float) -> None:
        """Once a second: the live figures, stored for `anvil status`, served to the API, shown."""
        self.ticker.tick(self.engine_state(), self.metrics, now)

    def governor_snapshot(self) -> GovernorView:
        """The governor's state as of this tick (one round trip a tick, shared by every reader)."""
        return self.gov.state

    def engine_state(self) -> EngineState:
        """What the views may show of this driver, as one value."""
        scaling = self.settings.scaling
        return EngineState(
            run_id=self.run_id,
            mode="messages",
            phase=phase(ended=self.ended, stopping=self._stopping(), paused=self.paused),
            paused=self.paused,
            in_flight=self.held.in_flight(),
            agent_limit=self.sizing.limit,
            agent_min=min(scaling.min_agents, scaling.agent_limit()),
            agent_max=scaling.agent_limit(),
            queue_depth=len(self.ready),
            workers=tuple(replace(w, jobs=self.held.jobs_of(w.id)) for w in self.backend.workers()),
            worker_restarts=self.backend.restarts,
            governor=self.governor_snapshot(),
            history=tuple(self._history),
            feedable=self.sizing.feedable,
        )


def workers_for(settings: Settings, agent_limit: int, models: Iterable[str] = ()) -> int:
    """How many worker processes: a few, many agents each (each may hold every agent slot, so
    the run goes on if others die). On this machine, as many as the configured limits can keep
    busy (`policy/workers.py`); on Ray, one per CPU unless set (actors spread over nodes)."""
    if settings.run.backend == "ray":
        wanted = settings.scaling.worker_count()
    else:
        wanted = workers_needed(settings, models, os.cpu_count() or 1)
    return max(1, min(wanted, agent_limit))
