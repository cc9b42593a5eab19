"""The conductor: the parent process. Feeds workers from the ready queue, records every event
in the journal before acting on it, watches workers, and stops cleanly on signals and limits."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter, deque
from dataclasses import replace
from typing import Any

from anvil_cli.config.endpoint import Endpoint
from anvil_cli.config.settings import Settings
from anvil_cli.engine.backend import Backend, WorkerLost
from anvil_cli.engine.conductor.holdings import Holdings
from anvil_cli.engine.conductor.ready import ReadyQueue
from anvil_cli.engine.conductor.sizing import AgentSizing
from anvil_cli.engine.conductor.watch import WorkerWatch
from anvil_cli.engine.control import RunControl
from anvil_cli.engine.events import (
    CallFailed,
    CallSettled,
    Drain,
    Heartbeat,
    JobAbandoned,
    JobDone,
    ReadyRow,
    RunFatal,
    RunJob,
    ToolGroup,
    WorkerEvent,
    WorkerReady,
)
from anvil_cli.engine.governor_host.client import GovernorClient
from anvil_cli.engine.governor_host.link import GovernorHost, GovernorLink
from anvil_cli.engine.journal import spend_carry
from anvil_cli.engine.journal.store import JobResult, Journal
from anvil_cli.engine.process.signals import SignalState
from anvil_cli.engine.result_cache import CachedResult, ResultCache
from anvil_cli.engine.run_end import RunEnd, phase
from anvil_cli.engine.ticker import Ticker
from anvil_cli.policy.governor.budget import exhausted_message
from anvil_cli.policy.unreachable import UNREACHABLE, Reachability
from anvil_cli.snapshot.metrics import RunMetrics
from anvil_cli.snapshot.state import EngineState

EVENT_WAIT_S = 0.02
MAX_STILLBORN_WORKERS = 5  # then stop the run rather than respawn forever
MAX_CRASHES_PER_JOB = 3  # a job whose worker died under it this often fails instead (a poison job)
SNAPSHOT_EVERY_S = 1.0
STOP_WORKERS_S = 5.0  # at the end, workers finish what they hold within this, then are killed
HISTORY_KEPT = 50  # breaker and scaling events shown live (all of them stay in the journal)
JOURNAL_ERROR = "journal_error"  # the stop reason when the journal cannot be written


class Conductor:
    """Runs one run to completion (or to a clean stop)."""

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
        control: RunControl | None = None,
        governor_host: GovernorHost | None = None,
        endpoint: Endpoint | None = None,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.run_id = run_id
        self.backend = backend
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
        self.sizing = AgentSizing(settings)
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

    # -- main loop ----------------------------------------------------------------------------

    def run(self) -> RunEnd:
        for wid in self.backend.start(workers_for(self.settings, self.sizing.limit)):
            self.held.add_worker(wid)
        try:
            while not self._should_exit():
                self._check_signals()
                self._apply_commands()
                if not self._stopping() and not self.paused:
                    self._dispatch()
                self._pump_events()
                self._reap_workers()
                self._check_governor()
                self._periodic()
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

    def _stopping(self) -> bool:
        return self.end.stopped_early

    def _should_exit(self) -> bool:
        if self.end.aborted:
            return True
        in_flight = self.held.in_flight()
        if self._stopping():
            if in_flight == 0:
                return True
            return self._drain_deadline is not None and time.monotonic() >= self._drain_deadline
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
        """Steering from the HTTP API, applied on this thread."""
        if self.control is None:
            return
        for cmd in self.control.pending_commands():
            self.journal.add_event(self.run_id, "control", {"command": cmd.kind, "value": cmd.value})
            if cmd.kind == "jobs_added":
                self.ready.rewind()
                self.metrics.total += int(cmd.value)
            elif cmd.kind == "scale":
                self.sizing.pin(int(cmd.value))  # a manual setting holds
            elif cmd.kind == "breaker":
                model, state = cmd.value
                self.gov.set_breaker(model, state)
            elif cmd.kind in ("pause", "resume"):
                self.paused = cmd.kind == "pause"
            elif cmd.kind == "drain" and not self.end.interrupted:
                self.end.interrupted = True
                self._begin_drain()

    def _begin_drain(self) -> None:
        """Stop dispatching; in-flight calls may finish within the grace period."""
        self._tell_all_drain()
        self._drain_deadline = time.monotonic() + self.settings.run.grace_period_s

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

    # -- dispatch -----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Move jobs from the ready queue to workers: journal first, then send. At most the
        in-flight window: what the agent limit allows and the rate limits can feed."""
        free = self.sizing.window() - self.held.in_flight()
        if free <= 0:
            return
        batch: list[tuple[int, ReadyRow]] = []
        for _ in range(free):
            worker = self.held.pick()
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

    def _fail_poison(self, row: ReadyRow) -> None:
        """A job whose worker died under it too often is failed rather than retried forever."""
        model = str(json.loads(row.job_json).get("model"))
        message = f"the worker process died while running this job {self._crashes[row.seq]} times"
        result = JobResult.failed_now(row.seq, model, "worker_crashed", message)
        self.journal.record_result(self.run_id, result)
        self.metrics.on_result(result, time.monotonic())

    # -- events -------------------------------------------------------------------------------

    def _pump_events(self) -> None:
        """Take every event waiting (blocking briefly for the first) and record them."""
        self._record(self.backend.poll(EVENT_WAIT_S))

    def _record(self, events: list[WorkerEvent]) -> None:
        """Apply events in one journal commit (a group commit), then feed the result cache."""
        if not events:
            return
        now = time.monotonic()
        with self.journal.transaction():
            for event in events:
                self.watch.heard(event, now)
                self._handle(event)
        self._store_in_cache()

    def _store_in_cache(self) -> None:
        """Fresh answers go into the result cache once their results are committed."""
        if self.cache is not None and self._to_cache:
            failed = self.cache.put_many(self._to_cache)
            if failed is not None and not self._cache_failed:  # optional: said once, never fatal
                self._cache_failed = True
                self.journal.add_event(self.run_id, "cache_error", {"message": failed})
                self.ticker.monitor.note(f"result cache: cannot store answers ({failed}); the run goes on")
        self._to_cache.clear()

    def _handle(self, event: WorkerEvent) -> None:
        now = time.monotonic()
        match event:
            case CallSettled(seq=seq, cost_usd=cost):  # journaled now: the budget survives a crash
                self.journal.add_cost(self.run_id, seq, cost)
                self._spent[seq] = self._spent.get(seq, 0.0) + cost
                self.reach.answered()
            case JobDone(worker=wid, result=result) if self._never_connected(result):
                self._back_to_pending(wid, result.seq, result.attempts, again=True)
            case JobDone(worker=wid, result=result):
                if self.held.release(wid, result.seq) is not None:
                    self._spent.pop(result.seq, None)
                    self.journal.record_result(self.run_id, result, cost_journaled=True)
                    self.metrics.on_result(result, now)
                    self._cache_answer(result)
            case CallFailed(info=info):
                self.metrics.on_attempt(info, now)
                self.reach.attempt(info, now)
            case WorkerReady(worker=wid, pid=pid, api_host=api):
                if self.held.mark_ready(wid):
                    self._stillborn = 0
                    started = {"worker": wid, "pid": pid, "api": api}
                    self.journal.add_event(self.run_id, "worker_started", started)
            case JobAbandoned(worker=wid, seq=seq, attempts=attempts):
                self._back_to_pending(wid, seq, attempts)
            case RunFatal(worker=wid, seq=seq, reason=reason, message=message, attempts=attempts):
                self._back_to_pending(wid, seq, attempts)
                self.stop_run(reason, message)
            case Heartbeat() | ToolGroup():
                pass  # `self.watch` took note of them

    def _cache_answer(self, result: JobResult) -> None:
        if result.succeeded and result.cache_key is not None:
            r = result
            entry = CachedResult(r.model, r.output, r.stop_reason, r.usage, r.cost_usd)
            self._to_cache.append((result.cache_key, entry))

    def _back_to_pending(self, wid: int, seq: int, attempts: int, again: bool = False) -> None:
        """A job given up unfinished runs again on resume (`again`: in this run too); what it
        already cost stays counted (journaled call by call)."""
        row = self.held.release(wid, seq)
        if row is None:
            return
        self.journal.return_to_pending(self.run_id, [seq], attempts=attempts)
        self.metrics.cost_usd += self._spent.pop(seq, 0.0)
        if again and not self._stopping():
            self.ready.push_back(row._replace(dispatches=row.dispatches + 1))

    def _never_connected(self, result: JobResult) -> bool:
        """A job whose calls all failed to connect while the API was never reached is not failed:
        the run stops as unreachable (policy/unreachable.py) and a resume runs it."""
        last = result.attempt_log[-1] if result.attempt_log else {}
        return not result.succeeded and bool(last.get("unreachable")) and self.reach.never_reached()

    def _check_reachable(self, now: float) -> None:
        message = self.reach.verdict(now)
        if message is not None:
            self.stop_run(UNREACHABLE, message)

    def _reap_workers(self) -> None:
        self._kill_silent_workers()
        for lost in self.backend.lost():
            self._record(lost.last_events)  # what it sent before dying counts
            self._on_lost(lost)

    def _kill_silent_workers(self) -> None:
        """A worker that stopped answering (SIGSTOP, a wedged loop) is killed; `lost()` then
        re-queues its jobs and starts a replacement, as for any dead worker."""
        for wid, silent_s in self.watch.silent(time.monotonic()):
            silent = {"worker": wid, "silent_s": round(silent_s, 1)}
            self.journal.add_event(self.run_id, "worker_silent", silent)
            self.backend.kill_worker(wid)

    def _on_lost(self, lost: WorkerLost) -> None:
        self.watch.forget(lost.worker)  # its tool calls die with it
        was_ready = self.held.is_ready(lost.worker)
        self.gov.release_owner(lost.worker)
        rows = self.held.drop_worker(lost.worker)
        seqs = [row.seq for row in rows]
        self._crashes.update(seqs)
        for seq in seqs:
            self.metrics.cost_usd += self._spent.pop(seq, 0.0)
        with self.journal.transaction():
            self.journal.return_to_pending(self.run_id, seqs, attempts=1)
            died = {"worker": lost.worker, "exitcode": lost.exitcode, "jobs": len(seqs)}
            self.journal.add_event(self.run_id, "worker_died", died)
        wid = self.backend.spawn()
        self.held.add_worker(wid)
        if self._draining:
            self.backend.send(wid, Drain())
        self._note_stillborn(was_ready, lost.exitcode)
        if not self._stopping():
            for row in rows:
                self.ready.push_back(row._replace(dispatches=row.dispatches + 1))

    def _note_stillborn(self, was_ready: bool, exitcode: int | None) -> None:
        if not was_ready:
            self._stillborn += 1
        if self._stillborn > MAX_STILLBORN_WORKERS:
            self.stop_run(
                "workers_failing",
                f"worker processes keep dying before they start (last exit code {exitcode}); "
                "see the errors above",
            )

    def _periodic(self) -> None:
        now = time.monotonic()
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

    def governor_snapshot(self) -> dict[str, Any]:
        """The governor's state as of this tick (one round trip a tick, shared by every reader)."""
        return self.gov.state

    def _check_governor(self) -> None:
        """A lost governor is started again at once; the workers' calls wait for it, none fails
        (engine/worker/broker.py). Its budget: what the journal says the run has spent."""
        if not self.gov.lost():
            return
        try:
            client, info = self.gov.restart(self.journal.totals(self.run_id)["cost_usd"])
        except Exception as exc:  # cannot start processes any more: stop, resumably
            self.stop_run(
                "governor_lost", f"the rate-limit governor was lost and could not be restarted: {exc}"
            )
            self.end.aborted = True
            return
        self.backend.set_governor(client)
        self.journal.add_event(self.run_id, "governor_restarted", info)
        self.ticker.monitor.note(
            "the rate-limit governor was lost: started again (limits re-learned, breakers half-open)"
        )

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

    def _note_history(self, kind: str, data: dict[str, Any]) -> None:
        self._history.append({"at": round(time.time(), 3), "kind": kind, **data})

    def _record_governor_events(self) -> None:
        events = self.gov.drain_events()
        with self.journal.transaction():
            for ev in events:
                self.journal.add_event(self.run_id, ev.kind, dict(ev.data))
                if ev.kind == "breaker":
                    self._note_history("breaker", dict(ev.data))
                if ev.kind == "budget_exhausted":
                    data = ev.data  # the whole run's spend and the cap in force
                    worst = data.get("worst_usd", 0.0)
                    self.stop_run("budget", exhausted_message(data["spent_usd"], worst, data.get("max_usd")))

    # -- shutdown -----------------------------------------------------------------------------

    def _carry_unjournaled(self) -> None:
        """The journal failed: what the governor settled or reserved (workers are gone now, so
        their grants are final) beyond what the journal holds is kept for the resume to count
        (engine/journal/spend_carry.py), and said in the stop message."""
        self.gov.refresh()
        budget = self.gov.state.get("budget") or {}
        try:
            journaled = self.journal.totals(self.run_id)["cost_usd"]
        except sqlite3.Error:
            journaled = self.metrics.cost_before_usd
        settled_or_held = float(budget.get("spent_usd", 0.0)) + float(budget.get("reserved_usd", 0.0))
        unjournaled = settled_or_held - journaled
        self.end.unjournaled_usd = max(0.0, unjournaled)
        if self.end.unjournaled_usd <= 0:
            return
        kept = spend_carry.record(self.settings.state_dir, self.run_id, self.end.unjournaled_usd)
        where = "kept for the resume to count" if kept else "NOT kept (no room for it): mind the budget"
        self.end.stop_message = (
            f"{self.end.stop_message}; ${self.end.unjournaled_usd:.4f} of calls in flight or settled could"
            f" not be journaled, {where}"
        )

    def _shutdown(self) -> None:
        """Workers stop; whatever they still hold goes back to pending for the next resume."""
        if self.end.stop_reason == JOURNAL_ERROR:  # record nothing more: a resume re-queues them
            self.backend.kill()
            self.watch.forget_all()
            self.ended = True
            self._carry_unjournaled()
            return
        self._tell_all_drain()
        last = self.backend.kill() if self.end.aborted else self.backend.stop(timeout_s=STOP_WORKERS_S)
        self._record(last)  # results that arrived before the end still count
        self.watch.forget_all()
        left = [row.seq for row in self.held.drop_all()]
        for seq in left:
            self.metrics.cost_usd += self._spent.pop(seq, 0.0)
        if left:
            with self.journal.transaction():
                self.journal.return_to_pending(self.run_id, left)
        self._record_governor_events()
        self.gov.refresh()
        self.ended = True
        self._tick(time.monotonic())  # the last frame and stored figures show the end, not 1 s before
        if self.cache is not None:
            self.cache.close()


def workers_for(settings: Settings, agent_limit: int) -> int:
    """How many worker processes: a few, many agents each (each may hold every agent slot, so
    the run goes on if others die)."""
    return max(1, min(settings.scaling.worker_count(), agent_limit))
