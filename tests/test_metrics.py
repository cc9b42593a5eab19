"""RunMetrics: bounded-memory percentiles, sliding windows, call latency apart from job time; a fake
clock only."""

from __future__ import annotations

import random
from typing import Any

import pytest

from anvil_cli.engine.attempts import Attempt
from anvil_cli.engine.outcomes import JobError, JobResult, Usage
from anvil_cli.snapshot.histograms import LogHistogram, WindowedHistogram, percentile
from anvil_cli.snapshot.metrics import (
    ERROR_WINDOW_S,
    ETA_WINDOW_S,
    PROM_BOUNDS_S,
    THROUGHPUT_WINDOW_S,
    RunMetrics,
)

HAIKU = "claude-haiku-4-5"
SONNET = "claude-sonnet-4-6"


def result(seq: int, *, ok: bool = True, model: str = HAIKU, latency_s: float = 1.0, **kw: Any) -> JobResult:
    fields: dict[str, Any] = {
        "attempts": 1,
        "usage": Usage(input_tokens=100, output_tokens=20),
        "cost_usd": 0.001,
        "attempt_log": (Attempt(1, model, 200),),
        "error": None if ok else JobError("invalid_request_error", "bad", 400),
    }
    fields.update(kw)
    return JobResult(seq=seq, succeeded=ok, model=model, latency_s=latency_s, **fields)


@pytest.mark.parametrize("dist", ["lognormal", "uniform", "exponential", "bimodal"])
def test_histogram_percentiles_are_within_one_percent_of_exact_on_100k(dist: str) -> None:
    rnd = random.Random(dist)
    draw = {
        "lognormal": lambda: rnd.lognormvariate(0.0, 1.0),
        "uniform": lambda: rnd.uniform(0.05, 60.0),
        "exponential": lambda: rnd.expovariate(2.0),
        "bimodal": lambda: rnd.choice([rnd.gauss(0.4, 0.05), rnd.gauss(20.0, 2.0)]),
    }[dist]
    values = [max(0.001, draw()) for _ in range(100_000)]
    hist = LogHistogram()
    for v in values:
        hist.add(v)
    exact = sorted(values)
    for pct in (1, 50, 90, 95, 99, 99.9):
        want = percentile(exact, pct)
        got = hist.percentile(pct)
        assert want is not None and got is not None
        assert abs(got - want) / want <= 0.01, (pct, want, got)
    assert hist.count == 100_000
    assert hist.buckets_used < 2_000  # memory does not grow with the number of values


def test_histogram_edges() -> None:
    hist = LogHistogram()
    assert hist.percentile(50) is None
    assert hist.percentiles() == {"p50": None, "p95": None, "p99": None}
    for v in (0.0, -1.0, 2.5):
        hist.add(v)
    assert hist.percentile(1) == 0.0
    assert hist.percentile(100) == pytest.approx(2.5, rel=0.005)
    single = LogHistogram()
    single.add(3.0)
    assert single.percentiles() == {"p50": 3.0, "p95": 3.0, "p99": 3.0}  # clamped to what was seen


def test_windowed_histogram_forgets_old_values() -> None:
    recent = WindowedHistogram(span_s=30.0, slot_s=0.1)
    recent.add(100.0, now=0.0)
    recent.add(1.0, now=29.0)
    assert recent.window(29.0, 30.0).count == 2
    assert recent.window(30.05, 30.0).count == 2  # the older edge is exact to one 0.1 s slot
    assert recent.window(30.15, 30.0).count == 1
    assert recent.window(29.0, 10.0).count == 1
    assert recent.window(100.0, 30.0).count == 0 and recent.slots_used == 0


