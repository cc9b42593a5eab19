"""The dashboard frame (recorded at 80 columns), the reporters, and the views' side of a tick;
every snapshot here comes from the real builder (see tests/snapshot_support.py)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from anvil_cli.alerts.rules import AlertChange
from anvil_cli.config.settings import Settings
from anvil_cli.engine.attempts import Attempt
from anvil_cli.engine.journal.store import Journal, RunRow
from anvil_cli.engine.ticker import Ticker
from anvil_cli.policy.governor import GovernorView
from anvil_cli.snapshot.build import limiter_headroom, pool_of
from anvil_cli.snapshot.metrics import PROM_BOUNDS_S, RunMetrics
from anvil_cli.snapshot.state import EngineState, WorkerInfo
from anvil_cli.snapshot.types import Alert, Snapshot, WorkerRow
from anvil_cli.views.dashboard import (
    DashboardReporter,
    PlainReporter,
    QuietReporter,
    RunMonitor,
    make_reporter,
    render,
)
from anvil_cli.views.progress import snapshot_line
from tests.engine_support import write_jsonl_batch
from tests.snapshot_support import (
    HAIKU,
    SONNET,
    T0,
    WALL0,
    breaker_history,
    engine_state,
    fed_metrics,
    feed,
    job,
    real_governor,
    snapshot,
)

ERROR_ALERT: Alert = {
    "name": "error_rate",
    "severity": "high",
    "message": "error rate 3.1% of calls in the last minute (threshold 2%)",
    "value": 3.1,
    "threshold": 2.0,
    "since": WALL0,
}


def frame(snap: Snapshot, *, color: bool = False) -> str:
    console = Console(record=True, width=80, color_system="truecolor" if color else None, file=io.StringIO())
    console.print(render(snap, 80))
    return console.export_text(styles=color)


def test_snapshot_is_json_and_has_every_section() -> None:
    s = snapshot()
    assert json.loads(json.dumps(s)) == s
    assert s["counts"] == {
        "total": 1000,
        "done": 600,
        "succeeded": 593,
        "failed": 7,
        "pending": 382,
        "running": 18,
    }
    assert s["progress_pct"] == 60.0 and s["eta_s"] == pytest.approx(40.0, rel=0.05)
    assert s["throughput"]["jobs_per_s"] == pytest.approx(10.0, rel=0.05)
    assert set(s["call_latency_by_model_s"]) == set(s["job_time_by_model_s"]) == {HAIKU, SONNET}
    assert s["errors"]["by_type"] == s["errors"]["retries_by_type"] == {"overloaded_error": 12}
    assert (
        s["errors"]["api_calls"] == 600 - 7 + 12
    )  # answered calls of the succeeded jobs, and the failed ones
    assert s["agents"] == {
        "in_flight": 18,
        "limit": 20,
        "min": 1,
        "max": 20,
        "utilisation_pct": 90.0,
        "draining": 0,
        "feedable": None,
        "capped_note": None,
    }
    assert s["workers"]["alive"] == 2 and s["workers"]["restarts"] == 1
    assert s["cost"]["projected_total_usd"] == pytest.approx(1.0, rel=0.01)
    r = s["cost"]["projected_range_usd"]  # the forecast of `anvil plan`, from the answers so far
    assert r is not None and r["p10"] <= r["expected"] == s["cost"]["projected_total_usd"] <= r["p90"]
    assert s["breakers"][SONNET]["state"] == "closed"
    assert s["metrics"]["done"] == 600 and s["governor"]["in_flight"] == 0


def test_call_latency_and_job_time_are_apart() -> None:
    """Calls took 0.2-0.6 s; jobs 1-10 s because they waited for the limiter: neither hides the other."""
    s = snapshot()
    assert s["call_latency_s"]["p95"] == pytest.approx(0.6, rel=0.01)
    assert s["call_latency_s"]["recent_p95"] == pytest.approx(0.6, rel=0.01)
    assert (
        s["call_latency_s"]["count"] == 605
    )  # the 12 failed calls are timed too; the 7 failed jobs made none
    assert s["job_time_s"]["p95"] == pytest.approx(10.0, rel=0.01) and s["job_time_s"]["count"] == 600
    h = s["histograms"]
    assert h["bounds_s"] == list(PROM_BOUNDS_S)
    calls = h["call_latency"][HAIKU]
    assert calls["cumulative"][PROM_BOUNDS_S.index(0.1)] == 0
    assert (
        calls["cumulative"][PROM_BOUNDS_S.index(1.0)]
        == calls["count"]
        == s["call_latency_by_model_s"][HAIKU]["count"]
    )
    assert calls["cumulative"] == sorted(calls["cumulative"])
    jobs = h["job_time"][SONNET]
    assert jobs["cumulative"][PROM_BOUNDS_S.index(5.0)] < jobs["count"] == jobs["cumulative"][-1]
    text = frame(s)
    calls_row = next(line for line in text.splitlines() if "│ calls " in line)
    job_row = next(line for line in text.splitlines() if "│ job time " in line)
    assert "p95 0.600s" in calls_row and "605 calls" in calls_row
    assert "p95 9.965s" in job_row and "limiter waits" in job_row
    assert "calls p50 0.401s p95 0.600s, job time p95 9.965s" in snapshot_line(s)  # three figures


def test_limiter_headroom_marks_the_binding_dimension() -> None:
    governor = real_governor(sonnet_429_s=2.5, now=T0).view(T0)
    per_model = {HAIKU: {"requests_per_min": 600.0, "output_tokens_per_min": 20_000.0}}
    limits = limiter_headroom(governor, per_model)
    haiku = limits["default:haiku"]
    assert haiku["dimensions"]["requests"]["in_use_pct"] == 50.0  # 600 of 1200/min
    assert haiku["dimensions"]["output_tokens"]["in_use_pct"] == 75.0  # bucket drawn down to 25%
    assert haiku["dimensions"]["input_tokens"]["in_use_pct"] is None  # no client-side limit
    assert haiku["binding"] == "output_tokens"
    assert limits["default:sonnet"]["binding"] == "paused"
    ended = limiter_headroom(governor, per_model, ended=True)
    assert {p["binding"] for p in ended.values()} == {None}  # nothing is held back once the run is over
    assert pool_of("claude-haiku-4-5", ["default:haiku", "claude-haiku-*:haiku"]) == "claude-haiku-*:haiku"
    assert pool_of("claude-opus-4-8", ["default:haiku"]) is None


def test_frame_at_80_columns_shows_every_section() -> None:
    gov = real_governor(sonnet_breaker_open=True, sonnet_429_s=2.5, spent_usd=0.6, now=T0 + 60)
    history = (*breaker_history(gov), {"at": WALL0 + 61, "kind": "scaled", "from": 20, "to": 14, "busy": 18})
    text = frame(snapshot(alerts=(ERROR_ALERT,), governor=gov.view(T0 + 60), history=history))
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines)
    for needle in (
        "run 20250101-120000-abcdef · running",
        "60.0%  600/1,000  ETA 40s",
        "593 ok  7 failed  18 running  382 pending",
        "jobs/s",
        "req/min",
        "calls",
        "job time",
        "p50 ",
        "p95 ",
        "p99 ",
        HAIKU,
        SONNET,
        "% of calls (last min)",
        "429s 0",
        "overloaded_error 12",
        "18/20 in flight (90%)",
        "queue 350 ready",
        "2/2 alive  restarts 1",
        "default:haiku",
        "◀ binding",
        "PAUSED 2.5s",
        "OPEN retry 12s",
        "breaker claude-sonnet-4-6 open (5 failures)",
        "agents 20 → 14 (18 busy)",
        "$0.6000 so far",
        "projected $1.00",
        "budget $5.00",
        "[high] error_rate: error rate 3.1% of calls",
        "invalid_request_error (400): prompt is too long",
        "batch.jsonl",
    ):
        assert needle in text, needle


def test_agents_above_a_lowered_limit_are_draining_not_over_100_percent() -> None:
    s = snapshot(in_flight=100, agent_limit=22, agent_max=100)
    assert s["agents"]["utilisation_pct"] == 100.0 and s["agents"]["draining"] == 78
    text, line = frame(s), snapshot_line(s)
    assert "100 in flight, limit 22 (78 draining)" in text and "%)" not in text.split("in flight")[1][:25]
    assert "agents 100 (limit 22, 78 draining) queue 350" in line
    assert "454%" not in text + line and "100/22" not in text + line


def test_after_the_run_ends_nothing_is_binding() -> None:
    s = snapshot(phase="finished", in_flight=0)
    assert {pool["binding"] for pool in s["limits"].values()} == {None}
    assert "◀ binding" not in frame(s)
    assert "◀ binding" in frame(snapshot())


def test_eta_comes_from_the_recent_completion_rate_not_the_start_up_burst() -> None:
    """50 jobs answered in the first second (a full bucket, cached answers), then 5 a second: at
    t=8 s, 60 left take 12 s, not the 6 s the whole-run rate (90 in 8 s) would say."""
    m = RunMetrics(total=150, started_at=T0)
    for i in range(50):
        feed(m, job(i), T0 + 0.5)
    for i in range(35):
        feed(m, job(50 + i), T0 + 1.0 + i * 0.2)
    for i in range(5):
        feed(m, job(85 + i), T0 + 8.0 + i * 0.01)  # the second still running is not counted yet
    s = snapshot(m, now=T0 + 8.05, in_flight=0)
    assert s["throughput"]["eta_window_s"] == 4 and s["throughput"]["eta_jobs_per_s"] == pytest.approx(5.0)
    assert s["eta_s"] == pytest.approx(12.0, abs=0.5)
    assert snapshot(m, now=T0 + 8.05, phase="stopped", in_flight=0)["eta_s"] is None  # ended: no ETA


def test_frame_of_a_run_with_no_calls_yet() -> None:
    m = RunMetrics(total=5, started_at=0.0)
    text = frame(snapshot(m, now=0.5, governor=GovernorView(), in_flight=0, workers=(), queue_depth=5))
    assert "0.0%  0/5  ETA -" in text and "no calls yet" in text and "none" in text
    assert "p50 -" in text


def test_frame_has_no_colour_codes_under_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=True)
    console.print(render(snapshot(alerts=(ERROR_ALERT,)), 80))
    out = buf.getvalue()
    assert "in flight" in out and "[high]" in out and " error_rate: " in out
    assert not re.search(r"\x1b\[[0-9;]*(3[0-9]|9[0-7]|4[0-9])[;m]", out)  # bold and dim are fine


def test_plain_reporter_prints_a_line_per_interval_and_alert_lines() -> None:
    console = Console(record=True, width=200, file=io.StringIO())
    reporter = PlainReporter(console, interval_s=10.0)
    m = fed_metrics()
    for now in (101.0, 105.0, 110.5, 115.0, 121.0):
        reporter.update(snapshot(m, now=now))
    alert: Alert = {**ERROR_ALERT, "name": "queue_depth", "message": "600 jobs waiting", "value": 600.0}
    reporter.alert(AlertChange("raised", alert, WALL0))
    lines = console.export_text().splitlines()
    assert len(lines) == 3
    assert re.match(r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d\] \d+/1000 done \(", lines[0])
    assert lines[2].endswith("] ALERT [high] queue_depth: 600 jobs waiting")
    assert lines[1].split("] ", 1)[1] == snapshot_line(snapshot(m, now=121.0))


def test_make_reporter_picks_by_terminal_and_flags() -> None:
    settings = Settings()
    tty = Console(file=io.StringIO(), force_terminal=True)
    pipe = Console(file=io.StringIO(), force_terminal=False)

    def pick(console: Console, *, tty: bool = True, quiet: bool = False, no_dashboard: bool = False) -> type:
        return type(make_reporter(settings, tty=tty, quiet=quiet, no_dashboard=no_dashboard, console=console))

    assert pick(tty) is DashboardReporter
    assert pick(tty, no_dashboard=True) is PlainReporter
    assert pick(pipe, tty=False) is PlainReporter
    assert pick(tty, quiet=True) is QuietReporter


def test_dashboard_reporter_draws_the_frame_and_leaves_it_on_screen() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=True, color_system=None)
    reporter = DashboardReporter(console, refresh_per_s=50)
    reporter.update(snapshot())
    reporter.stop()
    out = buf.getvalue()
    assert "18/20 in flight" in out and "ETA 40s" in out


class Recorder:
    def __init__(self) -> None:
        self.snapshots: list[Snapshot] = []
        self.alerts: list[AlertChange] = []

    def start(self) -> None: ...
    def stop(self) -> None: ...

    def update(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot)

    def alert(self, change: AlertChange) -> None:
        self.alerts.append(change)


def _journal_with_run(tmp_path: Path) -> tuple[Journal, str]:
    from anvil_cli.jobs.loader import load_batch

    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a", "b", "c"])
    journal = Journal.open(tmp_path / ".anvil")
    return journal, journal.create_run(str(batch), "sha", load_batch(batch))


def _state(run_id: str, ready: int) -> EngineState:
    return engine_state(
        run_id=run_id, in_flight=2, agent_max=100, queue_depth=ready, workers=(WorkerInfo(0, 4242, True, 2),)
    )


def test_monitor_tick_stores_the_snapshot_records_alerts_and_runs_the_command(tmp_path: Path) -> None:
    journal, run_id = _journal_with_run(tmp_path)
    settings = Settings.model_validate({"alerts": {"queue_depth": 10, "command": "notify"}})
    delivered: list[tuple[str, AlertChange]] = []
    reporter = Recorder()
    monitor = RunMonitor(
        settings,
        reporter,
        batch_path="/x/b.jsonl",
        wall_clock=lambda: 1_700_000_000.0,
        deliver_alert=lambda cmd, change: delivered.append((cmd, change)),
    )
    metrics = RunMetrics(total=3, started_at=999.0)
    ticker = Ticker(journal, run_id, monitor)
    ticker.tick(_state(run_id, ready=5), metrics, 1000.0)  # a backlog alone raises nothing...
    assert journal.events(run_id, "alert") == []
    metrics.total = 60  # jobs arrive (POST /jobs) faster than they finish
    ticker.tick(_state(run_id, ready=50), metrics, 1001.0)  # ...a growing one does
    stored = journal.get_run(run_id)
    assert isinstance(stored, RunRow) and stored.snapshot is not None
    assert stored.snapshot["queue"] == {"ready": 50, "pending": 58, "growing": 58}
    assert stored.snapshot["workers"]["list"][0]["jobs"] == 2
    assert [a["name"] for a in stored.snapshot["alerts"]] == ["queue_depth"]
    assert stored.snapshot["updated_at"] == 1_700_000_001.0  # the second tick
    (event,) = journal.events(run_id, "alert")
    assert event["name"] == "queue_depth" and event["change"] == "raised"
    assert [c for c, _ in delivered] == ["notify"] and len(reporter.alerts) == 1
    ticker.tick(_state(run_id, ready=0), metrics, 1002.0)  # below the clear level, not for long yet
    assert len(reporter.snapshots) == 3 and reporter.snapshots[2]["alerts"][0]["name"] == "queue_depth"
    assert reporter.snapshots[2]["elapsed_s"] == 3.0
    journal.close()


def test_the_last_failed_call_says_why() -> None:
    from anvil_cli.views.dashboard.render import describe_error

    m = RunMetrics(total=10, started_at=0.0)
    m.on_attempt(Attempt(1, "", None, error_type="connection_error",
                         message="[Errno 111] Connection refused (ConnectError)"), 0.2)  # fmt: skip
    snap = snapshot(m, now=0.5, governor=GovernorView(), in_flight=1, workers=(), queue_depth=0)
    assert "Connection refused" in frame(snap)
    assert "last error: connection_error: [Errno 111] Connection refused" in snapshot_line(snap)
    assert describe_error({"type": "overloaded_error", "status_code": 529, "message": "Overloaded"}) == (
        "overloaded_error (529): Overloaded"
    )


def test_max_agents_holding_a_run_back_is_said_and_a_binding_limit_is_not_mistaken_for_it() -> None:
    from tests.snapshot_support import real_governor

    idle_governor = real_governor(draw_output_tokens=1).view(T0 + 60.0)  # no limit near its rate
    capped = snapshot(in_flight=20, agent_limit=20, agent_max=20, feedable=1300, governor=idle_governor)
    note = capped["agents"]["capped_note"]
    assert note == "the rate limits could feed ~1,300 agents; max_agents caps at 20"
    assert note in frame(capped)
    # below max_agents (the scaler chose fewer), or the limits feed no more: nothing to say
    assert (
        snapshot(in_flight=10, agent_limit=10, agent_max=20, feedable=1300, governor=idle_governor)["agents"][
            "capped_note"
        ]
        is None
    )
    assert (
        snapshot(in_flight=20, agent_limit=20, agent_max=20, feedable=15, governor=idle_governor)["agents"][
            "capped_note"
        ]
        is None
    )
    # a limit is what binds (here a 429 paused a pool): not max_agents
    paused = real_governor(draw_output_tokens=1, sonnet_429_s=120.0).view(T0 + 60.0)
    held = snapshot(in_flight=20, agent_limit=20, agent_max=20, feedable=1300, governor=paused)
    assert held["agents"]["capped_note"] is None


def test_workers_are_counted_per_node_on_a_cluster_only() -> None:
    from anvil_cli.views.dashboard.render import per_node

    def row(i: int, node: str | None, alive: bool = True) -> WorkerRow:
        return {"id": i, "pid": 100 + i, "alive": alive, "jobs": 1, "node": node}

    assert per_node([row(0, None), row(1, None)]) == ""  # local workers: nothing to say
    assert per_node([row(0, "10.0.0.5 aa"), row(1, "10.0.0.5 aa")]) == ""
    rows = [row(0, "10.0.0.5 aa"), row(1, "10.0.0.6 bb"), row(2, "10.0.0.6 bb"), row(3, "10.0.0.6 bb", False)]
    assert per_node(rows) == "  on 2 nodes: 10.0.0.5 aa 1, 10.0.0.6 bb 2"
