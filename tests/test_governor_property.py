"""Randomized runs at a fake clock: the governor never exceeds its rates, and converges on the server's."""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_left, bisect_right
from itertools import accumulate

import pytest

from anvil_cli.policy.governor import BreakerPolicy, Governor, Grant, Limits, Outcome, TokenBucket, Wait

RPM, BURST, ITPM = 120.0, 10, 30_000.0
LIMITS = Limits(requests_per_minute=RPM, burst_size=BURST, input_tokens_per_minute=ITPM)
MODELS = ["claude-sonnet-4-6", "claude-sonnet-4-5"]  # one pool


def _governor(limits: Limits = LIMITS) -> Governor:
    return Governor(
        lambda m: ("default:sonnet", limits), BreakerPolicy(), max_usd=None, warn_usd=None, now=0.0
    )


def _max_in_window(times: list[float], amounts: list[float], window_s: float) -> float:
    """The largest sum of `amounts` at sorted `times` over any closed window [t, t + window_s]."""
    prefix = [0.0, *accumulate(amounts)]
    return max(
        prefix[bisect_right(times, start + window_s)] - prefix[bisect_left(times, start)] for start in times
    )


def _random_outcome(rng: random.Random, grant: Grant, headers: dict[str, str]) -> Outcome:
    roll = rng.random()
    if roll < 0.1:
        return Outcome(ok=False, status_code=429, retry_after_s=rng.choice([None, 0.5, 2.0]), headers=headers)
    if roll < 0.2:
        return Outcome(ok=False, status_code=529, breaker_failure=rng.random() < 0.3)
    used_in = rng.randint(0, grant.input_tokens)  # the estimate is an upper bound here
    return Outcome(ok=True, input_tokens=used_in, output_tokens=rng.randint(0, 600), headers=headers)


@pytest.mark.parametrize("seed", range(4))
def test_random_traffic_never_exceeds_rate_times_window_plus_burst(seed: int) -> None:
    rng = random.Random(seed)
    gov = _governor()
    now = 0.0
    in_flight: list[Grant] = []
    sent_at: dict[int, float] = {}
    token_charges: list[tuple[float, float]] = []  # (time, net input tokens charged)
    for _ in range(4000):
        now += rng.expovariate(20.0)
        if rng.random() < 0.6 or not in_flight:
            result = gov.acquire(rng.choice(MODELS), rng.randint(1, 4000), 1000, 0.0, now=now)
            if isinstance(result, Grant):
                in_flight.append(result)
                sent_at[result.ticket] = now
                token_charges.append((now, result.input_tokens))
            continue
        grant = in_flight.pop(rng.randrange(len(in_flight)))
        if rng.random() < 0.1:
            gov.release(grant.ticket, now=now)
            del sent_at[grant.ticket]
            token_charges.append((now, -grant.input_tokens))
            continue
        remaining = str(rng.randint(0, 30))  # a co-tenant sometimes says less is left
        outcome = _random_outcome(rng, grant, {"anthropic-ratelimit-requests-remaining": remaining})
        gov.settle(grant.ticket, outcome, now=now)
        token_charges.append((now, outcome.input_tokens - grant.input_tokens))

    assert len(sent_at) > 300  # the traffic really was limited, not refused
    sent = sorted(sent_at.values())
    charge_times, charges = zip(*token_charges, strict=True)
    for window_s in (0.5, 1.0, 5.0, 30.0, 60.0):  # windows of the fake clock
        requests_cap = BURST + RPM / 60 * window_s + 1e-6
        tokens_cap = ITPM + ITPM / 60 * window_s + 1e-6
        assert _max_in_window(sent, [1.0] * len(sent), window_s) <= requests_cap  # clock-ok: fake clock
        assert _max_in_window(list(charge_times), list(charges), window_s) <= tokens_cap  # clock-ok


class _FakeServer:
    """The account's real limit: a requests bucket of `rpm`, enforced over 5-second bursts."""

    def __init__(self, rpm: float) -> None:
        self.rpm = rpm
        self.bucket = TokenBucket(rpm / 60, capacity=rpm / 60 * 5, now=0.0)

    def admit(self, now: float) -> bool:
        if self.bucket.level(now) < 1:
            return False
        self.bucket.take(1, now)
        return True

    def headers(self, now: float) -> dict[str, str]:
        return {
            "anthropic-ratelimit-requests-limit": str(int(self.rpm)),
            "anthropic-ratelimit-requests-remaining": str(math.floor(max(0.0, self.bucket.level(now)))),
        }

    def retry_after_s(self, now: float) -> float:
        return float(math.ceil(self.bucket.wait_s(1, now)))


def test_configured_at_twice_the_real_limit_converges_within_seconds() -> None:
    server = _FakeServer(rpm=120)
    gov = _governor(Limits(requests_per_minute=240, burst_size=20))
    queue: list[tuple[float, int, str, Grant | None]] = [(0.0, agent, "ask", None) for agent in range(30)]
    rejected_at: list[float] = []
    accepted_at: list[float] = []
    while queue:
        now, agent, action, grant = heapq.heappop(queue)
        if now > 65.0:
            break
        if action == "ask":
            result = gov.acquire("claude-sonnet-4-6", 100, 100, 0.0, now=now)
            if isinstance(result, Wait):
                heapq.heappush(queue, (now + result.seconds, agent, "ask", None))
            elif isinstance(result, Grant):
                ok = server.admit(now)
                (accepted_at if ok else rejected_at).append(now)
                heapq.heappush(queue, (now + (1.0 if ok else 0.05), agent, "ok" if ok else "429", result))
            continue
        assert grant is not None
        if action == "ok":
            outcome = Outcome(ok=True, input_tokens=100, output_tokens=50, headers=server.headers(now))
        else:
            outcome = Outcome(ok=False, status_code=429, retry_after_s=server.retry_after_s(now))
        gov.settle(grant.ticket, outcome, now=now)
        heapq.heappush(queue, (now, agent, "ask", None))

    assert rejected_at and max(rejected_at) < 2.0  # clock-ok: fake clock; only the opening burst is refused
    steady = [t for t in accepted_at if 5.0 <= t < 65.0]
    assert len(steady) >= 0.95 * 120  # and the real limit is then used, not wasted
    kinds = [e.kind for e in gov.drain_events()]
    assert kinds.count("limit_adapted") == 1
