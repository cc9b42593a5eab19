"""What a run driver hands its views once a second: `EngineState`, a plain frozen value.

Both drivers (the conductor for `--mode messages`, Message Batches for `--mode batches`) build
one and pass it, with the run's `RunMetrics`, to the views (`anvil_cli.snapshot.build.build_snapshot`
through `snapshot.monitor.RunMonitor`). Views never reach into a driver; a driver never formats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from anvil_cli.policy.governor.view import GovernorView

Phase = Literal["running", "paused", "stopping", "finished", "stopped"]
Mode = Literal["messages", "batches"]


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One worker as its backend knows it (`node`: the host it runs on, for remote backends)."""

    id: int
    pid: int | None
    alive: bool
    jobs: int
    node: str | None = None
    waiting: bool = False  # not placed yet: a cluster has no free resources for it (not alive)


@dataclass(frozen=True, slots=True)
class BatchesInfo:
    """Message Batches mode: the batches of this run by state, and requests still processing."""

    submitted: int = 0
    processing_requests: int = 0
    ended: int = 0


@dataclass(frozen=True, slots=True)
class EngineState:
    """The driver's side of one tick: everything a view may show that metrics do not know."""

    run_id: str
    mode: Mode
    phase: Phase
    paused: bool
    in_flight: int  # jobs held by workers (messages) or inside submitted batches (batches)
    agent_limit: int  # the scaler's current limit (below in_flight while it drains down)
    agent_min: int
    agent_max: int
    queue_depth: int  # the ready queue (jobs read from the journal, not yet dispatched)
    workers: tuple[WorkerInfo, ...] = ()
    worker_restarts: int = 0
    governor: GovernorView = field(default_factory=GovernorView)  # as of this tick
    history: tuple[Mapping[str, Any], ...] = ()  # recent breaker and scaling events, oldest first
    batches: BatchesInfo | None = None
    feedable: int | None = None  # calls the request limits could keep in flight (None: unlimited)

    @property
    def ended(self) -> bool:
        return self.phase in ("finished", "stopped")
