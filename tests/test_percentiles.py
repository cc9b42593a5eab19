"""Windowed latency percentiles (`anvil_cli.snapshot.histograms.WindowedHistogram`, read through
`RunMetrics.call_latency_window` by the chart samples and the recent p95): exact to 0.5% of the
nearest rank of the window's own calls, windows edged to one slot, memory bounded. A fake clock
throughout; the samples are the real Ticker's, journaled and read back by the real report."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from anvil_cli.config.settings import Settings
from anvil_cli.engine.attempts import Attempt
from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.ticker import Ticker
from anvil_cli.jobs.loader import load_batch
from anvil_cli.snapshot.histograms import WINDOW_SLOT_S, LogHistogram, WindowedHistogram
from anvil_cli.snapshot.metrics import SERIES_WINDOW_S, THROUGHPUT_WINDOW_S, RunMetrics
from anvil_cli.snapshot.series import Sampler
from anvil_cli.views.dashboard import QuietReporter, RunMonitor
from anvil_cli.views.report import report_data
from tests.engine_support import write_jsonl_batch
from tests.snapshot_support import HAIKU, SONNET, T0, engine_state, feed, job, snapshot

PCTS = (("p50", 50.0), ("p95", 95.0), ("p99", 99.0))


def nearest_rank(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100.0 * len(ordered) - 1e-9)) - 1]


def in_window(t: float, now: float, window_s: float) -> bool:
    """Whether a call timed at `t` is in the window of `window_s` before `now`, as documented:
    (now - window_s, now], its older edge widened to the start of the slot holding it."""
    return math.floor((now - window_s) / WINDOW_SLOT_S) <= math.floor(t / WINDOW_SLOT_S) and t <= now


def assert_exact(shown: dict[str, object], values: list[float], rel: float = 0.005) -> None:
    assert shown["count"] == len(values)
    for key, pct in PCTS:
        assert shown[key] == pytest.approx(nearest_rank(values, pct), rel=rel), key


def test_a_window_holds_the_values_of_its_last_seconds_to_one_slot() -> None:
    w = WindowedHistogram(span_s=30.0, slot_s=0.1)
    for i in range(300):  # one value in the middle of each 0.1 s slot from t=0 to 30, value i
        w.add(float(i), now=i / 10 + 0.05)
    last10 = w.window(30.0, 10.0)  # the values of (20.0, 30.0]
    assert (last10.count, last10.min, last10.max) == (100, 200.0, 299.0)
    edge = w.window(30.02, 10.0)  # (20.02, 30.02]: the older edge is the slot holding 20.02
    assert (edge.count, edge.min) == (100, 200.0)
    assert w.window(30.0, 60.0).count == 300  # at most the span kept
    assert w.window(40.0, 10.0).count == 0 and w.slots_used == 200  # older than 30 s: forgotten
    assert w.window(100.0, 10.0).count == 0 and w.slots_used == 0


def test_merged_slots_read_as_one_histogram_of_the_same_values() -> None:
    rnd = random.Random(4)
    w, whole, values = WindowedHistogram(span_s=30.0), LogHistogram(), []
    for i in range(5_000):
        v = rnd.lognormvariate(-1.0, 0.8)
        w.add(v, now=i * 0.005)  # 25 s of values
        whole.add(v)
        values.append(v)
    merged = w.window(25.0, 30.0)
    assert merged.percentiles() == whole.percentiles() and merged.count == whole.count == 5_000
    assert_exact(merged.summary(), values)


@pytest.mark.parametrize("dist", ["lognormal", "bimodal", "uniform"])
def test_a_window_is_within_half_a_percent_of_the_exact_figures_of_its_own_calls(dist: str) -> None:
    rnd = random.Random(dist)
    draw = {
        "lognormal": lambda: rnd.lognormvariate(-0.5, 1.0),
        "bimodal": lambda: rnd.choice([rnd.gauss(0.3, 0.03), rnd.gauss(4.0, 0.4)]),
        "uniform": lambda: rnd.uniform(0.01, 2.0),
    }[dist]
    m = RunMetrics(total=100_000, started_at=T0)
    timed: list[tuple[float, str, float]] = []
    for i in range(6_000):  # 200 calls a second for 30 s, two models
        now, model, v = T0 + i / 200, (HAIKU, SONNET)[i % 3 == 0], max(0.001, draw())
        feed(m, job(i, model, call_s=v), now)
        timed.append((now, model, v))
    now = T0 + 30.0
    window = m.call_latency_window(now, SERIES_WINDOW_S)
    inside = [(model, v) for t, model, v in timed if in_window(t, now, SERIES_WINDOW_S)]
    assert_exact(window["all"], [v for _, v in inside])
    for model in (HAIKU, SONNET):
        assert_exact(window["by_model"][model], [v for mm, v in inside if mm == model])
    recent = [v for t, _, v in timed if in_window(t, now, THROUGHPUT_WINDOW_S)]
    assert m.rates(now)["recent_call_p95_s"] == pytest.approx(nearest_rank(recent, 95), rel=0.005)


def test_half_under_half_a_second_no_longer_reads_exactly_050_095_099() -> None:
    """What the old coarse buckets (0.25, 0.5, 1.0 ...) did: half the calls at most 0.5 s, the rest
    at most 1 s, interpolated linearly, gave p50/p95/p99 0.50/0.95/0.99 whatever the calls were."""
    m = RunMetrics(total=1_000, started_at=T0)
    values = [0.30 + 0.002 * (i % 50) if i % 2 else 0.55 + 0.003 * (i % 50) for i in range(200)]
    for i, v in enumerate(values):
        feed(m, job(i, call_s=v), T0 + i / 40)  # 5 s of calls
    sample = Sampler().take(snapshot(m, now=T0 + 5.0), m, T0 + 5.0)
    assert sample is not None
    assert_exact(dict(sample["latency_s"]), values)
    # simulated call latencies fed in, not time measured: the old interpolation read 0.95, 0.99
    assert sample["latency_s"]["p95"] < 0.7  # clock-ok: a fed-in latency, not a measured time
    assert sample["latency_s"]["p99"] < 0.7  # clock-ok: a fed-in latency, not a measured time


def test_failed_calls_count_in_the_window_when_they_happen() -> None:
    m = RunMetrics(total=10, started_at=T0)
    m.on_attempt(Attempt(1, HAIKU, 529, latency_s=9.0), T0 + 1.0)
    assert m.call_latency_window(T0 + 5.0, 10.0)["all"]["p50"] == pytest.approx(9.0)
    later = m.call_latency_window(T0 + 12.0, 10.0)
    assert later["all"] == {"count": 0, "p50": None, "p95": None, "p99": None} and later["by_model"] == {}


def test_a_window_read_twice_in_a_tick_sees_a_call_added_between() -> None:
    m = RunMetrics(total=10, started_at=T0)
    feed(m, job(0, call_s=0.5), T0 + 1.0)
    assert m.call_latency_window(T0 + 2.0, 30.0)["all"]["count"] == 1
    assert m.call_latency_window(T0 + 2.0, 10.0)["all"]["count"] == 1
    feed(m, job(1, call_s=2.0), T0 + 2.0)
    assert m.call_latency_window(T0 + 2.0, 30.0)["all"] == {"count": 2, "p50": 0.5, "p95": 2.0, "p99": 2.0}
    assert m.rates(T0 + 2.0)["recent_call_p95_s"] == 2.0


def test_memory_stays_bounded_on_a_long_fast_run() -> None:
    """An hour at 1,000 calls a second (fake clock): the slots kept are the last 30 s, the
    buckets those of the values' range, whatever the number of calls."""
    rnd = random.Random(1)
    m = RunMetrics(total=10**7, started_at=T0)
    most_slots = 0
    for second in range(0, 3_600, 60):  # the first second of each minute: 500 calls
        for i in range(500):
            v, at = rnd.lognormvariate(-1.0, 1.0), T0 + second + i / 500
            m.on_attempt(Attempt(1, HAIKU, 529, latency_s=v), at)
            most_slots = max(most_slots, m.recent_call_latency_by_model[HAIKU].slots_used)
    assert most_slots <= THROUGHPUT_WINDOW_S / WINDOW_SLOT_S + 1
    assert m.call_latency.count == 30_000 and m.call_latency.buckets_used < 2_000


