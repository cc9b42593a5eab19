"""Rate learning without headers (Bedrock, Vertex): a 429 cuts the endpoint's requests rate by
0.7 once per overload, successes add it back step by step up to the configured rate; each
change is a `limit_adapted` event marked `learned`. A fake clock throughout."""

from __future__ import annotations

from typing import Any

import pytest

from anvil_cli.policy.governor import BreakerPolicy, Governor, Grant, Limits, Outcome, Route, RouteTable
from anvil_cli.policy.governor.learn import MIN_PER_MIN

SONNET = "claude-sonnet-4-6"
RATE_LIMITED = Outcome(ok=False, status_code=429, retry_after_s=0.0)


def _gov(*, learns_rate: bool = True, rpm: float = 600) -> Governor:
    limits = Limits(requests_per_minute=rpm, burst_size=1000)
    route = Route("bedrock", lambda _m: ("default:sonnet", limits), learns_rate=learns_rate)
    return Governor(RouteTable((route,)), BreakerPolicy(), max_usd=None, warn_usd=None, now=0.0)


def _sent(gov: Governor, calls: int) -> list[Grant]:
    """`calls` calls sent at once at the start (their answers come later)."""
    grants = []
    for _ in range(calls):
        grant = gov.acquire(SONNET, 0, 0, 0.0, now=0.0)
        assert isinstance(grant, Grant), grant
        grants.append(grant)
    return grants


def _rate(gov: Governor, now: float) -> float | None:
    return gov.view(now).pools["bedrock/default:sonnet"].dimensions["requests"].rate_per_min


def _learned(gov: Governor) -> list[dict[str, Any]]:
    return [e.data for e in gov.drain_events() if e.kind == "limit_adapted"]


def test_a_429_cuts_the_rate_once_per_overload() -> None:
    gov = _gov()
    calls = _sent(gov, 5)
    gov.settle(calls[0].ticket, RATE_LIMITED, now=0.0)
    assert _rate(gov, 0.0) == pytest.approx(420.0)
    assert _learned(gov) == [
        {
            "pool": "bedrock/default:sonnet",
            "dimension": "requests",
            "configured_per_min": 600,
            "server_per_min": None,
            "effective_per_min": pytest.approx(420.0),
            "learned": True,
            "reason": "rate_limited",
        }
    ]
    for grant, now in zip(calls[1:4], (0.1, 0.5, 0.9), strict=True):  # the same overload's 429s
        gov.settle(grant.ticket, RATE_LIMITED, now=now)
    assert _rate(gov, 0.9) == pytest.approx(420.0) and _learned(gov) == []
    gov.settle(calls[4].ticket, RATE_LIMITED, now=3.0)  # a slow answer to a call sent before the cut
    assert _rate(gov, 3.0) == pytest.approx(420.0)
    later = gov.acquire(SONNET, 0, 0, 0.0, now=3.5)
    assert isinstance(later, Grant)
    gov.settle(later.ticket, RATE_LIMITED, now=3.7)  # sent at the lowered rate, refused all the same
    assert _rate(gov, 3.7) == pytest.approx(294.0)
    assert gov.view(3.7).pools["bedrock/default:sonnet"].dimensions["requests"].configured_per_min == 600


def test_the_rate_never_falls_below_the_floor() -> None:
    gov = _gov(rpm=10)
    for minute in range(20):
        grant = gov.acquire(SONNET, 0, 0, 0.0, now=minute * 100.0)
        assert isinstance(grant, Grant), grant
        gov.settle(grant.ticket, RATE_LIMITED, now=minute * 100.0 + 0.5)
    assert _rate(gov, 2000.0) == MIN_PER_MIN


def test_successes_raise_the_rate_back_to_the_configured_and_report_in_steps() -> None:
    gov = _gov()
    calls = iter(_sent(gov, 111))
    gov.settle(next(calls).ticket, RATE_LIMITED, now=0.0)
    gov.drain_events()
    gov.settle(next(calls).ticket, Outcome(ok=True), now=1.0)
    assert _rate(gov, 1.0) == pytest.approx(423.0)  # + 0.5% of 600 a success
    for _ in range(9):
        gov.settle(next(calls).ticket, Outcome(ok=True), now=1.0)
    assert _rate(gov, 1.0) == pytest.approx(450.0)
    assert [(e["effective_per_min"], e["reason"]) for e in _learned(gov)] == [
        (pytest.approx(450.0), "recovering")  # every 5% of the configured, not every success
    ]
    for grant in calls:
        gov.settle(grant.ticket, Outcome(ok=True), now=2.0)
    assert _rate(gov, 2.0) == 600  # capped at the configured rate
    events = _learned(gov)
    assert len(events) == 5 and events[-1]["effective_per_min"] == 600


def test_an_anthropic_endpoint_does_not_learn_from_429s() -> None:
    gov = _gov(learns_rate=False)
    gov.settle(_sent(gov, 1)[0].ticket, RATE_LIMITED, now=0.0)
    assert _rate(gov, 0.0) == 600 and _learned(gov) == []


def test_other_failures_leave_the_learned_rate_alone() -> None:
    gov = _gov()
    first, second = _sent(gov, 2)
    gov.settle(first.ticket, RATE_LIMITED, now=0.0)
    gov.settle(second.ticket, Outcome(ok=False, status_code=529, breaker_failure=True), now=2.0)
    assert _rate(gov, 2.0) == pytest.approx(420.0)
