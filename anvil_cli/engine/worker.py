"""A worker process: runs many agents at once (threads), reports events to the conductor.

It speaks only the typed protocol of `engine.events`: commands in on its inbox (`RunJob`,
`Drain`, `Stop`), events out on its own pipe (`WorkerReady`, `CallFailed`, `CallSettled`,
`JobDone`, `JobAbandoned`, `RunFatal`).
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

import anthropic
import httpx2

from anvil_cli.batch.job import Job
from anvil_cli.config import Settings
from anvil_cli.engine.agent import Abandoned, Agent, AgentContext, StopRun
from anvil_cli.engine.events import (
    CallFailed,
    CallSettled,
    Drain,
    JobAbandoned,
    JobDone,
    RunFatal,
    RunJob,
    Stop,
    WorkerCommand,
    WorkerEvent,
    WorkerReady,
)
from anvil_cli.engine.governor_client import GovernorClient
from anvil_cli.engine.lifeline import die_with
from anvil_cli.engine.worker_config import WorkerConfig
from anvil_cli.pricing import Pricer
from anvil_cli.records import JobResult


def make_client(
    api_key: str, base_url: str | None, timeout_s: float, max_connections: int
) -> anthropic.Anthropic:
    """An SDK client with its own retries off: tenacity owns retries."""
    http_client = httpx2.Client(
        limits=httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        timeout=httpx2.Timeout(timeout_s, connect=5.0),
    )
    return anthropic.Anthropic(
        api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s, http_client=http_client
    )


class _Outbox:
    """The event pipe, shared safely by this worker's agent threads."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def put(self, event: WorkerEvent) -> None:
        with self._lock:
            self._conn.send(event)


def worker_main(cfg: WorkerConfig, governor: GovernorClient, inbox: Connection, events: Connection) -> None:
    """Entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the conductor's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with(cfg.conductor_pid)
    random.seed(os.urandom(16))  # never share the parent's RNG state (jitter must differ)
    settings = Settings.model_validate_json(cfg.settings_json)
    client = make_client(cfg.api_key, cfg.base_url, settings.provider.timeout_s, cfg.max_threads + 4)
    wid = cfg.worker_id
    outbox = _Outbox(events)
    stopping = threading.Event()  # process-local: a killed sibling can never leave it locked

    def on_attempt(seq: int, info: dict[str, Any]) -> None:
        if info.get("status_code") != 200:
            outbox.put(CallFailed(wid, seq, {"seq": seq, **info}))

    def on_spend(seq: int, cost_usd: float) -> None:
        outbox.put(CallSettled(wid, seq, cost_usd))

    agent = Agent(
        AgentContext(
            client=client,
            governor=governor,
            settings=settings,
            pricer=Pricer.from_overrides({k: v.model_dump() for k, v in settings.prices.items()}),
            stopping=stopping,
            owner=wid,
            on_attempt=on_attempt,
            on_spend=on_spend,
        )
    )
    pool = ThreadPoolExecutor(max_workers=cfg.max_threads, thread_name_prefix=f"agent-{wid}")
    outbox.put(WorkerReady(wid, os.getpid()))
    try:
        while True:
            try:
                command: WorkerCommand = inbox.recv()
            except EOFError:  # the conductor is gone
                os._exit(1)
            match command:
                case Stop():
                    break
                case Drain():
                    stopping.set()
                case RunJob(row=row):
                    pool.submit(_run_one, agent, Job.from_record(json.loads(row.job_json)), outbox, wid)
    finally:
        pool.shutdown(wait=True)
        client.close()
        events.close()


def _run_one(agent: Agent, job: Job, outbox: _Outbox, wid: int) -> None:
    try:
        result = agent.run(job)
    except Abandoned as exc:
        outbox.put(JobAbandoned(wid, job.seq, exc.attempts))
    except StopRun as exc:
        outbox.put(RunFatal(wid, job.seq, exc.reason, exc.message, exc.attempts))
    except (EOFError, ConnectionError) as exc:  # the governor's Manager is gone: nothing can be asked
        message = f"lost the shared rate-limit governor ({exc!r})"
        outbox.put(RunFatal(wid, job.seq, "governor_lost", message, 0))
    except Exception as exc:  # a bug, not an API error: record it on the job, keep the worker alive
        now = time.time()
        detail = agent.redact("".join(traceback.format_exception_only(type(exc), exc)).strip())
        result = JobResult(
            seq=job.seq,
            succeeded=False,
            model=job.model,
            attempts=0,
            error={"type": "internal_error", "message": detail, "status_code": None},
            started_at=now,
            finished_at=now,
        )
        outbox.put(JobDone(wid, result))
    else:
        outbox.put(JobDone(wid, result))
