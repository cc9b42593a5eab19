"""RunMetrics: bounded-memory percentiles, sliding windows, per-model latency; a fake clock only."""

from __future__ import annotations

import random
from typing import Any

import pytest

from anvil_cli.engine.journal import JobResult
from anvil_cli.metrics import (
    ERROR_WINDOW_S,
    THROUGHPUT_WINDOW_S,
    LogHistogram,
    RecentHistogram,
    RunMetrics,
    percentile,
)

HAIKU = "claude-haiku-4-5"
SONNET = "claude-sonnet-4-6"


def result(seq: int, *, ok: bool = True, model: str = HAIKU, latency_s: float = 1.0, **kw: Any) -> JobResult:
    fields: dict[str, Any] = {
        "attempts": 1,
        "usage": {"input_tokens": 100, "output_tokens": 20},
        "cost_usd": 0.001,
        "attempt_log": [{"status_code": 200}],
        "error": None if ok else {"type": "invalid_request_error", "message": "bad", "status_code": 400},
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


def test_recent_histogram_forgets_old_values() -> None:
    recent = RecentHistogram(window_s=30.0)
    recent.add(100.0, now=0.0)
    recent.add(1.0, now=31.0)
    assert recent.merged(31.0).count == 2  # the previous window still counts
    assert recent.merged(61.0).count == 1
    assert recent.merged(100.0).count == 0


def test_summary_keeps_its_keys_and_adds_per_model_latency() -> None:
    m = RunMetrics(total=4, started_at=0.0, already_done=1)
    m.on_result(result(0, latency_s=1.0), 1.0)
    m.on_result(result(1, model=SONNET, latency_s=3.0), 2.0)
    m.on_result(result(2, ok=False, latency_s=None, attempts=1, cost_usd=0.0), 3.0)
    s = m.summary(4.0)
    for key in (
        "total", "done", "succeeded", "failed", "duration_s", "jobs_per_s", "recent_jobs_per_s",
        "recent_requests_per_min", "latency_s", "attempts", "retries", "rate_limited",
        "errors_by_type", "failures_by_type", "tokens", "cost_usd",
    ):  # fmt: skip
        assert key in s, key
    assert (s["total"], s["done"], s["succeeded"], s["failed"]) == (4, 4, 2, 1)
    assert s["latency_s"]["p50"] == pytest.approx(1.0, rel=0.01)
    assert s["latency_by_model_s"][SONNET]["p50"] == pytest.approx(3.0, rel=0.01)
    assert s["latency_by_model_s"][HAIKU]["count"] == 1
    assert s["failures_by_type"] == {"invalid_request_error": 1}
    assert m.last_failures[-1]["type"] == "invalid_request_error" and m.last_failures[-1]["seq"] == 2


def test_attempt_events_count_errors_and_429s_but_not_successes() -> None:
    m = RunMetrics(total=1, started_at=0.0)
    m.on_attempt({"seq": 0, "model": HAIKU, "status_code": 200}, 1.0)
    m.on_attempt({"seq": 0, "model": HAIKU, "status_code": 429, "error_type": "rate_limit_error"}, 1.0)
    m.on_attempt({"seq": 0, "model": HAIKU, "status_code": 529, "error_type": "overloaded_error"}, 2.0)
    m.on_result(
        result(
            0,
            attempts=3,
            attempt_log=[{"status_code": 429}, {"status_code": 529}, {"status_code": 200}],
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
    assert m.latency.buckets_used < 2_000
    assert all(h.buckets_used < 2_000 for h in m.latency_by_model.values())
    assert m.summary(1000.0)["done"] == 100_000
