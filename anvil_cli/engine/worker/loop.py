"""A worker process: one event loop, many agents (asyncio tasks), reporting to the conductor.

It speaks only the typed protocol of `engine.events`: commands in on its inbox (`RunJob`,
`Drain`, `Stop`), events out on its own pipe (`WorkerReady`, `CallFailed`, `CallSettled`,
`JobDone`, `JobAbandoned`, `RunFatal`). API calls go through the SDK's async client on its
aiohttp transport, one per endpoint (`clients.py`); the governor is reached only
through the worker's `GovernorBroker`, so no call blocks the loop on IPC.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import random
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Protocol

from anvil_cli.config.settings import Settings
from anvil_cli.engine import garbage
from anvil_cli.engine.attempts import Attempt
from anvil_cli.engine.events import (
    HEARTBEAT_S,
    CallFailed,
    CallSettled,
    Drain,
    Heartbeat,
    JobAbandoned,
    JobDone,
    NewGovernor,
    RunFatal,
    RunJob,
    Stop,
    ToolGroup,
    WorkerCommand,
    WorkerEvent,
    WorkerReady,
)
from anvil_cli.engine.governor_host.client import GovernorClient
from anvil_cli.engine.outcomes import JobResult
from anvil_cli.engine.process.fdlimit import raise_nofile_limit
from anvil_cli.engine.process.lifeline import die_with
from anvil_cli.engine.process.signals import leave_stop_to_conductor
from anvil_cli.engine.worker import telemetry
from anvil_cli.engine.worker.agent import Abandoned, Agent, AgentContext, StopRun
from anvil_cli.engine.worker.broker import GovernorBroker, GovernorLost
from anvil_cli.engine.worker.clients import make_clients
from anvil_cli.engine.worker.config import WorkerConfig
from anvil_cli.engine.worker.tools.runner import ToolProcesses
from anvil_cli.engine.worker.tools.toolbox import ToolContext
from anvil_cli.jobs.job import Job
from anvil_cli.policy.pricing.pricer import Pricer


def worker_main(cfg: WorkerConfig, governor: GovernorClient, inbox: Connection, events: Connection) -> None:
    """Entry point of a worker process."""
    leave_stop_to_conductor()  # Ctrl-C and SIGTERM to the process group are the conductor's
    die_with(cfg.conductor_pid)
    random.seed(os.urandom(16))  # never share the parent's RNG state (jitter must differ)
    raise_nofile_limit()
    try:
        import uvloop  # the `fast` extra

        uvloop.run(_serve_pipes(cfg, governor, inbox, events))
    except ImportError:
        asyncio.run(_serve_pipes(cfg, governor, inbox, events))


class _Outbox:
    """Events to the conductor, one message per turn of the loop: what the agents report during a
    turn is gathered and handed, as one list, to a thread of its own that writes it (the loop never
    blocks on a full pipe: the conductor may itself be blocked sending this worker jobs, which only
    the loop reads). One pickle, one write and one wake-up of the conductor per turn, not per event."""

    def __init__(self, conn: Connection, loop: asyncio.AbstractEventLoop) -> None:
        self._conn = conn
        self._loop = loop
        self._loop_thread = threading.get_ident()  # made on the loop
        self._lock = threading.Lock()
        self._pending: list[WorkerEvent] = []
        self._flushing = False  # a flush is scheduled on the loop
        self._queue: queue.SimpleQueue[list[WorkerEvent] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="worker-outbox", daemon=True)
        self._thread.start()

    def put(self, event: WorkerEvent) -> None:
        """Queue an event (from the loop or any thread); it leaves at the end of this turn."""
        with self._lock:
            self._pending.append(event)
            if self._flushing:
                return
            self._flushing = True
        if threading.get_ident() == self._loop_thread:
            self._loop.call_soon(self._flush)
        else:
            self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._flushing = False
        if batch:
            self._queue.put(batch)

    def _write(self) -> None:
        while (batch := self._queue.get()) is not None:
            try:
                self._conn.send(batch)
            except OSError:  # the conductor is gone
                os._exit(1)

    def close(self) -> None:
        """Send what is queued, then close the pipe."""
        self._flush()
        self._queue.put(None)
        self._thread.join()
        self._conn.close()


class _Worker:
    """The loop's side of one worker: reads commands, runs agents, sends events."""

    def __init__(self, cfg: WorkerConfig, agent: Agent, broker: GovernorBroker, sink: EventSink) -> None:
        self.wid = cfg.worker_id
        self.agent = agent
        self.broker = broker
        self.put = sink.put  # thread-safe: agents' callbacks and the loop both report
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopped = asyncio.Event()

    def handle(self, command: WorkerCommand) -> None:
        match command:
            case Stop():
                self.stopped.set()
            case Drain():
                self.agent.ctx.stopping.set()
            case NewGovernor(governor=governor):
                self.broker.replace(governor)
            case RunJob(row=row):
                task = asyncio.create_task(self.run_one(Job.from_record(json.loads(row.job_json))))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def run_one(self, job: Job) -> None:
        try:
            with telemetry.job_span(job) as trace:
                result = await self.agent.run(job)
                trace.ended(result)
        except Abandoned as exc:
            self.put(JobAbandoned(self.wid, job.seq, exc.attempts))
            asyncio.get_running_loop().run_in_executor(None, telemetry.flush)  # the worker may not last
        except StopRun as exc:
            self.put(RunFatal(self.wid, job.seq, exc.reason, exc.message, exc.attempts))
        except GovernorLost as exc:  # the governor's Manager is gone: nothing can be asked
            self.put(RunFatal(self.wid, job.seq, "governor_lost", str(exc), 0))
        except Exception as exc:  # a bug, not an API error: record it on the job, keep the worker alive
            self.put(JobDone(self.wid, self._internal_error(job, exc)))
        else:
            self.put(JobDone(self.wid, result))

    def _internal_error(self, job: Job, exc: Exception) -> JobResult:
        detail = self.agent.redact("".join(traceback.format_exception_only(type(exc), exc)).strip())
        return JobResult.failed_now(job.seq, job.model, "internal_error", detail)


