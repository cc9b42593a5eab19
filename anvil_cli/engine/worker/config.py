"""What a worker process is started with (kept apart so the conductor never imports the SDK)."""

from __future__ import annotations

from dataclasses import dataclass

from anvil_cli.config.endpoint import Endpoint


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs, picklable (workers may be spawned, or live on other machines)."""

    worker_id: int
    settings_json: str
    # the API's address and credential, resolved in the driver: a worker never reads them from
    # its own environment (passed over the process pipe or to the actor, never on a command line)
    endpoints: tuple[Endpoint, ...]  # in the order `endpoints:` lists them; one without it
    max_agents: int  # agents this worker may run at once (each may hold every slot if others die)
    conductor_pid: int
    run_id: str = ""  # names the run's tool working directories
    otel_env: tuple[tuple[str, str], ...] = ()  # the driver's OTEL_* variables (worker/telemetry.py)
    otel_link: str = ""  # the run span's W3C traceparent, which job spans link to ("": none)

    def __repr__(self) -> str:  # keep the credential out of any traceback or log
        return f"WorkerConfig(worker_id={self.worker_id}, endpoints={list(self.endpoints)!r})"
