"""The dashboard frame (recorded at 80 columns), the reporters, and the conductor tick."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from anvil_cli.alerts import AlertChange
from anvil_cli.config import Settings
from anvil_cli.dashboard import (
    DashboardReporter,
    PlainReporter,
    QuietReporter,
    RunMonitor,
    make_reporter,
    render,
)
from anvil_cli.engine.journal import JobResult, Journal, RunRow
from anvil_cli.engine.ticker import Ticker
from anvil_cli.metrics import RunMetrics
from anvil_cli.progress import snapshot_line
from anvil_cli.snapshot import build_snapshot, limiter_headroom, pool_of
from anvil_cli.state import EngineState, WorkerInfo
from tests.engine_support import write_jsonl_batch

HAIKU, SONNET = "claude-haiku-4-5", "claude-sonnet-4-6"


def governor_state(*, paused_s: float | None = None, breaker: str = "closed") -> dict[str, Any]:
    def dim(capacity: float | None, level: float | None, rate: float | None) -> dict[str, Any]:
        return {
            "capacity": capacity,
            "level": level,
            "rate_per_min": rate,
            "configured_per_min": rate,
            "reserved_in_flight": 0.0,
        }

    return {
        "pools": {
            "default:haiku": {
                "paused_until_s": None,
                "dimensions": {
                    "requests": dim(50, 45, 1200),
                    "input_tokens": dim(None, None, None),
                    "output_tokens": dim(80_000, 20_000, 80_000),
                },
            },
            "default:sonnet": {"paused_until_s": paused_s, "dimensions": {"requests": dim(50, 50, 1000)}},
        },
        "breakers": {
            HAIKU: {"state": "closed", "failures": 0, "retry_in_s": 0.0, "probes_in_flight": 0},
            SONNET: {"state": breaker, "failures": 5, "retry_in_s": 12.0, "probes_in_flight": 0},
        },
        "budget": {"spent_usd": 0.6, "reserved_usd": 0.01, "max_usd": 5.0, "warn_usd": 4.0},
        "in_flight": 18,
    }


def fed_metrics(n: int = 600, total: int = 1000) -> RunMetrics:
    m = RunMetrics(total=total, started_at=100.0)
    for i in range(n):
        now = 100.0 + i * 0.1
        model = (HAIKU, SONNET)[i % 2]
        if i % 50 == 7:
            m.on_attempt(
                {"seq": i, "model": model, "status_code": 529, "error_type": "overloaded_error"}, now
            )
        ok = i % 97 != 5
        error = {"type": "invalid_request_error", "message": "prompt is too long", "status_code": 400}
        m.on_result(
            JobResult(
                seq=i,
                succeeded=ok,
                model=model,
                attempts=1,
                usage={"input_tokens": 300, "output_tokens": 120},
                cost_usd=0.001,
                latency_s=0.2 + (i % 10) / 10,
                error=None if ok else error,
                attempt_log=[{"status_code": 200 if ok else 400}],
            ),
            now,
        )
    return m


def snapshot(m: RunMetrics | None = None, **over: Any) -> dict[str, Any]:
    metrics = m or fed_metrics()
    args: dict[str, Any] = {
        "run_id": "20250101-120000-abcdef",
        "batch_path": "/data/batch.jsonl",
        "state": "running",
        "started_wall": 1_700_000_000.0,
        "metrics": metrics,
        "now": 160.0,
        "in_flight": 18,
        "agent_limit": 20,
        "agent_min": 1,
        "agent_max": 20,
        "queue_depth": 350,
        "pending": 382,
        "workers": [
            {"id": 0, "pid": 11, "alive": True, "jobs": 9},
            {"id": 1, "pid": 12, "alive": True, "jobs": 9},
        ],
        "worker_restarts": 1,
        "governor": governor_state(),
        "alerts": [],
        "paused": False,
    }
    args.update(over)
    return build_snapshot(**args)


def frame(snap: dict[str, Any], *, color: bool = False) -> str:
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
        "in_flight": 18,
    }
    assert s["progress_pct"] == 60.0 and s["eta_s"] == pytest.approx(40.0, rel=0.05)
    assert s["throughput"]["jobs_per_s"] == pytest.approx(10.0, rel=0.05)
    assert set(s["latency_by_model_s"]) == {HAIKU, SONNET}
    assert s["errors"]["by_type"] == {"overloaded_error": 12}
    assert s["agents"]["utilisation_pct"] == 90.0
    assert s["workers"]["alive"] == 2 and s["workers"]["restarts"] == 1
    assert s["cost"]["projected_total_usd"] == pytest.approx(1.0, rel=0.01)
    assert s["breakers"][SONNET]["state"] == "closed"
    assert s["metrics"]["done"] == 600 and s["governor"]["in_flight"] == 18


def test_limiter_headroom_marks_the_binding_dimension() -> None:
    per_model = {HAIKU: {"requests_per_min": 600.0, "output_tokens_per_min": 20_000.0}}
    limits = limiter_headroom(governor_state(paused_s=2.5), per_model)
    haiku = limits["default:haiku"]
    assert haiku["dimensions"]["requests"]["in_use_pct"] == 50.0  # 600 of 1200/min
    assert haiku["dimensions"]["output_tokens"]["in_use_pct"] == 75.0  # bucket drawn down to 25%
    assert haiku["dimensions"]["input_tokens"]["in_use_pct"] is None  # no client-side limit
    assert haiku["binding"] == "output_tokens"
    assert limits["default:sonnet"]["binding"] == "paused"
    assert pool_of("claude-haiku-4-5", ["default:haiku", "claude-haiku-*:haiku"]) == "claude-haiku-*:haiku"
    assert pool_of("claude-opus-4-8", ["default:haiku"]) is None


def test_frame_at_80_columns_shows_every_section() -> None:
    alert = {"name": "error_rate", "severity": "high", "message": "error rate 3.1% of calls", "value": 3.1}
    text = frame(snapshot(alerts=[alert], governor=governor_state(paused_s=2.5, breaker="open")))
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines)
    for needle in (
        "run 20250101-120000-abcdef · running",
        "60.0%  600/1,000  ETA 40s",
        "593 ok  7 failed  18 running  382 pending",
        "jobs/s",
        "req/min",
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
        "$0.6000 so far",
        "projected $1.00",
        "budget $5.00",
        "HIGH",
        "error rate 3.1% of calls",
        "invalid_request_error (400): prompt is too long",
        "batch.jsonl",
    ):
        assert needle in text, needle


def test_frame_of_a_run_with_no_calls_yet() -> None:
    m = RunMetrics(total=5, started_at=0.0)
    text = frame(snapshot(m, now=0.5, governor={}, in_flight=0, workers=[], queue_depth=5, pending=5))
    assert "0.0%  0/5  ETA -" in text and "no calls yet" in text and "none" in text
    assert "p50 -" in text


def test_frame_has_no_colour_codes_under_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=True)
    console.print(render(snapshot(), 80))
    out = buf.getvalue()
    assert "in flight" in out
    assert not re.search(r"\x1b\[[0-9;]*(3[0-9]|9[0-7]|4[0-9])[;m]", out)  # bold and dim are fine


def test_plain_reporter_prints_a_line_per_interval_and_alert_lines() -> None:
    console = Console(record=True, width=200, file=io.StringIO())
    reporter = PlainReporter(console, interval_s=10.0)
    m = fed_metrics()
    for now in (101.0, 105.0, 110.5, 115.0, 121.0):
        reporter.update(snapshot(m, now=now))
    alert = {"name": "queue_depth", "severity": "high", "message": "600 jobs waiting", "value": 600.0}
    reporter.alert(AlertChange("raised", {**alert, "threshold": 500, "since": 0}, 1_700_000_000.0))
    lines = console.export_text().splitlines()
    assert len(lines) == 3
    assert re.match(r"\[\d\d:\d\d:\d\d\] \d+/1000 done \(", lines[0])
    assert "ALERT high queue_depth: 600 jobs waiting" in lines[2]
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


def engine_state(run_id: str, ready: int) -> EngineState:
    return EngineState(
        run_id=run_id,
        mode="messages",
        phase="running",
        paused=False,
        in_flight=2,
        agent_limit=20,
        agent_min=1,
        agent_max=100,
        queue_depth=ready,
        workers=(WorkerInfo(0, 4242, True, 2),),
        governor=governor_state(),
    )


class Recorder:
    def __init__(self) -> None:
        self.snapshots: list[dict[str, Any]] = []
        self.alerts: list[AlertChange] = []

    def start(self) -> None: ...
    def stop(self) -> None: ...

    def update(self, snapshot: dict[str, Any]) -> None:
        self.snapshots.append(snapshot)

    def alert(self, change: AlertChange) -> None:
        self.alerts.append(change)


def _journal_with_run(tmp_path: Path) -> tuple[Journal, str]:
    from anvil_cli.batch.loader import load_batch

    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a", "b", "c"])
    journal = Journal.open(tmp_path / ".anvil")
    return journal, journal.create_run(str(batch), "sha", load_batch(batch))


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
    ticker = Ticker(journal, run_id, monitor, control=None)
    ticker.tick(engine_state(run_id, ready=5), metrics, 1000.0)  # a backlog alone raises nothing...
    assert journal.events(run_id, "alert") == []
    metrics.total = 60  # jobs arrive (POST /jobs) faster than they finish
    ticker.tick(engine_state(run_id, ready=50), metrics, 1001.0)  # ...a growing one does
    stored = journal.get_run(run_id)
    assert isinstance(stored, RunRow) and stored.snapshot is not None
    assert stored.snapshot["queue"]["ready"] == 50 and stored.snapshot["workers"]["list"][0]["jobs"] == 2
    assert [a["name"] for a in stored.snapshot["alerts"]] == ["queue_depth"]
    assert stored.snapshot["updated_at"] == 1_700_000_001.0  # the second tick
    (event,) = journal.events(run_id, "alert")
    assert event["name"] == "queue_depth" and event["change"] == "raised"
    assert [c for c, _ in delivered] == ["notify"] and len(reporter.alerts) == 1
    ticker.tick(engine_state(run_id, ready=0), metrics, 1002.0)  # below the clear level, not for long yet
    assert len(reporter.snapshots) == 3 and reporter.snapshots[2]["alerts"][0]["name"] == "queue_depth"
    assert reporter.snapshots[2]["elapsed_s"] == 3.0
    journal.close()


def test_the_last_failed_call_says_why() -> None:
    from anvil_cli.dashboard.render import describe_error
    from anvil_cli.progress import snapshot_line

    m = RunMetrics(total=10, started_at=0.0)
    m.on_attempt({"seq": 1, "status_code": None, "error_type": "connection_error",
                  "message": "[Errno 111] Connection refused (ConnectError)"}, 0.2)  # fmt: skip
    snap = snapshot(m, now=0.5, governor={}, in_flight=1, workers=[], queue_depth=0, pending=9)
    assert "Connection refused" in frame(snap)
    assert "last error: connection_error: [Errno 111] Connection refused" in snapshot_line(snap)
    assert describe_error({"type": "overloaded_error", "status_code": 529, "message": "Overloaded"}) == (
        "overloaded_error (529): Overloaded"
    )
