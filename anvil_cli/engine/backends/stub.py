"""The stub backend: workers that live in this process and do what their user tells them.

It implements `engine.backend.Backend` with no process, pipe, actor or API behind it, so the
conductor can be built and driven in a test exactly as in a run. What its workers do is
scripted, in the protocol's own typed events (`engine.events`):

* a worker is ready as soon as it starts (`WorkerReady`), unless `ready_on_start=False`: then
  `ready(worker)` says it when the test wants;
* a job dispatched to a worker (`RunJob`) is handed to `on_job(worker, row)`, whose events the
  worker sends: `answer()` answers every job at once (`answered`: a paid call, then `JobDone`);
  without `on_job` the worker holds the job until the test sends its events, e.g.
  `backend.emit(*answered(worker, row))`, or `backend.finish(seq)`;
* `lose(worker)` (or the conductor's `kill_worker`) ends a worker at once: the events it sent
  and nobody polled yet come back with it from `lost()`, once; the jobs it held are never
  reported (the conductor hands them back to pending);
* `stop()` and `kill()` end every worker; a job not reported by then stays unreported, as with
  a worker killed at the stop's deadline.

Events are delivered in the order they were sent, all at once by the next `poll()`, which never
waits. The backend keeps what a test may check: every command each worker got, the dispatch
order (`dispatched`), which worker holds which job (`holder`)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from anvil_cli.engine.attempts import Attempt
from anvil_cli.engine.backend import Spawning, WorkerLost
from anvil_cli.engine.events import (
    CallFailed,
    CallSettled,
    Drain,
    JobAbandoned,
    JobDone,
    NewGovernor,
    ReadyRow,
    RunFatal,
    RunJob,
    Stop,
    WorkerCommand,
    WorkerEvent,
    WorkerReady,
)
from anvil_cli.engine.governor_host.client import GovernorClient
from anvil_cli.engine.outcomes import JobError, JobResult, Usage
from anvil_cli.snapshot.state import WorkerInfo

STUB_HOST = "stub.invalid:443"  # the API host stub workers say they call (they call none)
LOST_EXITCODE = -9  # what a lost stub worker exits with, as if SIGKILLed

# what a worker does with a job dispatched to it: the events it sends, in order
JobScript = Callable[[int, ReadyRow], list[WorkerEvent]]


@dataclass
class StubWorker:
    """One stub worker: what it was told, and the jobs it holds (sent to it, not yet ended)."""

    id: int
    alive: bool = True
    draining: bool = False
    stopped: bool = False
    governor: GovernorClient | None = None
    commands: list[WorkerCommand] = field(default_factory=list)
    held: dict[int, ReadyRow] = field(default_factory=dict)  # seq -> row


class StubBackend(Spawning):
    """In-process workers scripted by their user; implements `engine.backend.Backend`."""

    def __init__(
        self,
        on_job: JobScript | None = None,
        *,
        ready_on_start: bool = True,
        governor: GovernorClient | None = None,
    ) -> None:
        self.on_job = on_job
        self.ready_on_start = ready_on_start
        self.governor = governor
        self.all: dict[int, StubWorker] = {}  # every worker ever started, lost ones too
        self.dispatched: list[tuple[int, int]] = []  # (worker, seq) of every RunJob, in order
        self._queue: list[WorkerEvent] = []  # sent, not polled yet
        self._lost: list[WorkerLost] = []  # not reported yet

    # -- the Backend protocol -----------------------------------------------------------------

    def _spawn(self) -> int:
        wid = len(self.all)
        self.all[wid] = StubWorker(wid, governor=self.governor)
        if self.ready_on_start:
            self.ready(wid)
        return wid

    def send(self, worker: int, command: WorkerCommand) -> bool:
        w = self.all.get(worker)
        if w is None or not w.alive:
            return False
        w.commands.append(command)
        match command:
            case RunJob(row=row):
                w.held[row.seq] = row
                self.dispatched.append((worker, row.seq))
                if self.on_job is not None:
                    self.emit(*self.on_job(worker, row))
            case Drain():
                w.draining = True
            case Stop():
                w.stopped = True
            case NewGovernor(governor=governor):
                w.governor = governor
        return True

    def poll(self, timeout_s: float) -> list[WorkerEvent]:
        """Every event sent since the last poll; never waits (`timeout_s` is not needed)."""
        events, self._queue = self._queue, []
        return events

    def lost(self) -> list[WorkerLost]:
        gone, self._lost = self._lost, []
        return gone

    def stop(self, timeout_s: float) -> list[WorkerEvent]:
        """Every worker is told to stop and ends; what they sent before comes back."""
        for w in self.live():
            self.send(w.id, Stop())
        return self.kill()

    def kill(self) -> list[WorkerEvent]:
        for w in self.live():
            w.alive = False
        return self.poll(0.0)

    def kill_worker(self, worker: int) -> None:
        self.lose(worker)

    def workers(self) -> list[WorkerInfo]:
        return [WorkerInfo(w.id, os.getpid(), True, 0) for w in self.live()]

    def set_governor(self, governor: GovernorClient) -> None:
        self.governor = governor
        for w in self.live():
            self.send(w.id, NewGovernor(governor))

    # -- scripting the workers ----------------------------------------------------------------

    def ready(self, worker: int) -> None:
        """The worker says it can take jobs."""
        self.emit(WorkerReady(worker, os.getpid(), STUB_HOST))

    def emit(self, *events: WorkerEvent) -> None:
        """Workers send these (each from its `worker`; a lost worker sends nothing). An event
        that ends a job (`JobDone`, `JobAbandoned`, `RunFatal`) ends the worker's hold on it."""
        for event in events:
            w = self.all.get(event.worker)
            if w is None or not w.alive:
                continue
            self._queue.append(event)
            seq = _job_ended(event)
            if seq is not None:
                w.held.pop(seq, None)

    def finish(self, seq: int, cost_usd: float = 0.001) -> None:
        """The worker holding job `seq` answers it (`answered`)."""
        worker = self.holder(seq)
        if worker is None:
            raise KeyError(f"no stub worker holds job {seq}")
        self.emit(*answered(worker, self.all[worker].held[seq], cost_usd))

    def lose(self, worker: int, exitcode: int | None = LOST_EXITCODE) -> None:
        """The worker dies now: `lost()` reports it once, with the events it sent unpolled."""
        w = self.all[worker]
        if not w.alive:
            return
        w.alive = False
        last = [e for e in self._queue if e.worker == worker]
        self._queue = [e for e in self._queue if e.worker != worker]
        self._lost.append(WorkerLost(worker, exitcode, last))

    # -- what a test may check ----------------------------------------------------------------

    def live(self) -> list[StubWorker]:
        return [w for w in self.all.values() if w.alive]

    def holder(self, seq: int) -> int | None:
        """The live worker holding job `seq`, if any."""
        return next((w.id for w in self.live() if seq in w.held), None)


