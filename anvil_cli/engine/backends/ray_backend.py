"""The Ray backend (`--backend ray`): workers are Ray actors spread over the cluster's nodes; the
conductor, the journal and the results stay on the driver, as with local workers.

Each actor runs the same worker loop as a local process (`engine.worker.run_worker_loop`): its
agents, their tool commands (where the actor lives), the broker to the governor actor. Commands
go to it as actor calls, in order; events come back by long poll: the driver keeps one
`events` call outstanding per worker, which returns as soon as there is something (a batch of
everything queued), so an event costs no round trip of its own. An actor that dies fails its
outstanding calls: the backend reports it lost once, and the conductor re-queues its jobs.

Imported only with `--backend ray`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError

from anvil_cli.config.settings import Settings
from anvil_cli.engine.backend import Spawning, WorkerLost
from anvil_cli.engine.events import NewGovernor, Stop, WorkerCommand, WorkerEvent
from anvil_cli.engine.governor_host.client import GovernorClient
from anvil_cli.engine.worker.config import WorkerConfig
from anvil_cli.snapshot.state import WorkerInfo

LONG_POLL_S = 0.5  # an `events` call returns after this long even with nothing to say
MiB = 1024 * 1024


class RayWorker:
    """The actor: one worker loop in the actor's event loop."""

    def __init__(self) -> None:
        self._queue: collections.deque[WorkerEvent] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._worker: Any = None
        self._early: list[WorkerCommand] = []  # commands that came before the loop was up

    async def run(self, cfg: WorkerConfig, governor: GovernorClient) -> str:
        from anvil_cli.config.vault import set_not_dumpable
        from anvil_cli.engine.process.fdlimit import raise_nofile_limit
        from anvil_cli.engine.worker.loop import run_worker_loop

        set_not_dumpable()  # the actor's process holds the key now: its /proc files are root's
        self._loop = asyncio.get_running_loop()
        self._wake = self._wake or asyncio.Event()
        random.seed(os.urandom(16))
        raise_nofile_limit()
        await run_worker_loop(cfg, governor, self, self._attach)
        return "stopped"

    def _attach(self, worker: Any) -> None:
        self._worker = worker
        for command in self._early:
            worker.handle(command)
        self._early.clear()

    def put(self, event: WorkerEvent) -> None:
        """From the loop or any thread: queue it and wake a waiting `events` call."""
        self._queue.append(event)
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def send(self, commands: list[WorkerCommand]) -> None:
        for command in commands:
            if self._worker is None:
                self._early.append(command)
            else:
                self._worker.handle(command)

    async def events(self, wait_s: float) -> list[WorkerEvent]:
        """Everything queued; waits up to `wait_s` for the first."""
        self._wake = self._wake or asyncio.Event()
        if not self._queue:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)
        out = list(self._queue)
        self._queue.clear()
        return out

    def where(self) -> tuple[str, int]:
        """(the node: its address and id, as `ray list nodes` shows them; the actor's pid)."""
        ip = str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call,unused-ignore]
        return f"{ip} {ray.get_runtime_context().get_node_id()[:8]}", os.getpid()


@dataclass
class _Actor:
    worker_id: int
    handle: Any
    run_ref: Any
    where_ref: Any
    poll_ref: Any = None
    stopping: bool = False
    dead: bool = False
    node: str | None = None
    pid: int | None = None
    kept: list[WorkerEvent] = field(default_factory=list)


