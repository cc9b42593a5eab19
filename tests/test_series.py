"""The run over time (`anvil_cli.snapshot.series`): samples taken from real snapshots (the real
`build_snapshot` over real `RunMetrics`, fake clock), journaled by the real `Ticker`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from anvil_cli.config.settings import Settings
from anvil_cli.engine.journal.rows import SCHEMA
from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.ticker import Ticker
from anvil_cli.jobs.loader import load_batch
from anvil_cli.snapshot.metrics import RunMetrics
from anvil_cli.snapshot.series import MIN_GAP_S, Sample, Sampler, downsample
from anvil_cli.snapshot.types import Snapshot
from anvil_cli.views.dashboard import QuietReporter, RunMonitor
from tests.engine_support import run_inprocess, write_config, write_jsonl_batch
from tests.snapshot_support import HAIKU, SONNET, T0, WALL0, engine_state, fed_metrics, feed, job, snapshot


def _take(
    sampler: Sampler, m: RunMetrics | None = None, now: float = T0 + 60.0, **state: object
) -> Sample | None:
    """The sample of one tick: the real snapshot of `m` at `now`, and `m` itself, as the Ticker
    hands them over."""
    m = m if m is not None else fed_metrics()
    snap: Snapshot = snapshot(m, now=now, **state)
    return sampler.take(snap, m, now)


def _calls(m: RunMetrics, second: int, call_s: float, per_s: int = 10) -> None:
    """`per_s` jobs of one call each, answered during second `second`, alternating models."""
    for i in range(per_s):
        seq = second * per_s + i
        feed(m, job(seq, (HAIKU, SONNET)[i % 2], call_s=call_s), T0 + second + i / per_s)


def test_latency_percentiles_are_those_of_the_last_ten_seconds() -> None:
    """Fast calls for 20 s, then slow ones: the samples follow within the window, while the
    snapshot's whole-session percentiles still mostly see the fast calls."""
    m = RunMetrics(total=10_000, started_at=T0)
    sampler = Sampler()
    taken: dict[int, Sample] = {}
    for second in range(30):
        _calls(m, second, call_s=0.3 if second < 20 else 3.0)
        sample = _take(sampler, m, T0 + second + 1)
        assert sample is not None
        taken[second + 1] = sample
    fast, slow = taken[20]["latency_s"], taken[30]["latency_s"]
    assert fast["count"] == 100 and fast["p50"] == fast["p99"] == pytest.approx(0.3, rel=0.005)
    assert slow["count"] == 100 and slow["p50"] == slow["p99"] == pytest.approx(3.0, rel=0.005)
    mixed = taken[25]["latency_s"]  # 5 s of each: nearest rank 50 of 100 is the last fast call
    assert mixed["p50"] == pytest.approx(0.3, rel=0.005) and mixed["p95"] == pytest.approx(3.0, rel=0.005)
    whole = snapshot(m, now=T0 + 30)["call_latency_s"]
    assert whole["p50"] is not None and whole["p50"] < 1.0  # the session's: two thirds fast
    by_model = taken[30]["latency_by_model_s"]
    assert set(by_model) == {HAIKU, SONNET} and by_model[HAIKU]["count"] == 50
    first = taken[1]["latency_s"]  # the session's first seconds: every call so far counts
    assert first["count"] == 10 and first["p50"] is not None


def test_a_sample_has_the_snapshot_figures_the_charts_draw() -> None:
    m = fed_metrics()
    snap = snapshot(m)
    sample = Sampler().take(snap, m, T0 + 60.0)
    assert sample is not None
    assert sample["t"] == snap["updated_at"] == WALL0 + 60 and sample["session"] == WALL0
    assert sample["counts"] == snap["counts"] and sample["counts"]["done"] == 600
    assert sample["jobs_per_s"] == snap["throughput"]["jobs_per_s"]
    assert sample["requests_per_min"] == snap["throughput"]["requests_per_min"]
    assert sample["errors_by_type"] == {"overloaded_error": 12} == snap["errors"]["by_type"]
    assert sample["rate_limited"] == snap["errors"]["rate_limited"]
    assert sample["api_calls"] == snap["errors"]["api_calls"]
    assert sample["cost_usd"] == snap["cost"]["so_far_usd"] and sample["budget_max_usd"] == 5.0
    assert sample["cost_per_hour_usd"] == snap["cost"]["per_hour_usd"]
    assert (sample["agents_in_flight"], sample["agents_limit"]) == (18, 20)
    assert (sample["workers_alive"], sample["workers"], sample["worker_restarts"]) == (2, 2, 1)
    assert sample["pools"]["default:haiku"] == {"in_use_pct": 75.0, "binding": "output_tokens"}
    assert sample["pools"]["default:sonnet"]["binding"] == "requests"
    assert sample["breakers"] == {HAIKU: "closed", SONNET: "closed"}


def test_an_open_breaker_and_an_ended_run_are_sampled() -> None:
    from tests.snapshot_support import real_governor

    governor = real_governor(sonnet_breaker_open=True, now=T0 + 60).view(T0 + 60)
    sample = _take(Sampler(), governor=governor, phase="finished", in_flight=0)
    assert sample is not None
    assert sample["breakers"][SONNET] == "open" and sample["state"] == "finished"
    assert all(p["binding"] is None for p in sample["pools"].values())  # nothing binds once ended