def test_summary_keeps_its_keys_and_adds_call_latency_and_job_time() -> None:
    m = RunMetrics(total=4, started_at=0.0, already_done=1)
    m.on_result(result(0, latency_s=1.0), 1.0)
    m.on_result(result(1, model=SONNET, latency_s=3.0), 2.0)
    m.on_result(result(2, ok=False, latency_s=None, attempts=1, cost_usd=0.0), 3.0)
    s = m.summary(4.0)
    for key in (
        "total", "done", "succeeded", "failed", "duration_s", "jobs_per_s", "recent_jobs_per_s",
        "recent_requests_per_min", "latency_s", "attempts", "retries", "rate_limited",
        "errors_by_type", "failures_by_type", "tokens", "cost_usd",
        "call_latency_s", "call_latency_by_model_s", "job_time_s", "job_time_by_model_s",
        "api_calls", "retries_by_type",
    ):  # fmt: skip
        assert key in s, key
    assert (s["total"], s["done"], s["succeeded"], s["failed"]) == (4, 4, 2, 1)
    assert s["job_time_s"]["p50"] == s["latency_s"]["p50"] == pytest.approx(1.0, rel=0.01)
    assert set(s["latency_s"]) == {"p50", "p95", "p99"}  # its old shape, for existing readers
    assert s["job_time_by_model_s"][SONNET]["p50"] == pytest.approx(3.0, rel=0.01)
    assert s["latency_by_model_s"] == s["job_time_by_model_s"]
    assert s["job_time_by_model_s"][HAIKU]["count"] == 1
    assert s["failures_by_type"] == {"invalid_request_error": 1}
    assert m.last_failures[-1]["type"] == "invalid_request_error" and m.last_failures[-1]["seq"] == 2


def test_call_latency_is_each_call_timed_once_and_not_the_job_time() -> None:
    m = RunMetrics(total=3, started_at=0.0)
    failed = Attempt(1, HAIKU, 529, latency_s=2.0, error_type="overloaded_error")
    m.on_attempt(failed, 1.0)  # reported as it happens...
    log = (failed, Attempt(2, HAIKU, 200, latency_s=0.5))
    m.on_result(result(0, attempts=2, attempt_log=log, latency_s=30.0), 2.0)  # ...and not again here
    cached = (Attempt(0, HAIKU, 200, latency_s=0.0, cache_hit=True),)
    m.on_result(result(1, attempts=0, attempt_log=cached, latency_s=0.01), 2.0)  # no call at all
    batch = (Attempt(1, HAIKU, 200, batch=True),)
    m.on_result(result(2, attempt_log=batch, latency_s=3600.0), 3.0)  # Message Batches: not timed per call
    assert m.call_latency.count == 2 and m.call_latency.max == pytest.approx(2.0)
    assert m.call_latency_by_model[HAIKU].count == 2
    assert m.job_time.count == 3 and m.job_time.max == pytest.approx(3600.0)
    assert m.rates(3.0)["recent_call_p95_s"] == pytest.approx(2.0, rel=0.01)
    assert m.api_calls == 3  # 1 failed + 1 answered + 1 batch request; a cache hit is no call
    assert m.retries_by_type == {"overloaded_error": 1}


def test_retries_by_type_count_failed_calls_followed_by_another() -> None:
    m = RunMetrics(total=2, started_at=0.0)
    log = (
        Attempt(1, HAIKU, 429, error_type="rate_limit_error"),
        Attempt(2, HAIKU, 529, error_type="overloaded_error"),
        Attempt(3, HAIKU, 529, error_type="overloaded_error"),
    )
    m.on_result(result(0, ok=False, attempts=3, attempt_log=log), 1.0)  # the last failure was not retried
    m.on_result(result(1, attempts=3, attempt_log=(*log[:2], Attempt(3, HAIKU, 200))), 1.0)
    assert m.retried_attempts == 4
    assert m.retries_by_type == {"rate_limit_error": 2, "overloaded_error": 2}