def _job_ended(event: WorkerEvent) -> int | None:
    match event:
        case JobDone(result=result):
            return result.seq
        case JobAbandoned(seq=seq) | RunFatal(seq=seq):
            return seq
    return None


# -- what a worker sends for a job --------------------------------------------------------------


def _model(row: ReadyRow) -> str:
    return str(json.loads(row.job_json)["model"])


def answered(worker: int, row: ReadyRow, cost_usd: float = 0.001, output: str = "ok") -> list[WorkerEvent]:
    """One call, paid for (`CallSettled`), then the job done with its answer (`JobDone`)."""
    model = _model(row)
    call = Attempt(1, model, 200, latency_s=0.0)
    result = JobResult(
        seq=row.seq,
        succeeded=True,
        model=model,
        attempts=1,
        output=output,
        stop_reason="end_turn",
        usage=Usage(input_tokens=10, output_tokens=5),
        cost_usd=cost_usd,
        attempt_log=(call,),
        latency_s=0.0,
    )
    return [CallSettled(worker, row.seq, cost_usd), JobDone(worker, result)]


def failed(
    worker: int, row: ReadyRow, status_code: int = 400, error_type: str = "invalid_request_error"
) -> list[WorkerEvent]:
    """One call refused (`CallFailed`), then the job failed for good (`JobDone`)."""
    model = _model(row)
    message = f"{error_type} ({status_code}) from the stub"
    call = Attempt(1, model, status_code, latency_s=0.0, error_type=error_type, message=message)
    error = JobError(error_type, message, status_code)
    result = JobResult(row.seq, False, model, 1, error=error, attempt_log=(call,), latency_s=0.0)
    return [CallFailed(worker, row.seq, call), JobDone(worker, result)]


def abandoned(worker: int, row: ReadyRow, attempts: int = 0) -> list[WorkerEvent]:
    """The job given up as the run stops (`JobAbandoned`): back to pending."""
    return [JobAbandoned(worker, row.seq, attempts)]


def answer(cost_usd: float = 0.001) -> JobScript:
    """A script: every job dispatched is answered at once (`answered`)."""
    return lambda worker, row: answered(worker, row, cost_usd)
