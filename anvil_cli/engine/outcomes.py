"""Record types shared by the engine and its views: what a job's outcome is, whatever produced
it (a worker, Message Batches, the result cache) and whoever reads it (journal, metrics, cache).
Plain values; this module imports nothing of Anvil's."""

from __future__ import annotations

import time
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
    attempt_log: list[dict[str, Any]] | None = None  # every call, and the tools each asked for
    latency_s: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    cache_key: str | None = None  # set on a fresh success the result cache should keep

    @classmethod
    def failed_now(cls, seq: int, model: str, error_type: str, message: str) -> JobResult:
        """A job failed for good without a call (e.g. its worker died under it too often)."""
        now = time.time()
        error = {"type": error_type, "message": message, "status_code": None}
        return cls(seq, False, model, 0, error=error, started_at=now, finished_at=now)


def failed_tool_calls(attempt_log: Any) -> list[dict[str, Any]]:
    """The failed tool calls of a job's attempt log, in order, each {tool, kind, message}. The
    tool calls an answer asked for are listed under its entry's `tools`: `{"tool": name,
    "output": head}`, or `{"tool": name, "error": kind, "message": ...}` for a failed one. The
    attempt log is where a job's tool errors are kept; every count of them is derived from it."""
    out: list[dict[str, Any]] = []
    for entry in attempt_log if isinstance(attempt_log, list) else ():
        calls = entry.get("tools") if isinstance(entry, dict) else None
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict) and call.get("error"):
                out.append({"tool": call.get("tool"), "kind": call["error"], "message": call.get("message")})
    return out


def tool_errors_of(attempt_log: Any) -> tuple[int, dict[str, Any] | None]:
    """(how many tool calls failed, the last failure) of a job's attempt log."""
    failed = failed_tool_calls(attempt_log)
    return len(failed), (failed[-1] if failed else None)