@pytest.mark.parametrize(
    ("now", "seconds", "rate"),
    [
        (0.5, 0, 0.0),  # nothing to judge yet
        (3.5, 1, 2.0),  # the later half of the run, whole seconds only: second 2
        (8.9, 4, 2.0),  # seconds 4-7; the burst of second 0 is out of the window
        (41.2, ETA_WINDOW_S, 0.0),  # at most the last ETA_WINDOW_S; the last job finished at 30.5
    ],
)
def test_completion_rate_leaves_the_start_up_burst_out(now: float, seconds: int, rate: float) -> None:
    m = RunMetrics(total=1000, started_at=0.0)
    for i in range(40):  # a burst at the start
        m.on_result(result(i), 0.5)
    for i in range(60):  # then 2 a second until t=30
        m.on_result(result(100 + i), 1.0 + i * 0.5)
    assert m.completion_rate(now) == (pytest.approx(rate), seconds)


def test_cumulative_buckets_match_exact_counts_within_one_percent() -> None:
    rnd = random.Random(7)
    values = [rnd.lognormvariate(0.0, 1.5) for _ in range(20_000)]
    hist = LogHistogram()
    for v in values:
        hist.add(v)
    got = hist.cumulative(PROM_BOUNDS_S)
    for bound, n in zip(PROM_BOUNDS_S, got, strict=True):
        near = sum(1 for v in values if abs(v - bound) <= bound * 0.01)  # may fall either side
        exact = sum(1 for v in values if v <= bound)
        assert abs(n - exact) <= near, (bound, n, exact)
    assert got == sorted(got) and got[-1] <= hist.count


def test_attempt_events_count_errors_and_429s_but_not_successes() -> None:
    m = RunMetrics(total=1, started_at=0.0)
    m.on_attempt(Attempt(1, HAIKU, 200), 1.0)
    m.on_attempt(Attempt(1, HAIKU, 429, error_type="rate_limit_error"), 1.0)
    m.on_attempt(Attempt(2, HAIKU, 529, error_type="overloaded_error"), 2.0)
    m.on_result(
        result(
            0,
            attempts=3,
            attempt_log=(Attempt(1, HAIKU, 429), Attempt(2, HAIKU, 529), Attempt(3, HAIKU, 200)),
        ),
        3.0,
    )
    s = m.summary(4.0)
    assert s["rate_limited"] == 1 and s["retries"] == 2 and s["attempts"] == 3
    assert s["errors_by_type"] == {"rate_limit_error": 1, "overloaded_error": 1}
    rates = m.rates(4.0)
    assert rates["attempts"] == 3 and rates["failed_attempts"] == 2  # 2 failed + 1 ok call
    assert rates["error_rate_pct"] == pytest.approx(200 / 3, rel=1e-3)


def test_sliding_windows_with_a_fake_clock() -> None:
    m = RunMetrics(total=10_000, started_at=0.0)
    for i in range(600):  # 10 jobs/s for 60 s, each costing $0.001
        m.on_result(result(i), i / 10.0)
    rates = m.rates(60.0)
    assert rates["jobs_per_s"] == pytest.approx(10.0, rel=0.05)
    assert rates["requests_per_min"] == pytest.approx(600.0, rel=0.05)
    assert rates["cost_per_hour_usd"] == pytest.approx(36.0, rel=0.05)
    assert rates["per_model"][HAIKU]["output_tokens_per_min"] == pytest.approx(12_000, rel=0.05)
    later = m.rates(60.0 + max(THROUGHPUT_WINDOW_S, ERROR_WINDOW_S) + 2)
    assert later["jobs_per_s"] == 0.0 and later["attempts"] == 0 and later["cost_per_hour_usd"] == 0.0
    assert later["average_cost_per_hour_usd"] > 0  # the session average does not forget


def test_a_100k_job_run_stays_in_bounded_memory() -> None:
    m = RunMetrics(total=100_000, started_at=0.0)
    rnd = random.Random(5)
    models = [HAIKU, SONNET, "claude-opus-4-8"]
    for i in range(100_000):
        m.on_result(result(i, model=models[i % 3], latency_s=rnd.lognormvariate(0, 0.8)), i / 100.0)
    assert len(m.window._slots) <= ERROR_WINDOW_S + 2
    assert m.job_time.buckets_used < 2_000
    assert all(h.buckets_used < 2_000 for h in m.job_time_by_model.values())
    assert m.summary(1000.0)["done"] == 100_000
