"""Breaker and scaling history: the events a run driver keeps for its views
(`EngineState.history`) and the journal stores (`events` of kind "breaker" and "scaled"), in one
typed shape, and how to say them in a line. Pure: reads neither the journal nor a clock."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from anvil_cli.snapshot.types import BreakerEvent, HistoryEvent, ScalingEvent

HISTORY_KINDS = ("breaker", "scaled")


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def history_event(raw: Mapping[str, Any]) -> HistoryEvent | None:
    """A breaker or scaling event, as a driver keeps it (`EngineState.history`) or the journal
    stores it (`{at, kind, **data}`), in the snapshot's typed shape; None for any other."""
    at = _num(raw.get("at"))
    if at is None:
        return None
    if raw.get("kind") == "breaker":
        breaker: BreakerEvent = {
            "at": at,
            "kind": "breaker",
            "model": str(raw.get("model") or ""),
            "state": str(raw.get("state") or ""),
            "failures": int(raw.get("failures") or 0),
        }
        for key in ("endpoint", "reason"):  # a named endpoint's; a refusal's
            if raw.get(key):
                breaker[key] = str(raw[key])
        return breaker
    if raw.get("kind") == "scaled":
        busy, limiter = _num(raw.get("busy")), _num(raw.get("limiter_pct"))
        scaled: ScalingEvent = {
            "at": at,
            "kind": "scaled",
            "agents_from": int(raw.get("from") or 0),
            "agents_to": int(raw.get("to") or 0),
            "busy": None if busy is None else int(busy),
            "limiter_pct": None if limiter is None else round(limiter, 1),
        }
        return scaled
    return None


def history_of(raws: Iterable[Mapping[str, Any]]) -> list[HistoryEvent]:
    """Breaker and scaling events in the snapshot's shape, oldest first."""
    events = [e for e in (history_event(raw) for raw in raws) if e is not None]
    return sorted(events, key=lambda e: e["at"])


def describe_event(event: HistoryEvent) -> str:
    """One line: `breaker claude-sonnet-4-6 open (5 failures)`, `breaker org-a/claude-sonnet-4-6
    open (authentication_error)`, `agents 20 → 14 (...)`."""
    if event["kind"] == "breaker":
        failures = (
            f" ({event['failures']} failures)" if event["state"] == "open" and event["failures"] else ""
        )
        if "reason" in event and event["state"] == "open":
            failures = f" ({event['reason']})"
        where = f"{event['endpoint']}/" if "endpoint" in event else ""
        return f"breaker {where}{event['model']} {event['state']}{failures}"
    why = []
    if event["busy"] is not None:
        why.append(f"{event['busy']} busy")
    if event["limiter_pct"] is not None:
        why.append(f"rate limit {event['limiter_pct']:.0f}% used")
    reason = f" ({', '.join(why)})" if why else ""
    return f"agents {event['agents_from']} → {event['agents_to']}{reason}"