def test_the_tickers_samples_are_the_windows_of_the_calls_and_old_samples_still_read(tmp_path: Path) -> None:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a"])
    journal = Journal.open(tmp_path / ".anvil")
    run_id = journal.create_run(str(batch), "sha", load_batch(batch))
    old = json.loads(OLD_SAMPLE)
    journal.add_sample(run_id, old)  # as an Anvil before this one journaled it
    wall0 = old["t"] + 100
    monitor = RunMonitor(Settings(), QuietReporter(), batch_path=str(batch), wall_clock=lambda: wall0)
    ticker, m = Ticker(journal, run_id, monitor), RunMetrics(total=1_000, started_at=T0)
    timed: list[tuple[float, float]] = []
    ticks: list[float] = []
    for i in range(400):  # 20 calls a second for 20 s, slower and slower, ticked each second
        now, v = T0 + i / 20 + 0.025, 0.1 * (1 + i % 7) * (1 + i / 100)
        feed(m, job(i, call_s=v), now)
        timed.append((now, v))
        if i % 20 == 19:
            ticks.append(now + 0.01)
            ticker.tick(engine_state(run_id=run_id, in_flight=1), m, ticks[-1])
    samples = report_data(journal, run_id, now=wall0 + 100)["samples"]
    journal.close()
    assert samples[0] == old  # read back as it was written, for the page and the report to draw
    assert len(samples) == 1 + len(ticks) == 21
    for tick, s in zip(ticks, samples[1:], strict=True):
        inside = [v for t, v in timed if in_window(t, tick, SERIES_WINDOW_S)]
        assert_exact(dict(s["latency_s"]), inside)
        assert s["t"] == pytest.approx(wall0 + tick - ticks[0], abs=0.002)  # the first tick read the clock


# a sample as Anvil journaled it before its windows were exact (a real run's; p99 2.0 s was the
# coarse buckets' interpolation): it must still read and draw
OLD_SAMPLE = """{"t": 1796439761.998, "session": 1796439757.536, "elapsed_s": 4.461, "state": "running",
"counts": {"total": 300, "done": 100, "succeeded": 100, "failed": 0, "pending": 181, "running": 19},
"jobs_per_s": 22.415, "requests_per_min": 1344.9, "latency_window_s": 10.0,
"latency_s": {"count": 100, "p50": 0.4221, "p95": 0.9643, "p99": 2.0},
"latency_by_model_s": {"claude-haiku-4-5": {"count": 100, "p50": 0.4221, "p95": 0.9643, "p99": 2.0}},
"errors_by_type": {}, "rate_limited": 0, "api_calls": 100, "cost_usd": 0.02629,
"cost_per_hour_usd": 21.214868, "budget_max_usd": null, "agents_in_flight": 19, "agents_limit": 20,
"pools": {"default:haiku": {"in_use_pct": 2.2, "binding": "requests"}},
"breakers": {"claude-haiku-4-5": "closed"}, "workers_alive": 2, "workers": 2, "worker_restarts": 0,
"alerts": 1}"""
