"""Alert rules: thresholds from `alerts:` in the config, judged on each run snapshot.

Pure policy: time is passed in (`now`, wall-clock seconds, so `since` means the same to every
reader) and nothing here starts a process or writes a file; `anvil_cli.alerts.delivery` hands a
change to the user's `alerts.command`, the reporters print it.

Hysteresis, so an alert does not flap: it is raised when its value goes above the threshold,
and cleared only once the value has stayed at or below `CLEAR_RATIO` of the threshold for
`CLEAR_AFTER_S` seconds. A value that cannot be judged yet (too few calls, no history) counts
as clear. On the run's last snapshot (finished or stopped) there is nothing left to wait for:
an alert whose value is back under its clearing line is cleared then, not left "active".

| name              | value (from the snapshot)                                     | severity |
|-------------------|---------------------------------------------------------------|----------|
| error_rate        | failed calls, % over the last minute (>= 20 calls)            | high     |
| queue_depth       | jobs waiting, when that backlog grew over the last minute     | high     |
| p95_latency       | API call latency p95 over the last 30 s (not job time)        | medium   |
| cost_spike        | cost/hour over the last 30 s, % above the session average     | medium   |
| budget_warn       | spent USD against `budget.warn_usd` (never clears)            | medium   |
| rate_limit        | the most used rate limit (pool, dimension), % in use          | low      |
| agent_utilisation | busy agents, % of the agent limit                             | low      |
| scaling           | the agent limit changed in the last minute (informational)    | low      |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from anvil_cli.config.settings import Alerts
from anvil_cli.snapshot.history import describe_event
from anvil_cli.snapshot.types import Alert, Severity, Snapshot

CLEAR_RATIO: Final = 0.8
CLEAR_AFTER_S: Final = 10.0
MIN_CALLS_FOR_ERROR_RATE: Final = 20
MIN_HISTORY_FOR_COST_SPIKE_S: Final = 120.0
SCALING_WINDOW_S: Final = 60.0
SEVERITY_ORDER: Final = {"high": 0, "medium": 1, "low": 2}
ENDED_STATES: Final = ("finished", "stopped")  # a run's last snapshot

Value = tuple[float | None, str]  # (value or None when it cannot be judged, what it refers to)


def _error_rate(s: Snapshot) -> Value:
    errors = s["errors"]
    if errors["attempts"] < MIN_CALLS_FOR_ERROR_RATE:
        return None, ""
    return errors["error_rate_pct"], ""


def _queue_depth(s: Snapshot) -> Value:
    # `queue.growing`: the backlog when it grew over the last minute (see dashboard.monitor), else
    # 0; a batch that starts with thousands of jobs waiting and works them down raises nothing.
    return float(s["queue"]["growing"]), ""


def _call_p95(s: Snapshot) -> Value:
    return s["call_latency_s"]["recent_p95"], ""


def _cost_spike(s: Snapshot) -> Value:
    cost = s["cost"]
    average = cost["average_per_hour_usd"]
    if s["elapsed_s"] < MIN_HISTORY_FOR_COST_SPIKE_S or average <= 0:
        return None, ""
    return 100.0 * (cost["per_hour_usd"] / average - 1.0), ""


def _rate_limit(s: Snapshot) -> Value:
    best: Value = (None, "")
    for pool, info in s["limits"].items():
        for dim, d in info["dimensions"].items():
            pct = d["in_use_pct"]
            if pct is not None and (best[0] is None or pct > best[0]):
                best = (pct, f"{pool} {dim.replace('_', ' ')}")
    return best


def _agent_utilisation(s: Snapshot) -> Value:
    a = s["agents"]
    if a["limit"] <= 0:
        return None, ""
    at_max = ", the most allowed" if a["limit"] >= a["max"] else ""
    if a["draining"]:  # the limit was lowered below the jobs already running
        where = f"{a['in_flight']:,} in flight, limit {a['limit']:,}, {a['draining']:,} draining"
        return a["utilisation_pct"], where
    return a["utilisation_pct"], f"{a['in_flight']:,} of {a['limit']:,}{at_max}"


def _scaling(s: Snapshot) -> Value:
    since = s["updated_at"] - SCALING_WINDOW_S
    recent = [e for e in s["history"] if e["kind"] == "scaled" and e["at"] > since]
    if not recent:
        return 0.0, ""
    return float(len(recent)), describe_event(recent[-1])


def _budget(s: Snapshot) -> Value:
    budget = s["budget"]
    if budget["warn_usd"] is None:
        return None, ""
    return budget["spent_usd"], ""


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert: how to read its value from a snapshot, its threshold and how to say it."""

    name: str
    severity: Severity
    threshold: float
    value_of: Callable[[Snapshot], Value]
    describe: Callable[[float, float, str], str]
    latch: bool = False  # once raised, stays raised for the run (the budget warning)


def _scaled(v: float, t: float, where: str) -> str:
    if not where:
        return "the agent limit held for a minute"
    more = f"; {v:.0f} changes in the last minute" if v > 1 else ""
    return f"{where}{more}"