def test_at_most_one_sample_a_second_but_the_last_figures_are_kept() -> None:
    m = RunMetrics(total=100, started_at=T0)
    sampler = Sampler()
    assert _take(sampler, m, T0 + 1) is not None
    assert _take(sampler, m, T0 + 1 + MIN_GAP_S / 2) is None
    assert _take(sampler, m, T0 + 2) is not None
    ended = _take(sampler, m, T0 + 2.3, phase="finished", in_flight=0)
    assert ended is not None and ended["state"] == "finished"


def _series(n: int) -> list[Sample]:
    m = RunMetrics(total=100, started_at=T0)
    sampler = Sampler(min_gap_s=0.0)
    base = _take(sampler, m, T0 + 1)
    assert base is not None
    return [{**base, "t": WALL0 + i} for i in range(n)]  # type: ignore[typeddict-item]


@pytest.mark.parametrize(
    ("n", "most"), [(0, 10), (5, 10), (10, 10), (11, 10), (3_601, 1_500), (10_000, 1_500)]
)
def test_downsample_keeps_the_ends_and_at_most_the_points_asked(n: int, most: int) -> None:
    samples = _series(n)
    kept = downsample(samples, most)
    assert len(kept) <= most
    assert len(kept) == n if n <= most else len(kept) >= most // 2
    if n:
        assert kept[0] is samples[0] and kept[-1] is samples[-1]
        assert [s["t"] for s in kept] == sorted({s["t"] for s in kept})


def _journal_with_run(tmp_path: Path) -> tuple[Journal, str]:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a", "b", "c"])
    journal = Journal.open(tmp_path / ".anvil")
    return journal, journal.create_run(str(batch), "sha", load_batch(batch))


def _ticker(journal: Journal, run_id: str, wall0: float) -> Ticker:
    monitor = RunMonitor(Settings(), QuietReporter(), batch_path="/x/b.jsonl", wall_clock=lambda: wall0)
    return Ticker(journal, run_id, monitor)


def test_the_ticker_journals_a_sample_each_second_and_a_resumed_session_appends(tmp_path: Path) -> None:
    journal, run_id = _journal_with_run(tmp_path)
    first = _ticker(journal, run_id, WALL0)
    m1 = RunMetrics(total=3, started_at=T0)
    for s in range(3):
        first.tick(engine_state(run_id=run_id, in_flight=1), m1, T0 + s)
    resumed = _ticker(journal, run_id, WALL0 + 100)  # a new process, a new session
    m2 = RunMetrics(total=3, started_at=T0, already_done=1)
    for s in range(2):
        resumed.tick(engine_state(run_id=run_id, in_flight=0), m2, T0 + s)
    samples = journal.samples(run_id)
    assert [s["t"] for s in samples] == [WALL0, WALL0 + 1, WALL0 + 2, WALL0 + 100, WALL0 + 101]
    assert [s["session"] for s in samples] == [WALL0] * 3 + [WALL0 + 100] * 2
    assert samples[-1]["counts"]["done"] == 1
    assert [s["t"] for s in journal.samples(run_id, since=WALL0 + 2)] == [WALL0 + 100, WALL0 + 101]
    assert journal.samples("no-such-run") == []
    journal.close()


def test_a_journal_from_before_samples_opens_and_gains_the_table(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    old_schema = SCHEMA.split("CREATE TABLE IF NOT EXISTS samples")[0]
    with sqlite3.connect(path) as db:
        db.executescript(old_schema)
    reader = Journal(path, create=False)  # `anvil status`, the API: never writes the schema
    assert reader.samples("any") == []
    reader.close()
    with Journal(path) as journal:  # `anvil run`: adds what is missing
        tables = {r[0] for r in journal.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "samples" in tables and journal.samples("any") == []


def test_a_real_run_leaves_samples_ending_at_its_final_counts(tmp_path: Path) -> None:
    from anvil_cli.sim import SimConfig, SimServer

    with SimServer(SimConfig(latency_ms=20, seed=1)).start_thread() as sim:
        config = write_config(tmp_path / "anvil.yaml", sim.base_url)
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(12)])
        report = run_inprocess(config, batch)
    with Journal.open(tmp_path / ".anvil") as journal:
        run = journal.latest_run()
        assert run is not None
        samples = journal.samples(run.id)
    assert samples, "the final tick at least is sampled"
    assert samples[-1]["state"] == "finished"
    assert samples[-1]["counts"]["succeeded"] == 12 == report.summary["counts"]["succeeded"]


@pytest.mark.parametrize(
    ("n", "most", "since"), [(10, 20, None), (3_601, 1_500, None), (5_000, 1_500, 1_000)]
)
def test_the_journal_thins_as_downsample_does(tmp_path: Path, n: int, most: int, since: int | None) -> None:
    journal, run_id = _journal_with_run(tmp_path)
    samples = _series(n)
    with journal.transaction():
        for sample in samples:
            journal.add_sample(run_id, sample)
    after = [s for s in samples if since is None or s["t"] > WALL0 + since]
    kept, count = journal.thinned_samples(run_id, most, None if since is None else WALL0 + since)
    assert count == len(after)
    assert [s["t"] for s in kept] == [s["t"] for s in downsample(after, most)]
    journal.close()
