"""Governor: acquire order, settle/release accounting, breaker and budget flow, events, view."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from anvil_cli.policy.governor import (
    BreakerPolicy,
    BreakerView,
    CallAsk,
    Deny,
    Governor,
    GovernorSeed,
    Grant,
    Limits,
    Outcome,
    Wait,
    seed_from,
)

LIMITS = Limits(
    requests_per_minute=60, burst_size=2, input_tokens_per_minute=60_000, output_tokens_per_minute=6_000
)
POLICY = BreakerPolicy(failure_threshold=2, recovery_timeout_s=10.0, half_open_probes=1)


def _pools(limits: Limits = LIMITS) -> Callable[[str], tuple[str, Limits]]:
    return lambda model: (f"default:{model.split('-')[1]}", limits)


def _gov(max_usd: float | None = None, warn_usd: float | None = None, limits: Limits = LIMITS) -> Governor:
    return Governor(_pools(limits), POLICY, max_usd=max_usd, warn_usd=warn_usd, now=0.0)


def _grant(gov: Governor, model: str = "claude-opus-4-8", now: float = 0.0, **kw: Any) -> Grant:
    args = {"est_input_tokens": 1000, "max_tokens": 500, "worst_cost_usd": 0.01} | kw
    result = gov.acquire(model, now=now, **args)
    assert isinstance(result, Grant), result
    return result


def _levels(gov: Governor, now: float, pool: str = "default:opus") -> dict[str, float | None]:
    dims = gov.view(now).pools[pool].dimensions
    return {d: v.level for d, v in dims.items()}


def _kinds(gov: Governor) -> list[str]:
    return [e.kind for e in gov.drain_events()]


def test_grant_takes_from_every_bucket_and_reserves_the_budget() -> None:
    gov = _gov(max_usd=1.0)
    grant = _grant(gov)
    assert grant == Grant(1, "claude-opus-4-8", "default:opus", 1000, 500, 0.01, probe=False)
    assert _levels(gov, 0.0) == {"requests": 1.0, "input_tokens": 59_000.0, "output_tokens": 5_500.0}
    assert (gov.reserved_usd, gov.spent_usd) == (0.01, 0.0)
    assert _grant(gov).ticket == 2


@pytest.mark.parametrize(
    ("first", "ask", "expected"),
    [
        ((0, 0), (0, 0), Wait(1.0, "requests")),  # the burst of 2 is spent: one more per second
        ((58_000, 0), (4_000, 0), Wait(2.0, "input_tokens")),  # 2000 short at 1000/s
        ((0, 5_000), (0, 2_000), Wait(10.0, "output_tokens")),  # 1000 short at 100/s
    ],
)
def test_wait_names_the_binding_dimension_and_takes_nothing(
    first: tuple[int, int], ask: tuple[int, int], expected: Wait
) -> None:
    gov = _gov()
    _grant(gov, est_input_tokens=first[0], max_tokens=first[1])
    if expected.reason == "requests":
        _grant(gov, est_input_tokens=0, max_tokens=0)
    before = _levels(gov, 0.0)
    assert gov.acquire("claude-opus-4-8", ask[0], ask[1], 0.0, now=0.0) == expected
    assert _levels(gov, 0.0) == before


def test_settle_corrects_tokens_to_actual_and_keeps_the_request() -> None:
    gov = _gov()
    big, small, failed = _grant(gov), _grant(gov), _grant(gov, now=1.0)
    gov.settle(big.ticket, Outcome(ok=True, input_tokens=3000, output_tokens=800, cost_usd=0.02), now=1.0)
    gov.settle(small.ticket, Outcome(ok=True, input_tokens=200, output_tokens=100, cost_usd=0.003), now=1.0)
    gov.settle(failed.ticket, Outcome(ok=False, status_code=500, breaker_failure=True), now=1.0)
    # at t=1: requests 2 - 3 + 1 refilled; tokens: full - actual + 1 s of refill (the failure gave
    # its reservation back)
    assert _levels(gov, 1.0) == {
        "requests": 0.0,
        "input_tokens": 60_000 - 3200 + 1000,
        "output_tokens": 6_000 - 900 + 100,
    }
    assert gov.spent_usd == pytest.approx(0.023)
    assert gov.reserved_usd == pytest.approx(0.0)


def test_settle_and_release_are_idempotent_and_ignore_unknown_tickets() -> None:
    gov = _gov()
    grant = _grant(gov)
    outcome = Outcome(ok=True, input_tokens=1000, output_tokens=500, cost_usd=0.01)
    gov.settle(grant.ticket, outcome, now=0.0)
    after = _levels(gov, 0.0)
    gov.settle(grant.ticket, outcome, now=0.0)
    gov.release(grant.ticket, now=0.0)
    gov.settle(999, outcome, now=0.0)
    gov.release(999, now=0.0)
    assert (_levels(gov, 0.0), gov.spent_usd, gov.reserved_usd) == (after, 0.01, 0.0)


def test_release_refunds_everything_including_the_request() -> None:
    gov = _gov(max_usd=1.0)
    gov.release(_grant(gov).ticket, now=0.0)
    assert _levels(gov, 0.0) == {"requests": 2.0, "input_tokens": 60_000.0, "output_tokens": 6_000.0}
    assert (gov.reserved_usd, gov.view(0.0).in_flight) == (0.0, 0)


def test_output_reservation_follows_the_estimate_never_above_max_tokens() -> None:
    gov = _gov(limits=Limits(requests_per_minute=6000, burst_size=100))
    for _ in range(5):
        grant = _grant(gov, max_tokens=4000)
        gov.settle(grant.ticket, Outcome(ok=True, output_tokens=100), now=0.0)
    assert _grant(gov, max_tokens=4000).output_tokens == 120
    assert _grant(gov, max_tokens=50).output_tokens == 50
    assert _grant(gov, model="claude-opus-4-7", max_tokens=4000).output_tokens == 4000  # per model


def test_models_of_one_pool_share_buckets_but_not_breakers() -> None:
    gov = _gov()
    _grant(gov, model="claude-opus-4-8")
    _grant(gov, model="claude-opus-4-7")
    assert isinstance(gov.acquire("claude-opus-4-8", 0, 0, 0.0, now=0.0), Wait)
    _grant(gov, model="claude-sonnet-4-6")
    gov.set_breaker("claude-opus-4-8", "open", now=0.0)
    states = {m: b.state for m, b in gov.view(0.0).breakers.items()}
    assert states == {"claude-opus-4-8": "open", "claude-opus-4-7": "closed", "claude-sonnet-4-6": "closed"}


# --- budget ---------------------------------------------------------------------------------------


def test_budget_deny_once_exhausted_and_wait_while_reservations_block() -> None:
    gov = _gov(max_usd=0.10, warn_usd=0.05, limits=Limits(requests_per_minute=6000, burst_size=100))
    first, second = _grant(gov, worst_cost_usd=0.06), _grant(gov, worst_cost_usd=0.04)
    assert gov.acquire("claude-opus-4-8", 10, 10, 0.01, now=0.0) == Wait(1.0, "budget")
    gov.settle(first.ticket, Outcome(ok=True, cost_usd=0.055), now=1.0)
    gov.settle(second.ticket, Outcome(ok=True, cost_usd=0.04), now=1.0)
    assert _kinds(gov) == ["budget_warn"]
    denied = gov.acquire("claude-opus-4-8", 10, 10, 0.01, now=2.0)
    assert isinstance(denied, Deny) and denied.reason == "budget" and "$0.0950" in denied.message
    assert isinstance(gov.acquire("claude-opus-4-8", 10, 10, 0.01, now=2.0), Deny)
    events = gov.drain_events()
    assert [(e.kind, e.data) for e in events] == [
        (
            "budget_exhausted",
            {"spent_usd": pytest.approx(0.095), "reserved_usd": 0.0, "max_usd": 0.10, "worst_usd": 0.01},
        )
    ]
    assert _grant(gov, worst_cost_usd=0.005, now=2.0).cost_usd == 0.005  # a cheaper call still fits


def test_budget_comes_before_the_breaker() -> None:
    gov = _gov(max_usd=0.01)
    gov.set_breaker("claude-opus-4-8", "open", now=0.0)
    assert isinstance(gov.acquire("claude-opus-4-8", 10, 10, 1.0, now=0.0), Deny)


# --- breaker --------------------------------------------------------------------------------------


def test_breaker_opens_waits_probes_and_closes() -> None:
    gov = _gov(limits=Limits(requests_per_minute=6000, burst_size=100))
    fail = Outcome(ok=False, status_code=529, breaker_failure=True)
    for ticket in [_grant(gov).ticket, _grant(gov).ticket]:
        gov.settle(ticket, fail, now=1.0)
    assert gov.acquire("claude-opus-4-8", 10, 10, 0.0, now=4.0) == Wait(7.0, "breaker")
    probe = _grant(gov, now=11.0)
    assert probe.probe
    assert gov.acquire("claude-opus-4-8", 10, 10, 0.0, now=11.0) == Wait(1.0, "breaker")
    _grant(gov, model="claude-opus-4-7", now=11.0)  # other models are not affected
    gov.settle(probe.ticket, Outcome(ok=True), now=12.0)
    assert not _grant(gov, now=12.0).probe
    assert [(e.data["state"], e.at) for e in gov.drain_events()] == [
        ("open", 1.0),
        ("half_open", 11.0),
        ("closed", 12.0),
    ]


@pytest.mark.parametrize(
    ("outcome", "state_after"),
    [
        (Outcome(ok=False, status_code=500, breaker_failure=True), "open"),
        (Outcome(ok=False, status_code=429, retry_after_s=0.1), "half_open"),  # no verdict: slot freed
        (None, "half_open"),  # released
    ],
)
def test_probe_outcomes(outcome: Outcome | None, state_after: str) -> None:
    gov = _gov(limits=Limits(requests_per_minute=6000, burst_size=100))
    gov.set_breaker("claude-opus-4-8", "half_open", now=0.0)
    probe = _grant(gov)
    if outcome is None:
        gov.release(probe.ticket, now=1.0)
    else:
        gov.settle(probe.ticket, outcome, now=1.0)
    assert gov.view(1.0).breakers["claude-opus-4-8"].state == state_after
    if state_after == "half_open":
        assert _grant(gov, now=2.0).probe


def test_a_429_does_not_count_against_the_breaker() -> None:
    gov = _gov(limits=Limits(requests_per_minute=6000, burst_size=100))
    rate_limited = Outcome(ok=False, status_code=429, retry_after_s=0.0)
    for now in range(5):
        gov.settle(_grant(gov, now=now).ticket, rate_limited, now=now)
    assert gov.view(5.0).breakers["claude-opus-4-8"] == BreakerView(
        state="closed",
        failures=0,
        retry_in_s=None,
        probes_in_flight=0,
    )


# --- 429 pause and header adaptation --------------------------------------------------------------


def test_429_pauses_the_whole_pool_extending_never_shortening() -> None:
    gov = _gov(limits=Limits(requests_per_minute=600, burst_size=100))
    a, b, c = _grant(gov), _grant(gov, model="claude-opus-4-7"), _grant(gov)
    gov.settle(a.ticket, Outcome(ok=False, status_code=429, retry_after_s=5.0), now=1.0)
    gov.settle(b.ticket, Outcome(ok=False, status_code=429, retry_after_s=2.0), now=2.0)  # ends at 4: keep 6
    assert gov.acquire("claude-opus-4-7", 10, 10, 0.0, now=3.0) == Wait(3.0, "paused")
    assert isinstance(gov.acquire("claude-sonnet-4-6", 10, 10, 0.0, now=3.0), Grant)  # other pools run
    assert gov.view(3.0).pools["default:opus"].paused_until_s == 3.0
    gov.settle(c.ticket, Outcome(ok=False, status_code=429), now=5.5)  # no retry-after: 1 s, to 6.5
    events = gov.drain_events()
    assert [(e.kind, e.data) for e in events] == [
        ("paused", {"pool": "default:opus", "until": 6.0, "retry_after_s": 5.0}),
        ("paused", {"pool": "default:opus", "until": 6.5, "retry_after_s": 1.0}),
    ]
    # the requests bucket was emptied at 5.5 and refills at 10/s
    assert gov.acquire("claude-opus-4-8", 10, 10, 0.0, now=6.5) == Grant(
        5, "claude-opus-4-8", "default:opus", 10, 10, 0.0, False
    )
    assert gov.view(6.5).pools["default:opus"].paused_until_s is None


def test_settle_headers_adapt_the_pool_and_emit_limit_adapted_once() -> None:
    gov = _gov()
    headers = {"anthropic-ratelimit-requests-limit": "30", "anthropic-ratelimit-requests-remaining": "0"}
    for now in (0.0, 5.0):
        gov.settle(_grant(gov, now=now).ticket, Outcome(ok=True, headers=headers), now=now)
    events = [(e.kind, e.data) for e in gov.drain_events()]
    assert events == [
        (
            "limit_adapted",
            {
                "pool": "default:opus",
                "dimension": "requests",
                "configured_per_min": 60,
                "server_per_min": 30.0,
                "effective_per_min": 30.0,
            },
        )
    ]
    dims = gov.view(5.0).pools["default:opus"].dimensions
    assert (dims["requests"].rate_per_min, dims["requests"].configured_per_min) == (30.0, 60)
    assert dims["requests"].capacity == 1.0  # burst 2 scaled by 30/60
    assert gov.acquire("claude-opus-4-8", 10, 10, 0.0, now=5.0) == Wait(2.0, "requests")


def test_the_view_pickles_as_it_crosses_a_manager_or_ray() -> None:
    gov = _gov(max_usd=5.0, warn_usd=1.0)
    _grant(gov)
    gov.set_breaker("claude-opus-4-8", "open", now=0.0)
    view = gov.view(1.0)
    assert pickle.loads(pickle.dumps(view)) == view


def test_the_view_is_json_and_reports_reservations_in_flight() -> None:
    gov = _gov(max_usd=5.0, warn_usd=1.0, limits=Limits(requests_per_minute=60, burst_size=5))
    _grant(gov)
    _grant(gov, est_input_tokens=500, max_tokens=100)
    gov.set_breaker("claude-opus-4-8", "open", now=0.0)
    snap = json.loads(json.dumps(gov.view(4.0).to_dict()))
    assert snap == {
        "pools": {
            "default:opus": {
                "paused_until_s": None,
                "dimensions": {
                    "requests": {
                        "capacity": 5.0,
                        "level": 5.0,
                        "rate_per_min": 60,
                        "configured_per_min": 60,
                        "reserved_in_flight": 2.0,
                    },
                    "input_tokens": {
                        "capacity": None,
                        "level": None,
                        "rate_per_min": None,
                        "configured_per_min": None,
                        "reserved_in_flight": 1500.0,
                    },
                    "output_tokens": {
                        "capacity": None,
                        "level": None,
                        "rate_per_min": None,
                        "configured_per_min": None,
                        "reserved_in_flight": 600.0,
                    },
                },
            }
        },
        "breakers": {
            "claude-opus-4-8": {"state": "open", "failures": 0, "retry_in_s": 6.0, "probes_in_flight": 0}
        },
        "budget": {"spent_usd": 0.0, "reserved_usd": 0.02, "max_usd": 5.0, "warn_usd": 1.0},
        "in_flight": 2,
    }


# --- acquire_many: a worker's waiting calls in one round trip, priority across workers ------


def _asks(n: int) -> list[CallAsk]:
    return [CallAsk(est_input_tokens=100, max_tokens=50, worst_cost_usd=0.001) for _ in range(n)]


def test_acquire_many_grants_the_prefix_that_fits_and_says_why_the_rest_wait() -> None:
    gov = _gov()  # burst 2 (less the reserve: the engine sets none here)
    got = gov.acquire_many("claude-opus-4-8", _asks(5), now=0.0)
    assert len(got.grants) == 2 and isinstance(got.then, Wait) and got.then.reason == "requests"
    assert len({g.ticket for g in got.grants}) == 2
    for g in got.grants:
        gov.settle(g.ticket, Outcome(ok=True, input_tokens=100, output_tokens=50), now=0.5)
    assert gov.view(0.5).in_flight == 0


def test_a_less_urgent_asker_waits_while_a_more_urgent_one_is_held_back() -> None:
    gov = _gov()
    model = "claude-opus-4-8"
    assert len(gov.acquire_many(model, _asks(2), now=0.0, priority=3, asker=1).grants) == 2  # burst used
    urgent = gov.acquire_many(model, _asks(1), now=0.1, priority=0, asker=2)
    assert urgent.grants == [] and isinstance(urgent.then, Wait) and urgent.then.reason == "requests"
    # one request refills in 1 s: the low-priority asker comes first in time, but must wait
    low = gov.acquire_many(model, _asks(1), now=1.05, priority=3, asker=1)
    assert low.grants == [] and isinstance(low.then, Wait) and low.then.reason == "priority"
    assert len(gov.acquire_many(model, _asks(1), now=1.06, priority=0, asker=2).grants) == 1
    # the urgent asker was served: the other is no longer held back (its hold is gone)
    assert gov.acquire_many(model, _asks(1), now=2.2, priority=3, asker=1).grants


def test_a_stale_urgent_ask_holds_nobody_back() -> None:
    gov = _gov()
    model = "claude-opus-4-8"
    gov.acquire_many(model, _asks(2), now=0.0, priority=3, asker=1)
    assert not gov.acquire_many(model, _asks(1), now=0.1, priority=0, asker=2).grants  # then it went away
    assert gov.acquire_many(model, _asks(1), now=5.0, priority=3, asker=1).grants  # hold expired


def test_acquire_many_stops_at_the_budget() -> None:
    gov = _gov(max_usd=0.0025)
    got = gov.acquire_many("claude-haiku-4-5", _asks(2) + _asks(1), now=0.0)
    assert len(got.grants) == 2 and isinstance(got.then, Wait) and got.then.reason == "budget"
    for g in got.grants:
        gov.settle(g.ticket, Outcome(ok=True, cost_usd=0.001), now=0.1)
    assert isinstance(gov.acquire_many("claude-haiku-4-5", _asks(1), now=0.2).then, Deny)


def test_a_replacement_governor_starts_conservatively_from_what_the_lost_one_showed() -> None:
    lost = _gov()
    headers = {"anthropic-ratelimit-requests-limit": "30"}
    lost.settle(_grant(lost).ticket, Outcome(ok=True, headers=headers), now=0.0)  # learned: 30/min
    old_ticket = _grant(lost, now=1.0).ticket  # in flight when the governor is lost
    seed = seed_from(lost.view(1.0), generation=1)
    assert seed.models == ("claude-opus-4-8",)
    assert seed.rates_per_min["default:opus"]["requests"] == 30.0

    new = Governor(_pools(), POLICY, max_usd=1.0, warn_usd=None, now=100.0, seed=seed)
    assert [(e.kind, e.data["state"]) for e in new.drain_events()] == [("breaker", "half_open")]
    dims = new.view(100.0).pools["default:opus"].dimensions
    assert dims["requests"].rate_per_min == 30.0  # the learned rate, not the configured 60
    assert all(d.level == 0.0 for d in dims.values())  # no burst: the old calls are in flight
    assert new.acquire("claude-opus-4-8", 10, 10, 0.0, now=100.0) == Wait(2.0, "requests")
    probe = _grant(new, now=105.0)  # once the buckets have refilled enough (output: 100/s)
    assert probe.probe and probe.ticket > old_ticket  # tickets apart from the lost governor's
    assert new.acquire("claude-opus-4-8", 10, 10, 0.0, now=106.0) == Wait(1.0, "breaker")
    # a call the lost governor granted still counts against the budget when it settles here
    new.settle(old_ticket, Outcome(ok=True, cost_usd=0.2), now=106.0)
    assert new.spent_usd == 0.2
    # the probe succeeds: closed again; the server's headers bring the rate back up to the configured
    full = {"anthropic-ratelimit-requests-limit": "1000"}
    new.settle(probe.ticket, Outcome(ok=True, cost_usd=0.1, headers=full), now=107.0)
    assert new.view(107.0).breakers["claude-opus-4-8"].state == "closed"
    assert new.view(107.0).pools["default:opus"].dimensions["requests"].rate_per_min == 60
    assert new.spent_usd == pytest.approx(0.3)


def test_a_model_first_seen_by_a_replacement_governor_is_probed_first() -> None:
    new = Governor(_pools(), POLICY, max_usd=None, warn_usd=None, now=0.0, seed=GovernorSeed(generation=2))
    assert _grant(new, model="claude-haiku-4-5").probe
    assert new.acquire("claude-haiku-4-5", 10, 10, 0.0, now=0.0) == Wait(1.0, "breaker")
