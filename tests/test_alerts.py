"""Alert rules: thresholds and hysteresis; tables driven by a fake clock, never by sleeping.
(Delivery to `alerts.command`: tests/test_alert_command.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from anvil_cli.alerts import (
    CLEAR_AFTER_S,
    AlertChange,
    AlertEngine,
    format_change,
)
from anvil_cli.config import Alerts


def snap(**over: Any) -> dict[str, Any]:
    """A quiet snapshot (nothing near any threshold), with `over` merged one level deep."""
    base: dict[str, Any] = {
        "elapsed_s": 600.0,
        "errors": {"attempts": 1000, "error_rate_pct": 0.0},
        "queue": {"growing": 0},
        "latency_s": {"recent_p95": 1.0},
        "cost": {"per_hour_usd": 10.0, "average_per_hour_usd": 10.0},
        "limits": {"default:haiku": {"dimensions": {"requests": {"in_use_pct": 10.0}}}},
        "budget": {"spent_usd": 0.0, "warn_usd": None},
    }
    for key, value in over.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) else value
    return base


def names(changes: list[AlertChange]) -> list[tuple[str, str]]:
    return [(c.kind, c.alert["name"]) for c in changes]


# (time, snapshot overrides, expected changes) — one error-rate story with flapping input
ERROR_RATE_STORY: list[tuple[float, dict[str, Any], list[tuple[str, str]]]] = [
    (0.0, {"errors": {"error_rate_pct": 1.0}}, []),
    (1.0, {"errors": {"error_rate_pct": 2.5}}, [("raised", "error_rate")]),
    (2.0, {"errors": {"error_rate_pct": 1.9}}, []),  # below threshold, above the clear level
    (3.0, {"errors": {"error_rate_pct": 1.5}}, []),  # clear level reached: the clock starts
    (3.0 + CLEAR_AFTER_S - 1, {"errors": {"error_rate_pct": 1.0}}, []),
    (3.0 + CLEAR_AFTER_S - 0.5, {"errors": {"error_rate_pct": 1.7}}, []),  # back up: clock resets
    (3.0 + CLEAR_AFTER_S, {"errors": {"error_rate_pct": 1.0}}, []),
    (3.0 + 2 * CLEAR_AFTER_S, {"errors": {"error_rate_pct": 1.0}}, [("cleared", "error_rate")]),
    (3.0 + 2 * CLEAR_AFTER_S + 1, {"errors": {"error_rate_pct": 9.0}}, [("raised", "error_rate")]),
]


def test_error_rate_is_raised_and_cleared_with_hysteresis() -> None:
    engine = AlertEngine(Alerts())
    for now, over, expected in ERROR_RATE_STORY:
        assert names(engine.evaluate(snap(**over), now)) == expected, now


@pytest.mark.parametrize(
    ("over", "name", "severity"),
    [
        ({"errors": {"error_rate_pct": 5.0}}, "error_rate", "high"),
        ({"queue": {"growing": 800}}, "queue_depth", "high"),
        ({"latency_s": {"recent_p95": 45.0}}, "p95_latency", "medium"),
        ({"cost": {"per_hour_usd": 13.0}}, "cost_spike", "medium"),
        ({"budget": {"spent_usd": 4.2, "warn_usd": 4.0}}, "budget_warn", "medium"),
        ({"limits": {"p": {"dimensions": {"output_tokens": {"in_use_pct": 97.0}}}}}, "utilisation", "low"),
    ],
)
def test_each_threshold_raises_its_alert(over: dict[str, Any], name: str, severity: str) -> None:
    engine = AlertEngine(Alerts())
    assert engine.evaluate(snap(), 0.0) == []
    (change,) = engine.evaluate(snap(**over), 1.0)
    assert change.kind == "raised"
    alert = change.alert
    assert (alert["name"], alert["severity"], alert["since"]) == (name, severity, 1.0)
    assert set(alert) == {"name", "severity", "message", "value", "threshold", "since"}
    assert engine.active() == [alert]


@pytest.mark.parametrize(
    "over",
    [
        {"errors": {"attempts": 5, "error_rate_pct": 60.0}},  # too few calls to judge
        {"elapsed_s": 30.0, "cost": {"per_hour_usd": 50.0}},  # too little history for a spike
        {"cost": {"per_hour_usd": 50.0, "average_per_hour_usd": 0.0}},
        {"latency_s": {"recent_p95": None}},
        {"budget": {"spent_usd": 100.0, "warn_usd": None}},
        {"queue": {"growing": 500}},  # at the threshold is not over it
    ],
)
def test_values_that_cannot_be_judged_raise_nothing(over: dict[str, Any]) -> None:
    assert AlertEngine(Alerts()).evaluate(snap(**over), 0.0) == []


def test_thresholds_come_from_the_config() -> None:
    engine = AlertEngine(Alerts(queue_depth=10, utilisation_pct=50))
    changes = engine.evaluate(
        snap(queue={"growing": 11}, limits={"p": {"dimensions": {"r": {"in_use_pct": 60}}}}), 0
    )
    assert sorted(names(changes)) == [("raised", "queue_depth"), ("raised", "utilisation")]
    assert [a["name"] for a in engine.active()] == ["queue_depth", "utilisation"]  # high before low
    assert "p r" in engine.active()[1]["message"]


def test_budget_warning_latches() -> None:
    engine = AlertEngine(Alerts())
    warn = {"budget": {"spent_usd": 4.0, "warn_usd": 4.0}}
    assert names(engine.evaluate(snap(**warn), 0.0)) == [("raised", "budget_warn")]
    for t in range(1, 100, 10):
        assert engine.evaluate(snap(budget={"spent_usd": 0.0, "warn_usd": 4.0}), float(t)) == []
    assert [a["name"] for a in engine.active()] == ["budget_warn"]


def test_active_alert_follows_the_value_and_keeps_its_since() -> None:
    engine = AlertEngine(Alerts())
    engine.evaluate(snap(queue={"growing": 600}), 5.0)
    engine.evaluate(snap(queue={"growing": 900}), 6.0)
    (alert,) = engine.active()
    assert alert["value"] == 900 and alert["since"] == 5.0 and "900" in alert["message"]


def test_format_change_lines() -> None:
    engine = AlertEngine(Alerts())
    (raised,) = engine.evaluate(snap(queue={"growing": 600}), 0.0)
    assert format_change(raised, "12:00:00") == (
        "[12:00:00] ALERT high queue_depth: 600 jobs waiting and the backlog is growing (threshold 500)"
    )
    for t in range(0, 30):
        changes = engine.evaluate(snap(), float(t + 1))
        if changes:
            break
    (cleared,) = changes
    assert format_change(cleared).startswith("alert cleared: queue_depth")
    assert cleared.to_event()["change"] == "cleared"
