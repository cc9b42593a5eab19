"""Alert rules: thresholds and hysteresis, judged on snapshots from the real builder; a fake clock,
never sleeping. (Delivery to `alerts.command`: tests/test_alert_command.py.)"""

from __future__ import annotations

import ast
import copy
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import anvil_cli.alerts.rules
from anvil_cli.alerts.rules import CLEAR_AFTER_S, AlertChange, AlertEngine, format_change
from anvil_cli.config.settings import Alerts
from anvil_cli.snapshot.metrics import RunMetrics
from anvil_cli.snapshot.types import Snapshot
from tests.snapshot_support import T0, WALL0, feed, job, real_governor, set_in, snapshot


@functools.cache
def _quiet() -> Snapshot:
    return snapshot(in_flight=10)


def quiet(**values: Any) -> Snapshot:
    """A real snapshot near no threshold, with some figures set (`errors__error_rate_pct=2.5`)."""
    snap = copy.deepcopy(_quiet())
    for path, value in values.items():
        set_in(snap, path.replace("__", "."), value)
    return snap


def names(changes: list[AlertChange]) -> list[tuple[str, str]]:
    return [(c.kind, c.alert["name"]) for c in changes]


# (time, error rate, expected changes) — one error-rate story with flapping input
ERROR_RATE_STORY: list[tuple[float, float, list[tuple[str, str]]]] = [
    (0.0, 1.0, []),
    (1.0, 2.5, [("raised", "error_rate")]),
    (2.0, 1.9, []),  # below threshold, above the clear level
    (3.0, 1.5, []),  # clear level reached: the clock starts
    (3.0 + CLEAR_AFTER_S - 1, 1.0, []),
    (3.0 + CLEAR_AFTER_S - 0.5, 1.7, []),  # back up: clock resets
    (3.0 + CLEAR_AFTER_S, 1.0, []),
    (3.0 + 2 * CLEAR_AFTER_S, 1.0, [("cleared", "error_rate")]),
    (3.0 + 2 * CLEAR_AFTER_S + 1, 9.0, [("raised", "error_rate")]),
]


def test_a_quiet_run_raises_nothing() -> None:
    assert AlertEngine(Alerts()).evaluate(_quiet(), 0.0) == []


def test_error_rate_is_raised_and_cleared_with_hysteresis() -> None:
    engine = AlertEngine(Alerts())
    for now, rate, expected in ERROR_RATE_STORY:
        assert names(engine.evaluate(quiet(errors__error_rate_pct=rate), now)) == expected, now


def _failing_calls() -> Snapshot:
    m = RunMetrics(total=100, started_at=T0)
    for i in range(40):  # 10 of 50 calls failed
        feed(m, job(i, failed_calls=((529, "overloaded_error"),) if i % 4 == 0 else ()), T0 + i * 0.5)
    return snapshot(m, now=T0 + 20, in_flight=10)


def _slow_calls() -> Snapshot:
    m = RunMetrics(total=100, started_at=T0)
    for i in range(20):
        feed(m, job(i, call_s=45.0, job_s=50.0), T0 + i)
    return snapshot(m, now=T0 + 20, in_flight=10)


def _spending_faster() -> Snapshot:
    m = RunMetrics(total=1000, started_at=T0)
    for i in range(150):  # a job a second; the last 30 s cost ten times as much
        feed(m, job(i, cost_usd=0.01 if i >= 120 else 0.001), T0 + i)
    return snapshot(m, now=T0 + 150, in_flight=10)


def _scaled() -> Snapshot:
    return snapshot(
        in_flight=10, history=({"at": WALL0 + 55, "kind": "scaled", "from": 20, "to": 14, "busy": 18},)
    )


SCENARIOS: list[tuple[Callable[[], Snapshot], str, str, str]] = [
    (_failing_calls, "error_rate", "high", "error rate 20.0% of calls in the last minute (threshold 2%)"),
    (lambda: snapshot(in_flight=10, growing=800), "queue_depth", "high", "800 jobs waiting"),
    (_slow_calls, "p95_latency", "medium", "API call latency p95 45.0s (threshold 30s)"),
    (_spending_faster, "cost_spike", "medium", "cost per hour +"),
    (
        lambda: snapshot(in_flight=10, governor=real_governor(spent_usd=4.2, now=T0 + 60).view(T0 + 60)),
        "budget_warn",
        "medium",
        "spent $4.2000, past the budget warning of $4.00",
    ),
    (
        lambda: snapshot(
            in_flight=10, governor=real_governor(draw_output_tokens=76_000, now=T0 + 60).view(T0 + 60)
        ),
        "rate_limit",
        "low",
        "default:haiku output tokens at 95% of its rate limit (threshold 90%)",
    ),
    (
        lambda: snapshot(in_flight=20),
        "agent_utilisation",
        "low",
        "agents 100% busy (20 of 20, the most allowed",
    ),
    (_scaled, "scaling", "low", "agents 20 → 14 (18 busy)"),
]


