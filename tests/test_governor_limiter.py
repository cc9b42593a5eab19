"""PoolLimiter: buckets per dimension, the 429 pause, and adaptation to rate-limit headers."""

from __future__ import annotations

import pytest

from anvil_cli.policy.governor.limiter import (
    REQUESTS,
    Adaptation,
    Limits,
    PoolLimiter,
    ServerReading,
    read_ratelimit_headers,
)

LIMITS = Limits(requests_per_minute=120, burst_size=20, input_tokens_per_minute=100_000)


def _headers(dim: str = "requests", limit: str | None = None, remaining: str | None = None) -> dict[str, str]:
    out = {}
    if limit is not None:
        out[f"anthropic-ratelimit-{dim}-limit"] = limit
    if remaining is not None:
        out[f"anthropic-ratelimit-{dim}-remaining"] = remaining
    return out


def _levels(pool: PoolLimiter, now: float) -> dict[str, float]:
    return {dim: bucket.level(now) for dim, bucket in pool.buckets.items()}


def test_buckets_follow_the_configured_limits() -> None:
    pool = PoolLimiter(LIMITS, now=0.0)
    assert {d: (b.rate_per_s, b.capacity) for d, b in pool.buckets.items()} == {
        "requests": (2.0, 20.0),
        "input_tokens": (100_000 / 60, 100_000.0),  # one minute's worth; output tokens unlimited
    }


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (_headers(limit="50", remaining="7"), {"requests": ServerReading(50.0, 7.0)}),
        (_headers("input-tokens", remaining="2000"), {"input_tokens": ServerReading(None, 2000.0)}),
        (_headers("output-tokens", limit="0"), {"output_tokens": ServerReading(None, None)}),
        (_headers(limit="lots", remaining="-1"), {}),
        (_headers(limit="inf"), {}),
        ({"anthropic-ratelimit-tokens-limit": "5", "retry-after": "3"}, {}),
    ],
)
def test_read_ratelimit_headers(headers: dict[str, str], expected: dict[str, ServerReading]) -> None:
    assert read_ratelimit_headers(headers) == expected


def test_wait_reports_the_binding_dimension_and_takes_nothing() -> None:
    pool = PoolLimiter(LIMITS, now=0.0)
    pool.take({"requests": 20.0, "input_tokens": 100_000.0}, now=0.0)
    # requests: 1 token at 2/s = 0.5 s; input: 50k tokens at 1666.7/s = 30 s
    seconds, reason = pool.wait({"requests": 1.0, "input_tokens": 50_000.0}, now=0.0)
    assert (seconds == pytest.approx(30.0), reason) == (True, "input_tokens")
    assert pool.wait({"requests": 1.0, "input_tokens": 0.0}, now=0.0) == (0.5, "requests")
    assert _levels(pool, 0.0) == {"requests": 0.0, "input_tokens": 0.0}
    assert pool.wait({"requests": 1.0}, now=0.5) == (0.0, "")


def test_pause_extends_never_shortens_and_empties_the_requests_bucket() -> None:
    pool = PoolLimiter(LIMITS, now=0.0)
    assert pool.pause(10.0, now=0.0)
    assert not pool.pause(5.0, now=1.0)  # would end at 6: keep 10
    assert pool.pause(10.0, now=1.0)  # ends at 11: extended
    assert pool.paused_until == 11.0
    assert pool.wait({"requests": 1.0}, now=3.0) == (8.0, "paused")
    assert pool.buckets["requests"].level(1.0) == 0.0
    assert pool.wait({"requests": 1.0}, now=11.0) == (0.0, "")  # 20 refilled meanwhile


# --- rule 1: the server's -limit ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("server_limits", "expected_rates", "expected_changes"),
    [
        # configured at 2× the real limit: adopt the server's rate at once, burst shrunk in proportion
        (["60"], [(1.0, 10.0)], [Adaptation("requests", 120, 60.0, 60.0)]),
        # the same answer again is no change; a higher one is followed back up, never above configured
        (
            ["60", "60", "90", "500"],
            [(1.0, 10.0), (1.0, 10.0), (1.5, 15.0), (2.0, 20.0)],
            [
                Adaptation("requests", 120, 60.0, 60.0),
                Adaptation("requests", 120, 90.0, 90.0),
                Adaptation("requests", 120, 500.0, 120.0),
            ],
        ),
        # above configured from the start: nothing to do
        (["4000"], [(2.0, 20.0)], []),
        # a tiny server limit: the burst is at least one request and at most the server's minute
        (["1"], [(1 / 60, 1.0)], [Adaptation("requests", 120, 1.0, 1.0)]),
    ],
)
def test_requests_limit_adaptation(
    server_limits: list[str], expected_rates: list[tuple[float, float]], expected_changes: list[Adaptation]
) -> None:
    pool = PoolLimiter(LIMITS, now=0.0)
    changes, rates = [], []
    for i, limit in enumerate(server_limits):
        changes += pool.observe(_headers(limit=limit), now=float(i))
        bucket = pool.buckets["requests"]
        rates.append((bucket.rate_per_s, bucket.capacity))
    assert rates == [pytest.approx(r) for r in expected_rates]
    assert changes == expected_changes


