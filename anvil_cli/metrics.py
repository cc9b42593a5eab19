"""Run metrics, computed once from the event stream; every view reads these numbers."""

from __future__ import annotations

import bisect
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from anvil_cli.engine.journal import JobResult

THROUGHPUT_WINDOW_S = 30.0


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Exact percentile (nearest rank) of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, round(pct / 100.0 * len(sorted_values) + 0.5 - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class RunMetrics:
    """Counters, latency distribution and sliding-window rates of one run."""

    total: int
    started_at: float
    already_done: int = 0  # finished before this process started (resume)
    succeeded: int = 0
    failed: int = 0
    attempts: int = 0
    retried_attempts: int = 0
    rate_limited: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    errors_by_type: Counter[str] = field(default_factory=Counter)
    final_errors_by_type: Counter[str] = field(default_factory=Counter)
    _latencies: list[float] = field(default_factory=list)  # kept sorted
    _recent: deque[tuple[float, int]] = field(default_factory=deque)  # (time, api calls)
    _recent_jobs: deque[float] = field(default_factory=deque)
    last_failures: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=5))

    def on_attempt(self, info: dict[str, Any], now: float) -> None:
        """A failed API attempt reported while its job is still running."""
        etype = str(info.get("error_type") or "error")
        self.errors_by_type[etype] += 1
        if info.get("status_code") == 429:
            self.rate_limited += 1
        self._recent.append((now, 1))

    def on_result(self, r: JobResult, now: float) -> None:
        calls = r.attempts
        self.attempts += calls
        failed_attempts = sum(1 for a in (r.attempt_log or []) if a.get("status_code") != 200)
        self.retried_attempts += max(0, calls - 1)
        ok_calls = calls - failed_attempts
        if ok_calls > 0:
            self._recent.append((now, ok_calls))
        if r.succeeded:
            self.succeeded += 1
        else:
            self.failed += 1
            etype = str((r.error or {}).get("type", "error"))
            self.final_errors_by_type[etype] += 1
            self.last_failures.append({"seq": r.seq, **(r.error or {})})
        if r.latency_s is not None:
            bisect.insort(self._latencies, r.latency_s)
        usage = r.usage or {}
        self.input_tokens += int(usage.get("input_tokens") or 0)
        self.output_tokens += int(usage.get("output_tokens") or 0)
        self.cache_read_tokens += int(usage.get("cache_read_input_tokens") or 0)
        self.cache_write_tokens += int(usage.get("cache_creation_input_tokens") or 0)
        self.cost_usd += r.cost_usd
        self._recent_jobs.append(now)

    def _trim(self, now: float) -> None:
        cutoff = now - THROUGHPUT_WINDOW_S
        while self._recent and self._recent[0][0] < cutoff:
            self._recent.popleft()
        while self._recent_jobs and self._recent_jobs[0] < cutoff:
            self._recent_jobs.popleft()

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    def summary(self, now: float) -> dict[str, Any]:
        self._trim(now)
        elapsed = max(1e-9, now - self.started_at)
        window = min(THROUGHPUT_WINDOW_S, elapsed)
        lat = self._latencies
        return {
            "total": self.total,
            "done": self.done + self.already_done,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "duration_s": round(elapsed, 3),
            "jobs_per_s": round(self.done / elapsed, 3),
            "recent_jobs_per_s": round(len(self._recent_jobs) / window, 3),
            "recent_requests_per_min": round(sum(n for _, n in self._recent) / window * 60.0, 1),
            "latency_s": {
                "p50": percentile(lat, 50),
                "p95": percentile(lat, 95),
                "p99": percentile(lat, 99),
            },
            "attempts": self.attempts,
            "retries": self.retried_attempts,
            "rate_limited": self.rate_limited,
            "errors_by_type": dict(self.errors_by_type),
            "failures_by_type": dict(self.final_errors_by_type),
            "tokens": {
                "input": self.input_tokens,
                "output": self.output_tokens,
                "cache_read": self.cache_read_tokens,
                "cache_write": self.cache_write_tokens,
            },
            "cost_usd": round(self.cost_usd, 6),
        }
