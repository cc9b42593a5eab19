"""The governor grants a call an endpoint as well as a slot: work-conserving across endpoints,
listed or cheapest first, shared ceilings, failover by breaker and pause, prompt-prefix
affinity, per-endpoint views and seeds. A fake clock throughout."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from anvil_cli.policy.governor import (
    BreakerPolicy,
    CallAsk,
    Ceiling,
    Governor,
    Grant,
    Limits,
    Outcome,
    Route,
    RouteTable,
    Wait,
    seed_from,
)

SONNET = "claude-sonnet-4-6"
POLICY = BreakerPolicy(failure_threshold=2, recovery_timeout_s=10.0, half_open_probes=1)
OK = Outcome(ok=True)
FAIL = Outcome(ok=False, status_code=529, breaker_failure=True)


def _class_pools(limits: Limits) -> Callable[[str], tuple[str, Limits]]:
    return lambda model: (f"default:{model.split('-')[1]}", limits)


def _route(
    name: str,
    rpm: float,
    burst: int = 10,
    *,
    itpm: float | None = None,
    ceilings: tuple[str, ...] = (),
    learns_rate: bool = False,
) -> Route:
    limits = Limits(requests_per_minute=rpm, burst_size=burst, input_tokens_per_minute=itpm)
    return Route(name, _class_pools(limits), learns_rate=learns_rate, ceilings=ceilings)


def _gov(
    *routes: Route,
    ceilings: Sequence[Ceiling] = (),
    order_for: Callable[[str], Sequence[str]] | None = None,
) -> Governor:
    table = RouteTable(tuple(routes), tuple(ceilings), order_for)
    return Governor(table, POLICY, max_usd=None, warn_usd=None, now=0.0)


def _ask(gov: Governor, now: float, model: str = SONNET, affinity: str | None = None) -> Grant | Wait:
    decision = gov.acquire(model, 0, 0, 0.0, now=now, affinity=affinity)
    assert isinstance(decision, Grant | Wait), decision
    return decision


def _grant(gov: Governor, now: float, model: str = SONNET, affinity: str | None = None) -> Grant:
    decision = _ask(gov, now, model, affinity)
    assert isinstance(decision, Grant), decision
    return decision


def _drive(gov: Governor, start: float, end: float, step: float = 0.01) -> Counter[str]:
    """Ask as fast as grants come from `start` to `end` (each call settled at once): the
    endpoints the grants named."""
    counts: Counter[str] = Counter()
    for i in range(round((end - start) / step)):
        now = start + i * step
        while isinstance(decision := _ask(gov, now), Grant):
            counts[decision.endpoint] += 1
            gov.settle(decision.ticket, OK, now=now)
    return counts


def test_two_endpoints_grant_the_sum_of_their_rates_in_their_capacity_shares() -> None:
    gov = _gov(_route("a", 600), _route("b", 300))
    counts = _drive(gov, 0.0, 60.0)
    total = counts["a"] + counts["b"]
    assert 900 <= total <= 900 + 2 * 10 + 2  # a minute of both rates, plus both bursts
    assert counts["a"] / total == pytest.approx(2 / 3, abs=0.05)
    alone = _drive(_gov(_route("a", 600)), 0.0, 60.0)
    assert sum(alone.values()) <= 600 + 10 + 1  # what one of them grants by itself


def test_listed_order_or_the_given_order_first_while_it_has_capacity() -> None:
    listed = _gov(_route("a", 600), _route("b", 600))
    cheapest_b = _gov(_route("a", 600), _route("b", 600), order_for=lambda _model: ["b", "a"])
    for now in range(10):  # light load: the first endpoint always fits
        assert _grant(listed, float(now)).endpoint == "a"
        assert _grant(cheapest_b, float(now)).endpoint == "b"
    assert [_grant(cheapest_b, 10.0).endpoint for _ in range(12)] == ["b"] * 10 + ["a"] * 2  # b's burst


def test_a_shared_ceiling_caps_its_endpoints_together_and_charges_both() -> None:
    org = Ceiling("org", _class_pools(Limits(requests_per_minute=600, burst_size=10)))
    gov = _gov(_route("a", 600, ceilings=("org",)), _route("b", 600, ceilings=("org",)), ceilings=[org])
    counts = _drive(gov, 0.0, 60.0)
    assert 600 <= counts["a"] + counts["b"] <= 600 + 10 + 1  # not 1,200
    assert set(gov.view(60.0).pools) == {"a/default:sonnet", "org/default:sonnet", "b/default:sonnet"}


def test_settle_and_release_adjust_the_endpoint_pool_and_its_ceiling() -> None:
    tokens = Limits(requests_per_minute=60, burst_size=5, input_tokens_per_minute=60_000)
    org = Ceiling("org", _class_pools(tokens))
    gov = _gov(_route("a", 60, burst=5, itpm=60_000, ceilings=("org",)), ceilings=[org])
    big = gov.acquire(SONNET, 10_000, 0, 0.0, now=0.0)
    kept = gov.acquire(SONNET, 5_000, 0, 0.0, now=0.0)
    assert isinstance(big, Grant) and isinstance(kept, Grant)
    reserved = {k: p.dimensions["input_tokens"].reserved_in_flight for k, p in gov.view(0.0).pools.items()}
    assert reserved == {"a/default:sonnet": 15_000.0, "org/default:sonnet": 15_000.0}
    gov.settle(big.ticket, Outcome(ok=True, input_tokens=4_000), now=0.0)
    gov.release(kept.ticket, now=0.0)
    pools = gov.view(0.0).pools
    assert [pools[k].dimensions["input_tokens"].level for k in pools] == [56_000.0, 56_000.0]
    assert [pools[k].dimensions["requests"].level for k in pools] == [4.0, 4.0]


def test_an_endpoint_whose_breaker_opens_loses_its_share_until_its_probe_succeeds() -> None:
    gov = _gov(_route("a", 600), _route("b", 300))
    for grant in [_grant(gov, 0.0), _grant(gov, 0.0)]:
        assert grant.endpoint == "a"
        gov.settle(grant.ticket, FAIL, now=0.0)
    assert gov.view(0.0).breakers["a/claude-sonnet-4-6"].state == "open"
    assert _drive(gov, 0.0, 9.99)["a"] == 0  # all to b while a is open
    probe = _grant(gov, 10.0)  # a's recovery timeout is over: its probe goes first
    assert (probe.endpoint, probe.probe) == ("a", True)
    meanwhile = _grant(gov, 10.0)
    assert (meanwhile.endpoint, meanwhile.probe) == ("b", False)  # one probe: the rest to b
    gov.settle(meanwhile.ticket, OK, now=10.5)
    gov.settle(probe.ticket, OK, now=10.5)
    assert gov.view(10.5).breakers["a/claude-sonnet-4-6"].state == "closed"
    counts = _drive(gov, 11.0, 41.0)
    assert counts["a"] / (counts["a"] + counts["b"]) == pytest.approx(2 / 3, abs=0.05)
    breaker_events = [
        (e.data["endpoint"], e.data["state"]) for e in gov.drain_events() if e.kind == "breaker"
    ]
    assert breaker_events == [("a", "open"), ("a", "half_open"), ("a", "closed")]


def test_a_failed_probe_reopens_only_that_endpoint() -> None:
    gov = _gov(_route("a", 600), _route("b", 300))
    gov.set_breaker("a/" + SONNET, "half_open", now=0.0)
    probe = _grant(gov, 0.0)
    assert probe.endpoint == "a" and probe.probe
    gov.settle(probe.ticket, FAIL, now=1.0)
    states = {k: b.state for k, b in gov.view(1.0).breakers.items()}
    assert states == {"a/claude-sonnet-4-6": "open", "b/claude-sonnet-4-6": "closed"}
    assert _grant(gov, 1.0).endpoint == "b"


def test_acquire_many_goes_on_to_other_endpoints_after_a_probe() -> None:
    gov = _gov(_route("a", 600), _route("b", 300))
    gov.set_breaker("a/" + SONNET, "half_open", now=0.0)
    got = gov.acquire_many(SONNET, [CallAsk(0, 0, 0.0)] * 3, now=0.0)
    assert [(g.endpoint, g.probe) for g in got.grants] == [("a", True), ("b", False), ("b", False)]
    assert got.then is None


def test_a_retry_goes_to_another_endpoint() -> None:
    """A call that failed on `a` (its breaker still closed, or due for its probe) is retried on
    `b`, waiting for room there rather than going back to `a`, and is no probe of `a`; when `b`
    refuses the model (its breaker open) it may go back to `a`."""
    gov = _gov(_route("a", 600), _route("b", 60, burst=1))
    first = _grant(gov, 0.0)
    assert first.endpoint == "a"
    gov.settle(first.ticket, FAIL, now=0.0)
    retry = gov.acquire(SONNET, 0, 0, 0.0, now=0.0, avoid="a")
    assert isinstance(retry, Grant) and retry.endpoint == "b"
    assert gov.acquire(SONNET, 0, 0, 0.0, now=0.0, avoid="a") == Wait(1.0, "requests")  # b's refill
    assert _grant(gov, 0.0).endpoint == "a"  # a first try still goes to a
    gov.set_breaker("a/" + SONNET, "half_open", now=1.0)
    got = gov.acquire_many(SONNET, [CallAsk(0, 0, 0.0, avoid="a")], now=61.0)
    assert [(g.endpoint, g.probe) for g in got.grants] == [("b", False)]
    gov.set_breaker("b/" + SONNET, "open", now=61.0)
    back = gov.acquire(SONNET, 0, 0, 0.0, now=61.0, avoid="a")
    assert isinstance(back, Grant) and back.endpoint == "a"


def test_wait_breaker_only_when_every_endpoint_refuses() -> None:
    gov = _gov(_route("a", 60, burst=1), _route("b", 60, burst=1))
    gov.set_breaker("a/" + SONNET, "open", now=0.0)
    assert _grant(gov, 0.0).endpoint == "b"
    assert _ask(gov, 0.5) == Wait(0.5, "requests")  # a is open, b is out of requests: b's wait
    gov.set_breaker(SONNET, "open", now=0.5)  # a bare model: every endpoint
    assert _ask(gov, 0.5) == Wait(10.0, "breaker")
    gov.set_breaker("b/" + SONNET, "closed", now=0.5)
    assert _grant(gov, 1.0).endpoint == "b"
    with pytest.raises(ValueError, match="unknown endpoint 'c'"):
        gov.set_breaker("c/" + SONNET, "open", now=1.0)


def test_a_paused_endpoint_sends_its_calls_to_the_others() -> None:
    gov = _gov(_route("a", 600), _route("b", 600))
    first = _grant(gov, 0.0)
    assert first.endpoint == "a"
    gov.settle(first.ticket, Outcome(ok=False, status_code=429, retry_after_s=5.0), now=0.0)
    assert gov.paused_pools(0.0) == ["a/default:sonnet"]
    assert {_grant(gov, t / 10).endpoint for t in range(50)} == {"b"}
    assert _grant(gov, 5.0).endpoint == "a"
    paused = [e.data for e in gov.drain_events() if e.kind == "paused"]
    assert paused == [{"pool": "a/default:sonnet", "until": 5.0, "retry_after_s": 5.0}]


def test_a_prompt_prefix_prefers_the_endpoint_that_served_it_while_that_one_fits() -> None:
    gov = _gov(_route("a", 60, burst=2), _route("b", 60, burst=2))
    for _ in range(2):
        _grant(gov, 0.0)  # a's burst is spent
    assert _grant(gov, 0.0, affinity="prefix-1").endpoint == "b"  # remembered: b
    assert _grant(gov, 2.0).endpoint == "a"  # both refilled; no affinity: the listed order
    assert _grant(gov, 2.0, affinity="prefix-1").endpoint == "b"  # a fits too: b is preferred
    assert _grant(gov, 2.0, affinity="prefix-1").endpoint == "b"
    assert _grant(gov, 2.0, affinity="prefix-1").endpoint == "a"  # b is out: fall over to a
    assert _grant(gov, 3.0, affinity="prefix-1").endpoint == "a"  # both fit: a is remembered now
    asked = gov.acquire_many(SONNET, [CallAsk(0, 0, 0.0, affinity="prefix-2")], now=4.0)
    assert [g.endpoint for g in asked.grants] == ["a"]


def test_priority_holds_across_the_endpoints_of_a_model() -> None:
    gov = _gov(_route("a", 60, burst=1), _route("b", 60, burst=1))
    assert len(gov.acquire_many(SONNET, [CallAsk(0, 0, 0.0)] * 2, now=0.0, priority=3, asker=1).grants) == 2
    urgent = gov.acquire_many(SONNET, [CallAsk(0, 0, 0.0)], now=0.1, priority=0, asker=2)
    assert urgent.grants == [] and isinstance(urgent.then, Wait) and urgent.then.reason == "requests"
    low = gov.acquire_many(SONNET, [CallAsk(0, 0, 0.0)], now=1.05, priority=3, asker=1)
    assert low.grants == [] and low.then == Wait(0.02, "priority")
    assert len(gov.acquire_many(SONNET, [CallAsk(0, 0, 0.0)], now=1.06, priority=0, asker=2).grants) == 1


def test_an_endpoint_that_cannot_serve_a_model_is_skipped() -> None:
    opus_only = Route("opus-only", lambda m: ("default:opus", Limits(600, 10)) if "opus" in m else None)
    gov = _gov(opus_only, _route("b", 600))
    assert _grant(gov, 0.0).endpoint == "b"
    assert _grant(gov, 0.0, model="claude-opus-4-8").endpoint == "opus-only"
    gov.set_breaker(SONNET, "open", now=0.0)  # where it is served: b
    states = {k: b.state for k, b in gov.view(0.0).breakers.items()}
    assert states == {
        "b/claude-sonnet-4-6": "open",
        "opus-only/claude-opus-4-8": "closed",
        "b/claude-opus-4-8": "closed",
    }
    nowhere = _gov(opus_only).acquire(SONNET, 0, 0, 0.0, now=0.0)
    assert not isinstance(nowhere, Grant | Wait) and nowhere.reason == "no_endpoint"


def test_the_view_names_each_endpoint_only_when_there_are_named_ones() -> None:
    gov = _gov(_route("a", 600), _route("b", 300))
    held = _grant(gov, 0.0)
    gov.settle(_grant(gov, 0.0).ticket, OK, now=0.0)
    assert held.pool == "a/default:sonnet"
    doc = json.loads(json.dumps(gov.view(0.0).to_dict()))
    assert list(doc) == ["pools", "breakers", "endpoints", "budget", "in_flight"]
    assert doc["endpoints"] == {
        "a": {"in_flight": 1, "granted_total": 2},
        "b": {"in_flight": 0, "granted_total": 0},
    }
    assert list(doc["breakers"]) == ["a/claude-sonnet-4-6", "b/claude-sonnet-4-6"]


def test_without_endpoints_keys_events_and_json_are_as_before() -> None:
    limits = Limits(requests_per_minute=60, burst_size=2)

    def run(gov: Governor) -> tuple[Grant, dict[str, Any], list[tuple[str, dict[str, Any]]], list[str]]:
        a = _grant(gov, 0.0)
        gov.settle(_grant(gov, 0.0).ticket, Outcome(ok=False, status_code=429, retry_after_s=2.0), now=0.0)
        gov.set_breaker(SONNET, "open", now=1.0)
        view = gov.view(1.0)
        return a, view.to_dict(), [(e.kind, e.data) for e in gov.drain_events()], gov.paused_pools(1.0)

    plain = run(Governor(_class_pools(limits), POLICY, max_usd=1.0, warn_usd=None, now=0.0))
    table = run(
        Governor(RouteTable.single(_class_pools(limits)), POLICY, max_usd=1.0, warn_usd=None, now=0.0)
    )
    assert plain == table
    grant, doc, events, paused = plain
    assert grant == Grant(1, SONNET, "default:sonnet", 0, 0, 0.0, False, "")
    assert list(doc) == ["pools", "breakers", "budget", "in_flight"]
    assert list(doc["pools"]) == ["default:sonnet"] and list(doc["breakers"]) == [SONNET]
    assert events == [
        ("paused", {"pool": "default:sonnet", "until": 2.0, "retry_after_s": 2.0}),
        ("breaker", {"model": SONNET, "state": "open", "failures": 0}),
    ]
    assert paused == ["default:sonnet"]


def test_a_replacement_governor_restores_each_endpoints_pools_and_breakers() -> None:
    org = Ceiling("org", _class_pools(Limits(requests_per_minute=900, burst_size=10)))
    routes = (_route("a", 600, ceilings=("org",)), _route("b", 300, learns_rate=True))
    lost = _gov(*routes, ceilings=[org])
    _grant(lost, 0.0)
    for _ in range(11):
        _grant(lost, 0.0)  # a's burst is spent: b
    rate_limited = _grant(lost, 0.0)
    assert rate_limited.endpoint == "b"
    lost.settle(rate_limited.ticket, Outcome(ok=False, status_code=429), now=0.0)  # b learns 210/min
    seed = seed_from(lost.view(1.0), generation=1)
    assert seed.models == ("a/claude-sonnet-4-6", "b/claude-sonnet-4-6")
    new = Governor(RouteTable(routes, (org,)), POLICY, max_usd=None, warn_usd=None, now=100.0, seed=seed)
    view = new.view(100.0)
    assert {k: b.state for k, b in view.breakers.items()} == {
        "a/claude-sonnet-4-6": "half_open",
        "b/claude-sonnet-4-6": "half_open",
    }
    assert view.pools["b/default:sonnet"].dimensions["requests"].rate_per_min == pytest.approx(210.0)
    assert {k: p.dimensions["requests"].level for k, p in view.pools.items()} == {
        "a/default:sonnet": 0.0,
        "org/default:sonnet": 0.0,
        "b/default:sonnet": 0.0,
    }
    probes = [_grant(new, 101.0), _grant(new, 101.0)]  # one probe per endpoint, once refilled
    assert [(g.endpoint, g.probe) for g in probes] == [("a", True), ("b", True)]
    assert _ask(new, 101.0) == Wait(1.0, "breaker")