class RayBackend(Spawning):
    """Worker actors on a Ray cluster; implements `engine.backend.Backend`."""

    def __init__(self, settings: Settings, make_config: Any, governor: GovernorClient) -> None:
        self.settings = settings
        self.make_config = make_config
        self.governor = governor
        self._actors: dict[int, _Actor] = {}
        # ids unique across runs: grants held by a lost worker are released by owner id, and a
        # shared governor serves several runs' workers
        self._next_id = secrets.randbelow(1 << 20) << 10
        self._actor_class: Any = ray.remote(RayWorker)

    def _options(self) -> dict[str, Any]:
        r = self.settings.ray
        options: dict[str, Any] = {
            "num_cpus": r.worker_cpus,
            "scheduling_strategy": "SPREAD",
            "max_restarts": 0,
            "max_concurrency": 64,  # run (the loop) + send + events interleave on the actor's loop
        }
        if r.worker_memory_mb:
            options["memory"] = r.worker_memory_mb * MiB
        if r.worker_resources:
            options["resources"] = dict(r.worker_resources)
        return options

    def _spawn(self) -> int:
        wid = self._next_id
        self._next_id += 1
        cfg = self.make_config(wid)
        name = f"anvil-worker-{cfg.run_id}-{wid}"  # `ray list actors` says whose it is
        options = {**self._options(), "name": name, "namespace": self.settings.ray.namespace}
        handle: Any = self._actor_class.options(**options).remote()
        run_ref = handle.run.remote(cfg, self.governor)
        actor = _Actor(wid, handle, run_ref, handle.where.remote())
        actor.poll_ref = handle.events.remote(LONG_POLL_S)
        self._actors[wid] = actor
        return wid

    def send(self, worker: int, command: WorkerCommand) -> bool:
        actor = self._actors.get(worker)
        if actor is None or actor.dead:
            return False
        actor.handle.send.remote([command])
        return True

    def poll(self, timeout_s: float) -> list[WorkerEvent]:
        refs = {a.poll_ref: a for a in self._actors.values() if a.poll_ref is not None and not a.dead}
        runs = {a.run_ref: a for a in self._actors.values() if not a.dead}
        if not refs and not runs:
            time.sleep(timeout_s)  # nothing to wait on: do not spin
            return []
        everything = [*refs, *runs]
        ready, _ = ray.wait(everything, num_returns=1, timeout=timeout_s)
        if ready:
            ready, _ = ray.wait(everything, num_returns=len(everything), timeout=0)
        events: list[WorkerEvent] = []
        for ref in ready:
            actor = refs.get(ref)
            if actor is not None:
                events.extend(self._take(actor))
            elif (actor := runs.get(ref)) is not None and not actor.stopping:
                actor.dead = True  # its loop ended without being asked: lost
        return events

    def _take(self, actor: _Actor) -> list[WorkerEvent]:
        try:
            got: list[WorkerEvent] = ray.get(actor.poll_ref)
        except RayError:
            actor.dead, actor.poll_ref = True, None
            return []
        actor.poll_ref = actor.handle.events.remote(LONG_POLL_S)
        return got

    def lost(self) -> list[WorkerLost]:
        gone = [a for a in self._actors.values() if a.dead]
        for actor in gone:
            del self._actors[actor.worker_id]
            self._kill(actor)
        return [WorkerLost(a.worker_id, None, a.kept) for a in gone]

    def stop(self, timeout_s: float) -> list[WorkerEvent]:
        """Ask every worker to finish what it holds and end; kill those that do not in time."""
        for actor in self._actors.values():
            actor.stopping = True
            self.send(actor.worker_id, Stop())
        live = [a for a in self._actors.values() if not a.dead]
        if live:
            ray.wait([a.run_ref for a in live], num_returns=len(live), timeout=timeout_s)
        events: list[WorkerEvent] = []
        for actor in live:  # what they said before ending: the outstanding poll, then the rest
            try:
                if actor.poll_ref is not None:
                    events.extend(ray.get(actor.poll_ref, timeout=timeout_s))
                events.extend(ray.get(actor.handle.events.remote(0.0), timeout=timeout_s))
            except (RayError, TimeoutError):
                pass
        return events + self.kill()

    def kill(self) -> list[WorkerEvent]:
        for actor in self._actors.values():
            self._kill(actor)
        self._actors.clear()
        return []

    def kill_worker(self, worker: int) -> None:
        actor = self._actors.get(worker)
        if actor is not None:
            self._kill(actor)
            actor.dead = True

    @staticmethod
    def _kill(actor: _Actor) -> None:
        with contextlib.suppress(RayActorError, ValueError):
            ray.kill(actor.handle, no_restart=True)

    def workers(self) -> list[WorkerInfo]:
        out = []
        for a in self._actors.values():
            if a.node is None:
                ready, _ = ray.wait([a.where_ref], timeout=0)
                if ready:
                    try:
                        a.node, a.pid = ray.get(a.where_ref)
                    except RayError:
                        a.node = "?"
            # placed: it has answered `where`; until then it waits for the cluster's resources
            placed = a.node is not None
            alive, waiting = placed and not a.dead, not placed and not a.dead
            out.append(WorkerInfo(a.worker_id, a.pid, alive, 0, a.node, waiting))
        return out

    def set_governor(self, governor: GovernorClient) -> None:
        self.governor = governor
        for wid in list(self._actors):
            self.send(wid, NewGovernor(governor))
