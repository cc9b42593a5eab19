"""Run metrics, computed once from the event stream; every view reads these numbers.

Two times are kept apart, because they answer different questions:

* **API call latency** (`call_latency`): request to answer of one API call, as the worker timed
  it (each attempt's `latency_s`, failed calls included). This is the "response time" of the
  API: what the p95 alert watches and what the scaler feeds to Little's law.
* **Job time** (`job_time`): a job from its start in the worker to its result, so it also counts
  waits for the rate limiter, retry back-off and tool turns. On a rate-bound run it is much longer
  than any call, and says how long a job takes, not how fast the API answers.

Memory is bounded whatever the run's size: times go into log-bucketed histograms (buckets 1%
wide, so every percentile is within 0.5% of the exact one; `anvil_cli.snapshot.histograms`), the recent
call latencies into such histograms per quarter second over the last `THROUGHPUT_WINDOW_S`
(the recent p95 and every chart sample's window are read from them), and the sliding-window
rates are kept in one-second buckets over the last `ERROR_WINDOW_S`. Time is always passed in (`now`,
monotonic seconds); nothing here reads a clock.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Final

from anvil_cli.engine.attempts import Attempt, failed_tool_calls
from anvil_cli.engine.journal.endpoints import EndpointSpend
from anvil_cli.engine.outcomes import JobResult, Usage
from anvil_cli.policy.forecast import RunningCost
from anvil_cli.snapshot.checks import ChecksTally
from anvil_cli.snapshot.histograms import LogHistogram, WindowedHistogram, summaries
from anvil_cli.snapshot.histograms import (
    percentile as percentile,  # where it was first: older imports still work
)
from anvil_cli.snapshot.types import CallLatencyWindow, TimeSummary

THROUGHPUT_WINDOW_S: Final = 30.0  # "recent" rates: jobs/s, requests/min, cost/hour, recent p95
ERROR_WINDOW_S: Final = 60.0  # the error rate is over the last minute
ETA_WINDOW_S: Final = 10  # the ETA's completion rate: whole seconds, at most the later half of the run
SERIES_WINDOW_S: Final = 10.0  # the calls a chart sample's latency percentiles are taken over
_RECENT_SPAN_S: Final = max(THROUGHPUT_WINDOW_S, SERIES_WINDOW_S)  # the longest latency window kept
# upper bounds (seconds) of the Prometheus histograms exported from the log histograms
PROM_BOUNDS_S: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class RollingCounters:
    """Named sums in one-second buckets over the last `span_s`: cheap sliding-window rates."""

    def __init__(self, span_s: float = ERROR_WINDOW_S) -> None:
        self.span_s = span_s
        self._slots: deque[tuple[int, Counter[str]]] = deque()

    def add(self, now: float, amounts: dict[str, float]) -> None:
        second = int(now)
        if not self._slots or self._slots[-1][0] != second:
            self._slots.append((second, Counter()))
        slot = self._slots[-1][1]
        for name, amount in amounts.items():  # Counter.update's sum, without its Mapping check
            slot[name] = slot.get(name, 0) + amount  # type: ignore[assignment]  # floats too, as ever
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
    recent_call_latency_by_model: dict[str, WindowedHistogram] = field(default_factory=dict)
    _windows_read: dict[tuple[float, float], CallLatencyWindow] = field(  # (now, window_s): this tick's
        default_factory=dict, init=False, repr=False
    )
    job_time: LogHistogram = field(default_factory=LogHistogram)
    job_time_by_model: dict[str, LogHistogram] = field(default_factory=dict)
    window: RollingCounters = field(default_factory=RollingCounters)
    last_failures: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=5))
    job_cost: RunningCost = field(default_factory=RunningCost)  # per job paid for: the live forecast
    tool_errors: int = 0  # failed tool calls of the jobs finished (attempts.tool_errors_of)
    tool_errors_by_kind: Counter[str] = field(default_factory=Counter)
    last_tool_error: dict[str, Any] | None = None  # {seq, tool, kind, message}
    # named endpoints, over the whole run: the journal's figures when the run (re)started
    # (`load_endpoints`), then what this session journals, call by call and result by result
    endpoints: dict[str, EndpointSpend] = field(default_factory=dict)
    endpoints_loaded: bool = False
    # how the answers fared against their checks: this session's results (`on_result`), after
    # what a resumed run's earlier sessions found (`snapshot.checks_journal.tally_of_run`)
    checks: ChecksTally = field(default_factory=ChecksTally)

    def load_endpoints(self, spend: dict[str, EndpointSpend]) -> None:
        """The journal's spend by endpoint before this session's first event."""
        self.endpoints = {name: EndpointSpend(**figures) for name, figures in spend.items()}
        self.endpoints_loaded = True

    def _endpoint(self, name: str) -> EndpointSpend:
        return self.endpoints.setdefault(name, {"cost_usd": 0.0, "calls": 0, "errors": 0, "rate_limited": 0})

    def on_settled(self, endpoint: str, cost_usd: float) -> None:
        """A paid call on a named endpoint (the run's only endpoint, "", is not counted here)."""
        if endpoint:
            figures = self._endpoint(endpoint)
            figures["cost_usd"] += cost_usd
            figures["calls"] += 1

    def _endpoint_errors(self, log: tuple[Attempt, ...]) -> None:
        for a in log:
            if a.endpoint and not a.ok and not a.cache_hit:
                figures = self._endpoint(a.endpoint)
                figures["errors"] += 1
                figures["rate_limited"] += a.status_code == 429

    def on_attempt(self, attempt: Attempt, now: float) -> None:
        """A failed API attempt reported while its job is still running (successes are ignored:
        they are counted with the job's result)."""
        if attempt.ok:
            return
        etype = attempt.error_type or "error"
        self.errors_by_type[etype] += 1
        self.failed_attempts += 1
        self.last_error = {"type": etype, "status_code": attempt.status_code, "message": attempt.message}
        rate_limited = attempt.status_code == 429
        if rate_limited:
            self.rate_limited += 1
        model = attempt.model
        self._call_time(model, attempt.latency_s, now)
        self.window.add(now, {"requests": 1, "failed": 1, "429": int(rate_limited), f"requests:{model}": 1})

    def _call_time(self, model: str, latency_s: float | None, now: float) -> None:
        """One API call's request-to-answer time (calls without one, e.g. Message Batches, skip)."""
        if latency_s is None:
            return
        self.call_latency.add(latency_s)
        recent = self.recent_call_latency_by_model.get(model)
        if recent is None:
            recent = self.recent_call_latency_by_model[model] = WindowedHistogram(_RECENT_SPAN_S)
        recent.add(latency_s, now)
        self._windows_read.clear()
        by_model = self.call_latency_by_model.get(model)
        if by_model is None:
            by_model = self.call_latency_by_model[model] = LogHistogram()
        by_model.add(latency_s)

    def on_result(self, r: JobResult, now: float) -> None:
        calls = r.attempts
        self.attempts += calls
        log = r.attempt_log or ()
        failed = [a for a in log if not a.ok]
        call_s = 0.0
        for a in log:  # failed calls were timed when they were reported; a cache hit is no call
            if a.ok and not a.cache_hit:
                self._call_time(a.model or r.model, a.latency_s, now)
                call_s += a.latency_s or 0.0
        # a retry is a failed call that was followed by another (tool turns are not retries)
        retried = failed if r.succeeded else failed[:-1]
        self.retried_attempts += len(retried)
        if retried:
            self.retries_by_type.update(a.error_type or "error" for a in retried)
        ok_calls = max(0, calls - len(failed))
        self.ok_calls += ok_calls
        if r.succeeded:
            self.succeeded += 1
        else:
            self.failed += 1
            self._on_failure(r, now)
        if r.latency_s is not None:
            self.job_time.add(r.latency_s)
            job_time = self.job_time_by_model.get(r.model)
            if job_time is None:
                job_time = self.job_time_by_model[r.model] = LogHistogram()
            job_time.add(r.latency_s)
        self._on_usage(r, now, ok_calls, call_s)
        self._on_tools(r)
        self._endpoint_errors(log)
        self.checks.add_result(r.succeeded, r.model, r.cost_usd, r.checks)

    def _on_tools(self, r: JobResult) -> None:
        """The job's failed tool calls, as its attempt log lists them."""
        for call in failed_tool_calls(r.attempt_log or ()):
            kind = str(call.error)
            self.tool_errors += 1
            self.tool_errors_by_kind[kind] += 1
            self.last_tool_error = {
                "seq": r.seq,
                "tool": str(call.tool),
                "kind": kind,
                "message": (call.message or "")[:300],
            }

    def _on_usage(self, r: JobResult, now: float, ok_calls: int, call_s: float) -> None:
        usage = r.usage or Usage()
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cache_read_tokens += usage.cache_read_tokens
        self.cache_write_tokens += usage.cache_write_tokens
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
                f"input_tokens:{r.model}": usage.counted_input,
                f"output_tokens:{r.model}": usage.output_tokens,
            },
        )

    def _on_failure(self, r: JobResult, now: float) -> None:
        etype = r.error.type if r.error is not None else "error"
        self.final_errors_by_type[etype] += 1
        self.last_failures.append(
            {
                "seq": r.seq,
                "model": r.model,
                "type": etype,
                "status_code": r.error.status_code if r.error is not None else None,
                "message": (r.error.message if r.error is not None else "")[:300],
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
            "recent_call_p95_s": self.call_latency_window(now, THROUGHPUT_WINDOW_S)["all"]["p95"],
            "per_model": per_model,
        }

    def call_latency_window(self, now: float, window_s: float) -> CallLatencyWindow:
        """API call latency of the calls timed in the last `window_s` (at most 30 s; older edge
        exact to `WINDOW_SLOT_S`), all and by model: the recent p95 and every chart sample. Read
        once per `now` and window until a call is added (a tick reads the 30 s one twice)."""
        known = self._windows_read.get((now, window_s))
        if known is not None:
            return known
        if any(at != now for at, _ in self._windows_read):
            self._windows_read.clear()
        whole = LogHistogram()
        by_model: dict[str, TimeSummary] = {}
        for model, recent in sorted(self.recent_call_latency_by_model.items()):
            hist = recent.window(now, window_s)
            whole.merge(hist)
            if hist.count:
                by_model[model] = hist.summary()
        read: CallLatencyWindow = {"window_s": window_s, "all": whole.summary(), "by_model": by_model}
        self._windows_read[(now, window_s)] = read
        return read

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
            "call_latency_s": self.call_latency.summary(),
            "call_latency_by_model_s": summaries(self.call_latency_by_model),
            "job_time_s": self.job_time.summary(),
            "job_time_by_model_s": summaries(self.job_time_by_model),
            "latency_s": job_time,
            "latency_by_model_s": summaries(self.job_time_by_model),
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