def test_token_limit_adaptation_and_an_unconfigured_dimension_gets_the_servers_bucket() -> None:
    pool = PoolLimiter(LIMITS, now=0.0)
    headers = _headers("input-tokens", limit="40000") | _headers("output-tokens", limit="8000")
    assert pool.observe(headers, now=1.0) == [
        Adaptation("input_tokens", 100_000, 40_000.0, 40_000.0),
        Adaptation("output_tokens", None, 8_000.0, 8_000.0),
    ]
    rates = {d: (round(b.rate_per_s * 60, 6), b.capacity) for d, b in pool.buckets.items() if d != "requests"}
    assert rates == {"input_tokens": (40_000.0, 40_000.0), "output_tokens": (8_000.0, 8_000.0)}
    assert pool.effective_per_min == {"requests": 120, "input_tokens": 40_000.0, "output_tokens": 8_000.0}


# --- rule 2: the server's -remaining ------------------------------------------------------------


@pytest.mark.parametrize(
    ("dim", "remaining", "expected_level"),
    [
        ("requests", "5", 5.0),  # someone else uses the key: trust the server
        ("requests", "19", 19.0),
        ("requests", "30", 20.0),  # more than we think: never raise
        ("input-tokens", "99000", 100_000.0),  # within the rounding to thousands: leave it
        ("input-tokens", "98999", 98_999.0),
        ("input-tokens", "0", 0.0),
        ("output-tokens", "0", None),  # no bucket, no clamp
    ],
)
def test_remaining_clamps_the_level_down_only(dim: str, remaining: str, expected_level: float | None) -> None:
    pool = PoolLimiter(LIMITS, now=0.0)
    pool.observe(_headers(dim, remaining=remaining), now=0.0)
    key = dim.replace("-", "_")
    assert (pool.buckets[key].level(0.0) if key in pool.buckets else None) == expected_level


def test_adaptation_applies_before_clamping_in_the_same_response() -> None:
    pool = PoolLimiter(LIMITS, now=0.0)
    pool.observe(_headers(limit="60", remaining="3"), now=0.0)
    assert (pool.buckets["requests"].capacity, pool.buckets["requests"].level(0.0)) == (10.0, 3.0)


def test_stale_remaining_is_credited_with_the_refill_since_the_headers_arrived() -> None:
    pool = PoolLimiter(LIMITS, now=0.0)
    pool.take({"requests": 20.0}, now=0.0)
    # headers seen at t=0 said 0 left; it is now t=5 and our bucket says 10 (2/s): nothing to clamp
    pool.observe(_headers(remaining="0"), now=5.0, headers_at=0.0)
    assert pool.buckets["requests"].level(5.0) == 10.0
    pool.observe(_headers(remaining="0"), now=5.0, headers_at=3.0)  # only 4 could have refilled
    assert pool.buckets["requests"].level(5.0) == 4.0


def test_adjust_charges_or_refunds_only_existing_buckets() -> None:
    pool = PoolLimiter(LIMITS, now=0.0)
    pool.adjust("input_tokens", 30_000.0, now=0.0)
    pool.adjust("input_tokens", -10_000.0, now=0.0)
    pool.adjust("output_tokens", 5.0, now=0.0)
    assert _levels(pool, 0.0) == {"requests": 20.0, "input_tokens": 80_000.0}


def test_safety_margins_apply_after_adapting_to_the_server() -> None:
    limits = Limits(requests_per_minute=2400, burst_size=40, rate_margin=0.98, burst_reserve=0.10)
    pool = PoolLimiter(limits, now=0.0)
    assert pool.buckets[REQUESTS].capacity == 36  # 10% of the burst kept unused
    assert pool.buckets[REQUESTS].rate_per_s == 2400 / 60 * 0.98
    pool.observe({"anthropic-ratelimit-requests-limit": "1200"}, now=0.0)
    assert pool.buckets[REQUESTS].rate_per_s == 1200 / 60 * 0.98  # the server's rate, less the margin
    assert pool.buckets[REQUESTS].capacity == 18  # the burst scaled to the server's rate, less 10%


def test_a_burst_of_one_keeps_one() -> None:
    pool = PoolLimiter(Limits(requests_per_minute=60, burst_size=1, burst_reserve=0.10), now=0.0)
    assert pool.buckets[REQUESTS].capacity == 1
