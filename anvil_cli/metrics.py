"""Run metrics, computed once from the event stream; every view reads these numbers.

Two times are kept apart, because they answer different questions:

* **API call latency** (`call_latency`): request to answer of one API call, as the worker timed
  it (each attempt's `latency_s`, failed calls included). This is the "response time" of the
  API: what the p95 alert watches and what the scaler feeds to Little's law.
* **Job time** (`job_time`): a job from its start in the worker to its result, so it also counts
  waits for the rate limiter, retry back-off and tool turns. On a rate-bound run it is much longer
  than any call, and says how long a job takes, not how fast the API answers.

Memory is bounded whatever the run's size: times go into log-bucketed histograms (buckets 1%
wide, so every percentile is within 0.5% of the exact one), and the sliding-window rates are
kept in one-second buckets over the last `ERROR_WINDOW_S`. Time is always passed in (`now`,
monotonic seconds); nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Final

from anvil_cli.forecast import RunningCost
from anvil_cli.records import JobResult, failed_tool_calls

THROUGHPUT_WINDOW_S: Final = 30.0  # "recent" rates: jobs/s, requests/min, cost/hour, recent p95
ERROR_WINDOW_S: Final = 60.0  # the error rate is over the last minute
ETA_WINDOW_S: Final = 10  # the ETA's completion rate: whole seconds, at most the later half of the run
# upper bounds (seconds) of the Prometheus histograms exported from the log histograms
PROM_BOUNDS_S: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_HIST_GROWTH: Final = 1.01  # relative width of one histogram bucket
_HIST_FLOOR_S: Final = 1e-6  # values at or below this share bucket "zero"


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Exact percentile (nearest rank) of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, round(pct / 100.0 * len(sorted_values) + 0.5 - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class LogHistogram:
    """Counts of values in geometric buckets 1% wide: percentiles within 0.5%, memory O(log range)."""

    __slots__ = ("_buckets", "count", "max", "min", "total")

    _LOG_GROWTH: Final = math.log(_HIST_GROWTH)

    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        """Record one value (negative values count as zero)."""
        value = max(0.0, value)
        if value <= _HIST_FLOOR_S:
            index = -1
        else:
            index = math.floor(math.log(value / _HIST_FLOOR_S) / self._LOG_GROWTH)
        self._buckets[index] += 1
        self.count += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def _value_of(self, index: int) -> float:
        """The geometric middle of bucket `index`, kept within the values actually seen."""
        if index < 0:
            return self.min
        middle: float = _HIST_FLOOR_S * _HIST_GROWTH ** (index + 0.5)
        return min(self.max, max(self.min, middle))

    def percentile(self, pct: float) -> float | None:
        """Nearest-rank percentile, like `percentile()` on the sorted values (within 0.5%)."""
        if self.count == 0:
            return None
        rank = min(self.count, max(1, round(pct / 100.0 * self.count + 0.5 - 1e-9)))
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                return self._value_of(index)
        return self.max  # pragma: no cover - the counts always add up to `count`

    def percentiles(self, digits: int = 6) -> dict[str, float | None]:
        """p50, p95 and p99, rounded."""
        out: dict[str, float | None] = {}
        for name, pct in (("p50", 50.0), ("p95", 95.0), ("p99", 99.0)):
            value = self.percentile(pct)
            out[name] = None if value is None else round(value, digits)
        return out

    def cumulative(self, bounds: tuple[float, ...]) -> list[int]:
        """How many values are at most each of `bounds` (ascending): a Prometheus histogram's
        buckets. A value within 1% of a bound may fall on either side of it (its bucket's
        middle decides, as for percentiles)."""
        out = [0] * len(bounds)
        for index, n in self._buckets.items():
            value = self._value_of(index)
            for i, bound in enumerate(bounds):
                if value <= bound:
                    out[i] += n
        return out

    @property
    def buckets_used(self) -> int:
        return len(self._buckets)

    def merge(self, other: LogHistogram) -> None:
        """Add every value counted in `other`."""
        self._buckets.update(other._buckets)
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)


class RecentHistogram:
    """Values of roughly the last one to two `window_s`: two histograms, rotated every window."""

    def __init__(self, window_s: float = THROUGHPUT_WINDOW_S) -> None:
        self.window_s = window_s
        self._epochs: dict[int, LogHistogram] = {}

    def _rotate(self, now: float) -> int:
        epoch = int(now // self.window_s)
        for old in [e for e in self._epochs if e < epoch - 1]:
            del self._epochs[old]
        return epoch

    def add(self, value: float, now: float) -> None:
        epoch = self._rotate(now)
        self._epochs.setdefault(epoch, LogHistogram()).add(value)

    def merged(self, now: float) -> LogHistogram:
        self._rotate(now)
        out = LogHistogram()
        for hist in self._epochs.values():
            out.merge(hist)
        return out


class RollingCounters:
    """Named sums in one-second buckets over the last `span_s`: cheap sliding-window rates."""

    def __init__(self, span_s: float = ERROR_WINDOW_S) -> None:
        self.span_s = span_s
        self._slots: deque[tuple[int, Counter[str]]] = deque()

    def add(self, now: float, amounts: dict[str, float]) -> None:
        second = int(now)
        if not self._slots or self._slots[-1][0] != second:
            self._slots.append((second, Counter()))
        self._slots[-1][1].update(amounts)
        self._trim(now)

    def _trim(self, now: float) -> None:
        oldest = int(now - self.span_s)
        while self._slots and self._slots[0][0] < oldest:
            self._slots.popleft()

    def per_second(self, name: str, now: float, seconds: int) -> float:
        """`name`'s mean per second over the last `seconds` whole seconds before the current
        (still filling) one."""
        self._trim(now)
        if seconds <= 0:
            return 0.0
        newest = int(now)
        oldest = newest - seconds
        total = sum(amounts[name] for second, amounts in self._slots if oldest <= second < newest)
        return total / seconds

    def sums(self, now: float, window_s: float) -> Counter[str]:
        """Totals of every name over the last `window_s` seconds (whole seconds)."""
        self._trim(now)
        oldest = int(now - window_s)
        total: Counter[str] = Counter()
        for second, amounts in self._slots:
            if second >= oldest:
                total.update(amounts)
        return total


def _summary_of(hist: LogHistogram) -> dict[str, Any]:
    return {"count": hist.count, **hist.percentiles()}


def _by_model(hists: dict[str, LogHistogram]) -> dict[str, dict[str, Any]]:
    return {model: _summary_of(hist) for model, hist in sorted(hists.items())}


@dataclass
class RunMetrics:
    """Counters, time distributions and sliding-window rates of one run."""

    total: int
    started_at: float
    already_done: int = 0  # finished before this process started (resume)
    already_failed: int = 0  # of those, how many failed
    cost_before_usd: float = 0.0  # spent before this process started (resume)
    succeeded: int = 0
    failed: int = 0
    attempts: int = 0  # API calls of the jobs finished (failed calls included)
    ok_calls: int = 0  # API calls answered, of the jobs finished
    retried_attempts: int = 0
    failed_attempts: int = 0  # failed API calls, counted as they happen
    last_error: dict[str, Any] | None = None  # the latest failed call, for a user to see why
    rate_limited: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    errors_by_type: Counter[str] = field(default_factory=Counter)
    retries_by_type: Counter[str] = field(default_factory=Counter)
    final_errors_by_type: Counter[str] = field(default_factory=Counter)
    call_latency: LogHistogram = field(default_factory=LogHistogram)
    call_latency_by_model: dict[str, LogHistogram] = field(default_factory=dict)
    recent_call_latency: RecentHistogram = field(default_factory=RecentHistogram)
    job_time: LogHistogram = field(default_factory=LogHistogram)
    job_time_by_model: dict[str, LogHistogram] = field(default_factory=dict)
    window: RollingCounters = field(default_factory=RollingCounters)
    last_failures: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=5))
    job_cost: RunningCost = field(default_factory=RunningCost)  # per job paid for: the live forecast
    tool_errors: int = 0  # failed tool calls of the jobs finished (records.tool_errors_of)
    tool_errors_by_kind: Counter[str] = field(default_factory=Counter)
    last_tool_error: dict[str, Any] | None = None  # {seq, tool, kind, message}

    def on_attempt(self, info: dict[str, Any], now: float) -> None:
        """A failed API attempt reported while its job is still running (successes are ignored:
        they are counted with the job's result)."""
        if info.get("status_code") == 200:
            return
        etype = str(info.get("error_type") or "error")
        self.errors_by_type[etype] += 1
        self.failed_attempts += 1
        self.last_error = {
            "type": etype,
            "status_code": info.get("status_code"),
            "message": info.get("message"),
        }
        rate_limited = info.get("status_code") == 429
        if rate_limited:
            self.rate_limited += 1
        model = str(info.get("model") or "")
        self._call_time(model, info.get("latency_s"), now)
        self.window.add(now, {"requests": 1, "failed": 1, "429": int(rate_limited), f"requests:{model}": 1})

    def _call_time(self, model: str, latency_s: Any, now: float) -> None:
        """One API call's request-to-answer time (calls without one, e.g. Message Batches, skip)."""
        if not isinstance(latency_s, int | float) or isinstance(latency_s, bool):
            return
        self.call_latency.add(latency_s)
        self.recent_call_latency.add(latency_s, now)
        self.call_latency_by_model.setdefault(model, LogHistogram()).add(latency_s)

    def on_result(self, r: JobResult, now: float) -> None:
        calls = r.attempts
        self.attempts += calls
        log = r.attempt_log or []
        failed = [a for a in log if a.get("status_code") != 200]
        call_s = 0.0
        for a in log:  # failed calls were timed when they were reported; a cache hit is no call
            if a.get("status_code") == 200 and not a.get("cache_hit"):
                self._call_time(str(a.get("model") or r.model), a.get("latency_s"), now)
                call_s += float(a.get("latency_s") or 0.0)
        # a retry is a failed call that was followed by another (tool turns are not retries)
        retried = failed if r.succeeded else failed[:-1]
        self.retried_attempts += len(retried)
        self.retries_by_type.update(str(a.get("error_type") or "error") for a in retried)
        ok_calls = max(0, calls - len(failed))
        self.ok_calls += ok_calls
        if r.succeeded:
            self.succeeded += 1
        else:
            self.failed += 1
            self._on_failure(r, now)
        if r.latency_s is not None:
            self.job_time.add(r.latency_s)
            self.job_time_by_model.setdefault(r.model, LogHistogram()).add(r.latency_s)
        self._on_usage(r, now, ok_calls, call_s)
        self._on_tools(r)

    def _on_tools(self, r: JobResult) -> None:
        """The job's failed tool calls, as its attempt log lists them."""
        for call in failed_tool_calls(r.attempt_log):
            self.tool_errors += 1
            self.tool_errors_by_kind[str(call["kind"])] += 1
            self.last_tool_error = {
                "seq": r.seq,
                "tool": str(call["tool"]),
                "kind": str(call["kind"]),
                "message": str(call["message"] or "")[:300],
            }

    def _on_usage(self, r: JobResult, now: float, ok_calls: int, call_s: float) -> None:
        usage = r.usage or {}
        tokens_in = int(usage.get("input_tokens") or 0)
        tokens_out = int(usage.get("output_tokens") or 0)
        cache_write = int(usage.get("cache_creation_input_tokens") or 0)
        self.input_tokens += tokens_in
        self.output_tokens += tokens_out
        self.cache_read_tokens += int(usage.get("cache_read_input_tokens") or 0)
        self.cache_write_tokens += cache_write
        self.cost_usd += r.cost_usd
        if r.attempts > 0:  # an answer from the result cache forecasts nothing
            self.job_cost.add(r.cost_usd)
        self.window.add(
            now,
            {
                "jobs": 1,
                "requests": ok_calls,
                "call_s": call_s,
                "cost_usd": r.cost_usd,
                f"requests:{r.model}": ok_calls,
                f"input_tokens:{r.model}": tokens_in + cache_write,
                f"output_tokens:{r.model}": tokens_out,
            },
        )

    def _on_failure(self, r: JobResult, now: float) -> None:
        error = r.error or {}
        etype = str(error.get("type", "error"))
        self.final_errors_by_type[etype] += 1
        self.last_failures.append(
            {
                "seq": r.seq,
                "model": r.model,
                "type": etype,
                "status_code": error.get("status_code"),
                "message": str(error.get("message") or "")[:300],
                "at_s": round(now - self.started_at, 3),
            }
        )

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    @property
    def api_calls(self) -> int:
        """API calls made this session: answered ones of finished jobs, and every failed one."""
        return self.ok_calls + self.failed_attempts

    def rates(self, now: float) -> dict[str, Any]:
        """Sliding-window figures: jobs/s, requests/min, error rate, cost/hour, per-model usage/min."""
        elapsed = max(1e-9, now - self.started_at)
        window = min(THROUGHPUT_WINDOW_S, elapsed)
        recent = self.window.sums(now, THROUGHPUT_WINDOW_S)
        minute = self.window.sums(now, ERROR_WINDOW_S)
        per_model: dict[str, dict[str, float]] = {}
        for key, value in recent.items():
            dim, sep, model = key.partition(":")
            if sep and model:
                per_model.setdefault(model, {})[f"{dim}_per_min"] = round(value / window * 60.0, 1)
        calls = minute["requests"]
        return {
            "window_s": round(window, 3),
            "jobs_per_s": round(recent["jobs"] / window, 3),
            "requests_per_min": round(recent["requests"] / window * 60.0, 1),
            "error_window_s": round(min(ERROR_WINDOW_S, elapsed), 3),
            "attempts": int(calls),
            "failed_attempts": int(minute["failed"]),
            "rate_limited": int(minute["429"]),
            "error_rate_pct": round(100.0 * minute["failed"] / calls, 3) if calls else 0.0,
            "cost_per_hour_usd": round(recent["cost_usd"] / window * 3600.0, 6),
            "average_cost_per_hour_usd": round(self.cost_usd / elapsed * 3600.0, 6),
            "recent_call_p95_s": self.recent_call_latency.merged(now).percentiles()["p95"],
            "per_model": per_model,
        }

    def completion_rate(self, now: float) -> tuple[float, int]:
        """(jobs finished per second, over how many seconds): the ETA's rate. Whole seconds only,
        at most `ETA_WINDOW_S` and at most the later half of the session, so the start-up burst
        (a full token bucket, cached answers) has left the window once the run settles."""
        seconds = min(ETA_WINDOW_S, int((now - self.started_at) / 2))
        return self.window.per_second("jobs", now, seconds), seconds

    def call_load(self, now: float) -> tuple[float, float | None]:
        """(successful API calls per second, mean seconds per call) over the recent window:
        what the scaler feeds to Little's law. Call time, not job time: a job's time also
        counts its waits for the governor."""
        window = min(THROUGHPUT_WINDOW_S, max(1e-9, now - self.started_at))
        recent = self.window.sums(now, THROUGHPUT_WINDOW_S)
        calls = recent["requests"]
        return calls / window, (recent["call_s"] / calls if calls else None)

    def summary(self, now: float) -> dict[str, Any]:
        """The figures of `anvil run --json` (and the `metrics` of a snapshot). `latency_s` and
        `latency_by_model_s` are the older names of `job_time_s` and `job_time_by_model_s`."""
        elapsed = max(1e-9, now - self.started_at)
        rates = self.rates(now)
        job_time = self.job_time.percentiles()
        return {
            "total": self.total,
            "done": self.done + self.already_done,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "duration_s": round(elapsed, 3),
            "jobs_per_s": round(self.done / elapsed, 3),
            "recent_jobs_per_s": rates["jobs_per_s"],
            "recent_requests_per_min": rates["requests_per_min"],
            "recent_error_rate_pct": rates["error_rate_pct"],
            "call_latency_s": _summary_of(self.call_latency),
            "call_latency_by_model_s": _by_model(self.call_latency_by_model),
            "job_time_s": _summary_of(self.job_time),
            "job_time_by_model_s": _by_model(self.job_time_by_model),
            "latency_s": job_time,
            "latency_by_model_s": _by_model(self.job_time_by_model),
            "api_calls": self.api_calls,
            "attempts": self.attempts,
            "retries": self.retried_attempts,
            "failed_attempts": self.failed_attempts,
            "rate_limited": self.rate_limited,
            "errors_by_type": dict(self.errors_by_type),
            "retries_by_type": dict(self.retries_by_type),
            "failures_by_type": dict(self.final_errors_by_type),
            "tool_errors": self.tool_errors,
            "tool_errors_by_kind": dict(self.tool_errors_by_kind),
            "tokens": {
                "input": self.input_tokens,
                "output": self.output_tokens,
                "cache_read": self.cache_read_tokens,
                "cache_write": self.cache_write_tokens,
            },
            "cost_usd": round(self.cost_usd, 6),
            "cost_per_hour_usd": rates["cost_per_hour_usd"],
        }
