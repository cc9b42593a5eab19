"""The worker processes: start, feed, watch, replace. Tracks which jobs each one holds.

Each worker has its own pair of pipes (jobs in, events out). Nothing is shared between
workers, so a worker killed at any instant cannot leave a lock held that others need.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing import connection
from multiprocessing.context import BaseContext
from typing import Any

from anvil_cli.engine.worker_config import WorkerConfig
from anvil_cli.engine.worker_entry import run_worker

InFlight = tuple[int, int, dict[str, Any], int]  # the ready-queue row of a dispatched job


@dataclass
class WorkerHandle:
    """One worker process and the jobs it holds."""

    worker_id: int
    process: Any
    inbox: Any  # Connection: conductor -> worker
    events: Any  # Connection: worker -> conductor
    ready: bool = False
    closed: bool = False
    jobs: dict[int, InFlight] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return bool(self.process.is_alive())


class WorkerPool:
    """Starts `count` workers sharing one governor; each has its own pipes."""

    def __init__(
        self,
        ctx: BaseContext,
        count: int,
        make_config: Any,  # Callable[[int], WorkerConfig]
        governor: Any,
    ) -> None:
        self.ctx = ctx
        self.count = count
        self.make_config = make_config
        self.governor = governor
        self.draining = False
        self.workers: dict[int, WorkerHandle] = {}
        self._next_id = 0
        self.restarts = 0

    def start(self) -> None:
        for _ in range(self.count):
            self._spawn()

    def _spawn(self) -> WorkerHandle:
        wid = self._next_id
        self._next_id += 1
        cfg: WorkerConfig = self.make_config(wid)
        jobs_r, jobs_w = self.ctx.Pipe(duplex=False)
        events_r, events_w = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(  # type: ignore[attr-defined]
            target=run_worker,
            args=(cfg, self.governor, jobs_r, events_w),
            name=f"anvil-worker-{wid}",
            daemon=True,
        )
        proc.start()
        jobs_r.close()
        events_w.close()
        handle = WorkerHandle(worker_id=wid, process=proc, inbox=jobs_w, events=events_r)
        if self.draining:
            self._tell(handle, ("drain",))
        self.workers[wid] = handle
        return handle

    def in_flight(self) -> int:
        return sum(len(w.jobs) for w in self.workers.values())

    def pick(self) -> WorkerHandle | None:
        """The ready, live worker holding the fewest jobs."""
        ready = [w for w in self.workers.values() if w.ready]
        return min(ready, key=lambda w: len(w.jobs)) if ready else None

    def drain(self) -> None:
        """Tell every worker the run is stopping: no retries, no waiting for the governor."""
        self.draining = True
        for worker in self.workers.values():
            self._tell(worker, ("drain",))

    @staticmethod
    def _tell(worker: WorkerHandle, message: tuple[Any, ...]) -> None:
        with contextlib.suppress(OSError):
            worker.inbox.send(message)

    def send(self, worker: WorkerHandle, row: InFlight) -> None:
        worker.jobs[row[1]] = row
        with contextlib.suppress(OSError):  # a dead worker: reap() hands its jobs back
            worker.inbox.send(("job", row[2]))

    def wait_events(self, timeout_s: float, limit: int = 1000) -> list[tuple[Any, ...]]:
        """Events from every worker, waiting up to `timeout_s` for the first; wakes on deaths too."""
        conns: dict[Any, WorkerHandle] = {w.events: w for w in self.workers.values() if not w.closed}
        sentinels = [w.process.sentinel for w in self.workers.values()]
        ready = connection.wait([*conns, *sentinels], timeout=timeout_s)
        events: list[tuple[Any, ...]] = []
        for ready_obj in ready:
            worker = conns.get(ready_obj)
            if worker is not None:
                events.extend(self._receive(worker, limit - len(events)))
        return events

    @staticmethod
    def _receive(worker: WorkerHandle, limit: int) -> list[tuple[Any, ...]]:
        events: list[tuple[Any, ...]] = []
        try:
            while len(events) < limit and worker.events.poll():
                events.append(worker.events.recv())
        except (EOFError, OSError):
            worker.closed = True
        return events

    def finished(self, worker_id: int, seq: int) -> InFlight | None:
        worker = self.workers.get(worker_id)
        if worker is None:
            return None
        return worker.jobs.pop(seq, None)

    def dead(self) -> list[WorkerHandle]:
        """Workers whose process has exited (still registered: read their last events first)."""
        return [w for w in self.workers.values() if not w.alive]

    def last_words(self, worker: WorkerHandle) -> list[tuple[Any, ...]]:
        """Every event a dead worker sent before it died (results it finished still count)."""
        worker.process.join(timeout=0.1)
        return [] if worker.closed else self._receive(worker, 1_000_000)

    def replace(self, worker: WorkerHandle) -> list[InFlight]:
        """Forget a dead worker and start another; returns the jobs it still held."""
        del self.workers[worker.worker_id]
        self._close(worker)
        self.restarts += 1
        self._spawn()
        return list(worker.jobs.values())

    def stop(self, timeout_s: float) -> None:
        """Ask every worker to finish what it holds and exit; kill those that do not."""
        for worker in self.workers.values():
            self._tell(worker, ("stop",))
        deadline = time.monotonic() + timeout_s
        for worker in self.workers.values():
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))

    def drain_events(self) -> list[tuple[Any, ...]]:
        """Whatever workers sent before they exited."""
        events: list[tuple[Any, ...]] = []
        for worker in self.workers.values():
            if not worker.closed:
                events.extend(self._receive(worker, 1_000_000))
        return events

    def kill(self, *, close: bool = True) -> None:
        """SIGKILL every worker; `close=False` keeps their pipes to read what they sent."""
        for worker in self.workers.values():
            if worker.alive and worker.process.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGKILL)
            worker.process.join(timeout=2)
            if close:
                self._close(worker)

    @staticmethod
    def _close(worker: WorkerHandle) -> None:
        for conn in (worker.inbox, worker.events):
            with contextlib.suppress(OSError):
                conn.close()
        worker.closed = True
