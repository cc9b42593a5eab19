"""What the conductor does with its workers' events: each recorded in the journal (one commit
for all those waiting) before it is acted on, then fresh answers go into the result cache."""

from __future__ import annotations

from anvil_cli.engine.conductor.state import ConductorState
from anvil_cli.engine.events import (
    CallFailed,
    CallSettled,
    Heartbeat,
    JobAbandoned,
    JobDone,
    RunFatal,
    ToolGroup,
    WorkerEvent,
    WorkerReady,
)
from anvil_cli.engine.journal.store import JobResult
from anvil_cli.engine.result_cache import CachedResult
from anvil_cli.policy.unreachable import UNREACHABLE

# How long a turn of the loop waits for its workers' events. Their events and deaths wake it at
# once; this only bounds how soon it notices what does not come down a worker's pipe (a signal, a
# steering command, the drain's deadline, the once-a-second tick). An idle turn costs ~0.1 ms of
# CPU, and a many-agent run is idle between its waves of answers: 20 turns a second, not 50.
EVENT_WAIT_S = 0.05


class EventRecording(ConductorState):
    """Workers' events into the journal, the books and the figures."""

    def _pump_events(self) -> None:
        """Take every event waiting (blocking briefly for the first) and record them."""
        self._record(self.backend.poll(EVENT_WAIT_S))

    def _record(self, events: list[WorkerEvent]) -> None:
        """Apply events in one journal commit (a group commit), then feed the result cache."""
        if not events:
            return
        now = self.clock()
        with self.journal.transaction():
            if not self.metrics.endpoints_loaded:  # before this session journals any
                self.metrics.load_endpoints(self.journal.spend_by_endpoint(self.run_id))
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
        now = self.clock()
        match event:
            case CallSettled(seq=seq, cost_usd=cost, endpoint=endpoint):  # journaled now: survives a crash
                self.journal.add_cost(self.run_id, seq, cost, endpoint)  # and where it was paid
                self.metrics.on_settled(endpoint, cost)
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
                self.reach.attempt(info.to_json(), now)
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
            judged = r.checks.judge_cost_usd if r.checks is not None else 0.0  # not the answer's cost
            entry = CachedResult(r.model, r.output, r.stop_reason, r.usage, r.cost_usd - judged)
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
        unreachable = bool(result.attempt_log and result.attempt_log[-1].unreachable)
        return not result.succeeded and unreachable and self.reach.never_reached()

    def _check_reachable(self, now: float) -> None:
        message = self.reach.verdict(now)
        if message is not None:
            self.stop_run(UNREACHABLE, message)
