"""The worker processes: start, feed, watch, replace. Tracks which jobs each one holds."""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass, field
from multiprocessing.context import BaseContext
from typing import Any

from anvil_cli.engine.worker import WorkerConfig, worker_main

InFlight = tuple[int, int, dict[str, Any], int]  # the ready-queue row of a dispatched job


@dataclass
class WorkerHandle:
    """One worker process and the jobs it holds."""

    worker_id: int
    process: Any
    inbox: Any
    ready: bool = False
    jobs: dict[int, InFlight] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return bool(self.process.is_alive())


class WorkerPool:
    """Starts `count` workers sharing one outbox, one governor and one `stopping` event."""

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
        self.outbox: Any = ctx.Queue()
        self.stopping: Any = ctx.Event()
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
        inbox = self.ctx.Queue()
        proc = self.ctx.Process(  # type: ignore[attr-defined]
            target=worker_main,
            args=(cfg, self.governor, inbox, self.outbox, self.stopping),
            name=f"anvil-worker-{wid}",
            daemon=True,
        )
        proc.start()
        handle = WorkerHandle(worker_id=wid, process=proc, inbox=inbox)
        self.workers[wid] = handle
        return handle

    def in_flight(self) -> int:
        return sum(len(w.jobs) for w in self.workers.values())

    def pick(self) -> WorkerHandle | None:
        """The ready, live worker holding the fewest jobs."""
        ready = [w for w in self.workers.values() if w.ready]
        return min(ready, key=lambda w: len(w.jobs)) if ready else None

    def send(self, worker: WorkerHandle, row: InFlight) -> None:
        worker.jobs[row[1]] = row
        worker.inbox.put(("job", row[2]))

    def finished(self, worker_id: int, seq: int) -> InFlight | None:
        worker = self.workers.get(worker_id)
        if worker is None:
            return None
        return worker.jobs.pop(seq, None)

    def reap(self) -> list[tuple[int, int | None, list[InFlight]]]:
        """Find dead workers, start replacements; returns (worker_id, exitcode, jobs it held)."""
        dead: list[tuple[int, int | None, list[InFlight]]] = []
        for wid, worker in list(self.workers.items()):
            if worker.alive:
                continue
            worker.process.join(timeout=0.1)
            dead.append((wid, worker.process.exitcode, list(worker.jobs.values())))
            del self.workers[wid]
            with contextlib.suppress(Exception):
                worker.inbox.close()
                worker.inbox.cancel_join_thread()
            self.restarts += 1
            self._spawn()
        return dead

    def pids(self) -> list[int]:
        return [int(w.process.pid) for w in self.workers.values() if w.process.pid]

    def stop(self, timeout_s: float) -> None:
        """Ask every worker to finish what it holds and exit; kill those that do not."""
        for worker in self.workers.values():
            with contextlib.suppress(Exception):
                worker.inbox.put(("stop",))
        for worker in self.workers.values():
            worker.process.join(timeout=timeout_s)
        self.kill()

    def kill(self) -> None:
        for worker in self.workers.values():
            if worker.alive and worker.process.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGKILL)
            worker.process.join(timeout=2)
            with contextlib.suppress(Exception):
                worker.inbox.close()
                worker.inbox.cancel_join_thread()