@pytest.mark.parametrize(("scenario", "name", "severity", "message"), SCENARIOS)
def test_each_rule_raises_its_alert_on_a_real_snapshot(
    scenario: Callable[[], Snapshot], name: str, severity: str, message: str
) -> None:
    engine = AlertEngine(Alerts())
    assert engine.evaluate(_quiet(), 0.0) == []
    (change,) = engine.evaluate(scenario(), 1.0)
    alert = change.alert
    assert (change.kind, alert["name"], alert["severity"], alert["since"]) == ("raised", name, severity, 1.0)
    assert alert["message"].startswith(message), alert["message"]
    assert set(alert) == {"name", "severity", "message", "value", "threshold", "since"}
    assert engine.active() == [alert]


@pytest.mark.parametrize(
    "values",
    [
        {"errors__attempts": 5, "errors__error_rate_pct": 60.0},  # too few calls to judge
        {"elapsed_s": 30.0, "cost__per_hour_usd": 50.0},  # too little history for a spike
        {"elapsed_s": 600.0, "cost__per_hour_usd": 50.0, "cost__average_per_hour_usd": 0.0},
        {"call_latency_s__recent_p95": None},
        {"budget__spent_usd": 100.0, "budget__warn_usd": None},
        {"queue__growing": 500},  # at the threshold is not over it
        {"agents__limit": 0, "agents__utilisation_pct": 0.0},  # no agents (Message Batches)
        {"agents__utilisation_pct": 90.0},  # at the threshold is not over it
    ],
)
def test_values_that_cannot_be_judged_raise_nothing(values: dict[str, Any]) -> None:
    assert AlertEngine(Alerts()).evaluate(quiet(**values), 0.0) == []


def test_thresholds_come_from_the_config() -> None:
    engine = AlertEngine(Alerts(queue_depth=10, utilisation_pct=50, agent_utilisation_pct=80))
    changes = engine.evaluate(snapshot(growing=11), 0)  # 18 of 20 agents; haiku's output tokens 75% used
    assert sorted(names(changes)) == [
        ("raised", "agent_utilisation"),
        ("raised", "queue_depth"),
        ("raised", "rate_limit"),
    ]
    assert [a["name"] for a in engine.active()] == [
        "queue_depth",
        "rate_limit",
        "agent_utilisation",
    ]  # high first
    assert "default:haiku output tokens" in engine.active()[1]["message"]


def test_budget_warning_latches() -> None:
    engine = AlertEngine(Alerts())
    assert names(engine.evaluate(quiet(budget__spent_usd=4.0), 0.0)) == [("raised", "budget_warn")]
    for t in range(1, 100, 10):
        assert engine.evaluate(quiet(), float(t)) == []
    assert [a["name"] for a in engine.active()] == ["budget_warn"]


def test_active_alert_follows_the_value_and_keeps_its_since() -> None:
    engine = AlertEngine(Alerts())
    engine.evaluate(quiet(queue__growing=600), 5.0)
    engine.evaluate(quiet(queue__growing=900), 6.0)
    (alert,) = engine.active()
    assert alert["value"] == 900 and alert["since"] == 5.0 and "900" in alert["message"]


def test_scaling_is_informational_and_clears_a_minute_after_the_last_change() -> None:
    engine = AlertEngine(Alerts())
    event = {"at": WALL0 + 60, "kind": "scaled", "from": 20, "to": 14, "busy": 18, "limiter_pct": 97.0}

    def at(now: float) -> list[tuple[str, str]]:
        snap = snapshot(now=now, in_flight=10, history=(event,))
        return names(engine.evaluate(snap, snap["updated_at"]))

    assert at(T0 + 60) == [("raised", "scaling")]
    assert engine.active()[0]["message"] == "agents 20 → 14 (18 busy, rate limit 97% used)"
    assert at(T0 + 119) == []  # still within the minute
    assert at(T0 + 121) == []  # quiet for a minute: the clear clock starts
    assert at(T0 + 121 + CLEAR_AFTER_S) == [("cleared", "scaling")]


def test_format_change_lines_say_severity_then_name() -> None:
    engine = AlertEngine(Alerts())
    (raised,) = engine.evaluate(quiet(queue__growing=600), 0.0)
    assert format_change(raised, "12:00:00") == (
        "[12:00:00] ALERT [high] queue_depth: 600 jobs waiting and the backlog is growing (threshold 500)"
    )
    for t in range(0, 30):
        changes = engine.evaluate(quiet(), float(t + 1))
        if changes:
            break
    (cleared,) = changes
    assert format_change(cleared).startswith("alert cleared [high] queue_depth: ")
    assert cleared.to_event()["change"] == "cleared"


def test_the_rules_import_no_io() -> None:
    """Pure policy: the rules start no process and open no file or socket (delivery does)."""
    tree = ast.parse(Path(anvil_cli.alerts.rules.__file__).read_text())
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""])
    }
    assert not imported & {"subprocess", "os", "threading", "signal", "socket", "json", "sqlite3"}
    assert "anvil_cli.engine" not in {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }


def test_agent_utilisation_says_when_a_lowered_limit_is_draining() -> None:
    from anvil_cli.alerts.rules import AlertEngine
    from anvil_cli.config.settings import Alerts
    from tests.snapshot_support import snapshot

    s = snapshot(in_flight=99, agent_limit=25, agent_max=100)
    changes = AlertEngine(Alerts()).evaluate(s, s["updated_at"])
    (message,) = [c.alert["message"] for c in changes if c.alert["name"] == "agent_utilisation"]
    assert "99 in flight, limit 25, 74 draining" in message and "99 of 25" not in message