async def _beat(worker: _Worker) -> None:
    """Say the loop is turning, every HEARTBEAT_S: a loop that stops is noticed by the conductor."""
    while True:
        worker.put(Heartbeat(worker.wid))
        await asyncio.sleep(HEARTBEAT_S)


class EventSink(Protocol):
    """Where a worker's events go (a pipe locally, a queue the driver pulls on a cluster)."""

    def put(self, event: WorkerEvent) -> None: ...


async def run_worker_loop(
    cfg: WorkerConfig, governor: GovernorClient, sink: EventSink, attach: Callable[[_Worker], None]
) -> None:
    """A worker's life on the running loop, whatever carries its commands and events: agents,
    the broker, the heartbeat. `attach(worker)` hooks the transport's command intake up to
    `worker.handle`; events leave through `sink`. Returns once told to stop and its jobs ended."""
    loop = asyncio.get_running_loop()
    telemetry.start(
        cfg.otel_env, cfg.run_id, cfg.otel_link
    )  # here, after the fork: its exporter's thread is this process's
    settings = Settings.model_validate_json(cfg.settings_json)
    pricer = Pricer.from_overrides({k: v.model_dump() for k, v in settings.prices.items()})
    # one client per endpoint, each pool sized to the agents (any of them may send every call)
    clients = make_clients(cfg.endpoints, settings.provider.timeout_s, cfg.max_agents + 4, pricer)
    broker = GovernorBroker(governor, cfg.worker_id, loop).start()
    wid = cfg.worker_id

    def on_attempt(seq: int, attempt: Attempt) -> None:
        if not attempt.ok:
            sink.put(CallFailed(wid, seq, attempt))

    def on_spend(seq: int, cost_usd: float, endpoint: str) -> None:
        sink.put(CallSettled(wid, seq, cost_usd, endpoint))

    def on_tool_group(pgid: int, running: bool) -> None:
        sink.put(ToolGroup(wid, pgid, running))

    processes = ToolProcesses(on_tool_group)

    agent = Agent(
        AgentContext(
            clients=clients,
            governor=broker,
            settings=settings,
            pricer=pricer,
            stopping=asyncio.Event(),
            tools=ToolContext.for_run(settings.run, settings.state_dir, cfg.run_id, processes),
            owner=wid,
            on_attempt=on_attempt,
            on_spend=on_spend,
        )
    )
    worker = _Worker(cfg, agent, broker, sink)
    collecting = garbage.for_the_run()  # what the worker was forked with, and its clients, frozen
    attach(worker)
    worker.put(WorkerReady(wid, os.getpid(), cfg.endpoints[0].host))
    beating = asyncio.create_task(_beat(worker))
    try:
        await worker.stopped.wait()
        beating.cancel()
        if worker.tasks:
            await asyncio.gather(*worker.tasks, return_exceptions=True)
    finally:
        processes.kill_all()  # no tool call outlives its worker
        agent.ctx.tools.close()  # and its tools' working directories go with it
        broker.close()
        for each in clients.values():
            await each.client.close()
        await loop.run_in_executor(None, telemetry.shutdown)  # its spans sent, off the loop
        garbage.restore(collecting)


async def _serve_pipes(
    cfg: WorkerConfig, governor: GovernorClient, inbox: Connection, events: Connection
) -> None:
    """A local worker process: commands on its inbox pipe, events on its own pipe."""
    loop = asyncio.get_running_loop()
    outbox = _Outbox(events, loop)

    def on_inbox(worker: _Worker) -> None:  # the inbox is readable: take every command waiting
        try:
            while inbox.poll():
                worker.handle(inbox.recv())
        except (EOFError, OSError):  # the conductor is gone
            os._exit(1)

    def attach(worker: _Worker) -> None:
        loop.add_reader(inbox.fileno(), on_inbox, worker)
        # uvloop makes a watched fd non-blocking; a command bigger than the pipe (a long prompt)
        # arrives in pieces, and a non-blocking recv would fail partway. Once the inbox is
        # readable the rest of the message is on its way: wait for it.
        os.set_blocking(inbox.fileno(), True)

    try:
        await run_worker_loop(cfg, governor, outbox, attach)
    finally:
        loop.remove_reader(inbox.fileno())
        outbox.close()
