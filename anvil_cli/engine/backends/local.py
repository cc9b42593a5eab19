"""The local backend: workers are processes on this machine (forked from the fork server).

Each worker has its own pair of pipes (commands in, events out). Nothing is shared between
workers, so a worker killed at any instant cannot leave a lock held that others need.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import connection
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

from anvil_cli.engine.backend import Spawning, WorkerLost
from anvil_cli.engine.events import NewGovernor, Stop, WorkerCommand, WorkerEvent
from anvil_cli.engine.process.forkserver import ensure_forkserver, workers_started
from anvil_cli.engine.process.lifeline import PidHandle, wait_exited
from anvil_cli.engine.worker.config import WorkerConfig
from anvil_cli.engine.worker.entry import run_worker
from anvil_cli.snapshot.state import WorkerInfo

JOIN_DEAD_S = 0.1  # a dead process's pipe is read after this join (it has exited already)


@dataclass
class _Process:
    """One worker process and its pipes."""

    worker_id: int
    process: BaseProcess
    handle: PidHandle  # liveness by pid: the fork server's death must not read as the worker's
    inbox: Connection  # conductor -> worker
    events: Connection  # worker -> conductor
    closed: bool = False

    @property
    def alive(self) -> bool:
        return self.handle.alive()

    @property
    def sentinel(self) -> int:
        return self.handle.fd if self.handle.fd is not None else self.process.sentinel


class LocalBackend(Spawning):
    """Worker processes sharing one governor; implements `engine.backend.Backend`."""

    def __init__(self, ctx: BaseContext, make_config: Callable[[int], WorkerConfig], governor: Any) -> None:
        self.ctx = ctx
        self.make_config = make_config
        self.governor = governor  # the Manager's proxy, handed to each process
        self._procs: dict[int, _Process] = {}
        self._next_id = 0

    def start(self, count: int) -> list[int]:
        started = super().start(count)
        workers_started()  # `anvil run`: the fork server's idle SDK goes (a replacement restarts it)
        return started

    def _spawn(self) -> int:
        wid = self._next_id
        self._next_id += 1
        cfg = self.make_config(wid)
        jobs_r, jobs_w = self.ctx.Pipe(duplex=False)
        events_r, events_w = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(  # type: ignore[attr-defined]
            target=run_worker,
            args=(cfg, self.governor, jobs_r, events_w),
            name=f"anvil-worker-{wid}",
            daemon=True,
        )
        ensure_forkserver()  # started again without the secrets if it died
        proc.start()
        jobs_r.close()
        events_w.close()
        assert proc.pid is not None
        self._procs[wid] = _Process(wid, proc, PidHandle(proc.pid), jobs_w, events_r)
        return wid

    def set_governor(self, governor: Any) -> None:
        """A new governor replaced a lost one: tell every worker; new workers get it too."""
        self.governor = governor
        for wid in list(self._procs):
            self.send(wid, NewGovernor(governor))

    def send(self, worker: int, command: WorkerCommand) -> bool:
        proc = self._procs.get(worker)
        if proc is None:
            return False
        try:
            proc.inbox.send(command)
        except OSError:  # a dead worker: lost() reports it
            return False
        return True

    def poll(self, timeout_s: float, limit: int = 1000) -> list[WorkerEvent]:
        """Events from every worker, waiting up to `timeout_s` for the first; wakes on deaths too."""
        conns = {p.events: p for p in self._procs.values() if not p.closed}
        sentinels = [p.sentinel for p in self._procs.values()]
        ready = connection.wait([*conns, *sentinels], timeout=timeout_s)
        events: list[WorkerEvent] = []
        for obj in ready:
            proc = conns.get(obj)  # type: ignore[call-overload]
            if proc is not None:
                events.extend(self._receive(proc, limit - len(events)))
        return events

    @staticmethod
    def _receive(proc: _Process, limit: int) -> list[WorkerEvent]:
        events: list[WorkerEvent] = []
        try:
            while len(events) < limit and proc.events.poll():
                sent = proc.events.recv()  # a worker sends one turn of its loop's events as a list
                if isinstance(sent, list):
                    events.extend(sent)
                else:
                    events.append(sent)
        except (EOFError, OSError):
            proc.closed = True
        return events

    def lost(self) -> list[WorkerLost]:
        """Workers whose process has exited, each with every event it sent before dying."""
        gone: list[WorkerLost] = []
        for proc in [p for p in self._procs.values() if not p.alive]:
            proc.process.join(timeout=JOIN_DEAD_S)
            proc.handle.kill()  # dead already; this only makes sure
            last = [] if proc.closed else self._receive(proc, 1_000_000)
            del self._procs[proc.worker_id]
            self._close(proc)
            gone.append(WorkerLost(proc.worker_id, proc.process.exitcode, last))
        return gone

    def stop(self, timeout_s: float) -> list[WorkerEvent]:
        """Ask every worker to finish what it holds and exit; kill those that do not in time."""
        for wid in list(self._procs):
            self.send(wid, Stop())
        # by pid: with the fork server gone, `join` would return at once (multiprocessing reads
        # its children's exit through it) and they would be killed mid-call
        wait_exited([p.handle for p in self._procs.values()], timeout_s)
        return self.kill()

    def kill(self) -> list[WorkerEvent]:
        """SIGKILL every worker; returns what they had sent before."""
        for proc in self._procs.values():
            proc.handle.kill()
        events: list[WorkerEvent] = []
        wait_exited([p.handle for p in self._procs.values()], 2.0)
        for proc in self._procs.values():
            if not proc.closed:
                events.extend(self._receive(proc, 1_000_000))
            self._close(proc)
        return events

    def kill_worker(self, worker: int) -> None:
        proc = self._procs.get(worker)
        if proc is not None:
            proc.handle.kill()

    def workers(self) -> list[WorkerInfo]:
        return [WorkerInfo(p.worker_id, p.process.pid, p.alive, 0) for p in self._procs.values()]

    @staticmethod
    def _close(proc: _Process) -> None:
        for conn in (proc.inbox, proc.events):
            with contextlib.suppress(OSError):
                conn.close()
        proc.handle.close()
        proc.closed = True
