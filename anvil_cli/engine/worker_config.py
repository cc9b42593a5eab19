"""What a worker process is started with (kept apart so the conductor never imports the SDK)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs, picklable (workers may be spawned)."""

    worker_id: int
    settings_json: str
    api_key: str  # passed over the process pipe, never on a command line or in a log
    base_url: str | None
    max_agents: int  # agents this worker may run at once (each may hold every slot if others die)
    conductor_pid: int
    run_id: str = ""  # names the run's tool working directories

    def __repr__(self) -> str:  # keep the key out of any traceback or log
        return f"WorkerConfig(worker_id={self.worker_id}, base_url={self.base_url!r})"