def rules_from(settings: Alerts) -> list[Rule]:
    """The rules the config asks for (the budget warning's threshold comes from the snapshot)."""
    return [
        Rule("error_rate", "high", settings.error_rate_pct, _error_rate,
             lambda v, t, _: f"error rate {v:.1f}% of calls in the last minute (threshold {t:g}%)"),
        Rule("queue_depth", "high", float(settings.queue_depth), _queue_depth,
             lambda v, t, _: f"{v:,.0f} jobs waiting and the backlog is growing (threshold {t:,.0f})"),
        Rule("p95_latency", "medium", settings.p95_latency_s, _call_p95,
             lambda v, t, _: f"API call latency p95 {v:.1f}s (threshold {t:g}s)"),
        Rule("cost_spike", "medium", settings.cost_spike_pct, _cost_spike,
             lambda v, t, _: f"cost per hour {v:+.0f}% over the run's average (threshold {t:g}%)"),
        Rule("rate_limit", "low", settings.utilisation_pct, _rate_limit,
             lambda v, t, where: f"{where} at {v:.0f}% of its rate limit (threshold {t:g}%)"),
        Rule("agent_utilisation", "low", settings.agent_utilisation_pct, _agent_utilisation,
             lambda v, t, where: f"agents {v:.0f}% busy ({where}; threshold {t:g}%)"),
        Rule("scaling", "low", 0.0, _scaling, _scaled),
    ]  # fmt: skip


BUDGET_RULE: Final = Rule(
    "budget_warn",
    "medium",
    0.0,
    _budget,
    lambda v, t, _: f"spent ${v:.4f}, past the budget warning of ${t:.2f}",
    latch=True,
)


@dataclass(frozen=True, slots=True)
class AlertChange:
    """An alert was raised or cleared; `alert` is its dict (name, severity, message, value, ...)."""

    kind: str  # "raised" | "cleared"
    alert: Alert
    at: float

    def to_event(self) -> dict[str, Any]:
        """The journal event's data (kind "alert") and the JSON given to `alerts.command`."""
        return {"change": self.kind, "at": self.at, **self.alert}


@dataclass(slots=True)
class _Active:
    since: float
    value: float
    message: str
    threshold: float
    clear_since: float | None = None


@dataclass
class AlertEngine:
    """Raises and clears alerts from successive snapshots, with hysteresis."""

    settings: Alerts
    clear_ratio: float = CLEAR_RATIO
    clear_after_s: float = CLEAR_AFTER_S
    _rules: list[Rule] = field(init=False)
    _active: dict[str, _Active] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._rules = rules_from(self.settings)

    def evaluate(self, snapshot: Snapshot, now: float) -> list[AlertChange]:
        """Changes since the last call (raised first, then cleared). On a run's last snapshot
        (finished or stopped) an alert whose value is back under its clearing line is cleared
        at once: no later snapshot will come to wait for, so the run does not end with it
        listed as active."""
        changes: list[AlertChange] = []
        ended = snapshot["state"] in ENDED_STATES
        for rule in [*self._rules, BUDGET_RULE]:
            threshold = _threshold(rule, snapshot)
            value, where = rule.value_of(snapshot)
            change = self._step(rule, threshold, value, where, now, ended)
            if change is not None:
                changes.append(change)
        return sorted(changes, key=lambda c: c.kind != "raised")

    def _step(
        self, rule: Rule, threshold: float | None, value: float | None, where: str, now: float, ended: bool
    ) -> AlertChange | None:
        active = self._active.get(rule.name)
        above = value is not None and threshold is not None and _over(rule, value, threshold)
        if active is None:
            if not above or value is None or threshold is None:
                return None
            msg = rule.describe(value, threshold, where)
            self._active[rule.name] = _Active(now, value, msg, threshold)
            return AlertChange("raised", self._as_dict(rule.name, self._active[rule.name]), now)
        if value is not None:
            active.value = value
            active.message = rule.describe(value, active.threshold, where)
        if rule.latch or not self._clear_enough(rule, value, active.threshold):
            active.clear_since = None
            return None
        active.clear_since = now if active.clear_since is None else active.clear_since
        if now - active.clear_since < self.clear_after_s and not ended:
            return None
        del self._active[rule.name]
        return AlertChange("cleared", self._as_dict(rule.name, active), now)

    def _clear_enough(self, rule: Rule, value: float | None, threshold: float) -> bool:
        return value is None or value <= threshold * self.clear_ratio

    def _as_dict(self, name: str, a: _Active) -> Alert:
        rule = next(r for r in [*self._rules, BUDGET_RULE] if r.name == name)
        return {
            "name": name,
            "severity": rule.severity,
            "message": a.message,
            "value": round(a.value, 4),
            "threshold": a.threshold,
            "since": a.since,
        }

    def active(self) -> list[Alert]:
        """Active alerts, most severe first, then oldest first."""
        rows = [self._as_dict(name, a) for name, a in self._active.items()]
        return sorted(rows, key=lambda r: (SEVERITY_ORDER.get(r["severity"], 9), r["since"]))


def _threshold(rule: Rule, snapshot: Snapshot) -> float | None:
    return snapshot["budget"]["warn_usd"] if rule is BUDGET_RULE else rule.threshold


def _over(rule: Rule, value: float, threshold: float) -> bool:
    return value >= threshold if rule.latch else value > threshold


def alert_text(alert: Alert) -> str:
    """`[low] rate_limit: default:haiku requests at 95% of its rate limit (threshold 90%)`."""
    return f"[{alert['severity']}] {alert['name']}: {alert['message']}"


def format_change(change: AlertChange, stamp: str | None = None) -> str:
    """One plain line for CI logs: `[2026-12-05T12:00:01+01:00] ALERT [high] error_rate: ...`, or
    `[2026-12-05T12:00:30+01:00] alert cleared [high] error_rate: ...` (`stamp`: timefmt.local_iso)."""
    prefix = f"[{stamp}] " if stamp else ""
    verb = "ALERT" if change.kind == "raised" else "alert cleared"
    return f"{prefix}{verb} {alert_text(change.alert)}"
