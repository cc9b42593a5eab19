"""Record types shared by the engine and its views: what a job's outcome is, whatever produced
it (a worker, Message Batches, the result cache) and whoever reads it (journal, metrics, cache).
Plain values; this module imports nothing of Anvil's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a worker reports when it is done with a job."""

    seq: int
    succeeded: bool
    model: str
    attempts: int
    output: str | None = None
    stop_reason: str | None = None
    usage: dict[str, Any] | None = None
    cost_usd: float = 0.0
    error: dict[str, Any] | None = None
    attempt_log: list[dict[str, Any]] | None = None
    latency_s: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    cache_key: str | None = None  # set on a fresh success the result cache should keep


