"""Pure rate-limit logic with a fake clock: buckets, admission, headers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from anvil_cli.sim.config import SimConfig, with_tier
from anvil_cli.sim.rate_limits import RateLimiter, TokenBucket, retry_after_header

WALL = datetime(2026, 1, 1, tzinfo=UTC)


def test_bucket_refills_continuously_and_caps_at_capacity() -> None:
    bucket = TokenBucket.full(capacity=10, per_min=60, now_s=0.0)
    bucket.take(10, 0.0)
    assert bucket.wait_s(1, 0.0) == pytest.approx(1.0)
    assert bucket.wait_s(1, 0.5) == pytest.approx(0.5)
    bucket.refill(100.0)
    assert bucket.level == 10


def test_bucket_debt_delays_until_repaid() -> None:
    bucket = TokenBucket.full(capacity=600, per_min=600, now_s=0.0)
    bucket.take(900, 0.0)  # 300 in debt
    assert bucket.wait_s(1, 0.0) == pytest.approx(30.1)
    assert bucket.seconds_to_full(0.0) == pytest.approx(90.0)


def test_need_above_capacity_is_capped() -> None:
    bucket = TokenBucket.full(capacity=100, per_min=60, now_s=0.0)
    assert bucket.wait_s(1_000, 0.0) == 0.0


@pytest.mark.parametrize(("wait_s", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (59.9, "60")])
def test_retry_after_is_whole_seconds_rounded_up(wait_s: float, header: str) -> None:
    assert retry_after_header(wait_s) == header


def test_requests_burst_then_one_per_interval() -> None:
    limiter = RateLimiter(SimConfig(rpm=60, burst=3))
    assert [limiter.admit("haiku", 10, 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.admit("haiku", 10, 0.0) == pytest.approx(1.0)
    assert limiter.admit("haiku", 10, 0.5) == pytest.approx(0.5)
    assert limiter.admit("haiku", 10, 1.0) == 0.0


def test_default_burst_is_one_seconds_worth() -> None:
    assert SimConfig(rpm=600).request_capacity == 10
    assert SimConfig(rpm=30).request_capacity == 1
    assert SimConfig().request_capacity is None


def test_pools_are_per_model_class() -> None:
    limiter = RateLimiter(SimConfig(rpm=60, burst=1))
    assert limiter.admit("haiku", 1, 0.0) == 0.0
    assert limiter.admit("haiku", 1, 0.0) > 0
    assert limiter.admit("sonnet", 1, 0.0) == 0.0


def test_input_tokens_bite_without_request_limit() -> None:
    limiter = RateLimiter(SimConfig(itpm=6_000))  # 100 tokens/s
    assert limiter.admit("opus", 5_000, 0.0) == 0.0
    assert limiter.admit("opus", 2_000, 0.0) == pytest.approx(10.0)
    assert limiter.admit("opus", 2_000, 10.0) == 0.0


def test_output_tokens_charged_after_admission() -> None:
    limiter = RateLimiter(SimConfig(otpm=600))  # 10 tokens/s
    assert limiter.admit("haiku", 1, 0.0) == 0.0
    limiter.charge_output("haiku", 600, 0.0)
    assert limiter.admit("haiku", 1, 0.0) == pytest.approx(0.1)
    assert limiter.admit("haiku", 1, 0.1) == 0.0


def test_headers_show_limit_remaining_and_reset() -> None:
    limiter = RateLimiter(SimConfig(rpm=60, burst=10, itpm=60_000))
    limiter.admit("haiku", 2_500, 0.0)
    headers = limiter.headers("haiku", 0.0, WALL)
    assert headers["anthropic-ratelimit-requests-limit"] == "60"
    assert headers["anthropic-ratelimit-requests-remaining"] == "9"
    assert headers["anthropic-ratelimit-requests-reset"] == "2026-01-01T00:00:01Z"
    assert headers["anthropic-ratelimit-input-tokens-limit"] == "60000"
    assert headers["anthropic-ratelimit-input-tokens-remaining"] == "57000"  # 57,500 rounded down
    assert headers["anthropic-ratelimit-input-tokens-reset"] == "2026-01-01T00:00:02Z"  # 2.5 s
    assert headers["anthropic-ratelimit-tokens-remaining"] == "57000"
    assert not any("output-tokens" in h for h in headers)


def test_no_limits_no_headers() -> None:
    assert RateLimiter(SimConfig()).headers("haiku", 0.0, WALL) == {}


def test_tier_sets_published_limits() -> None:
    config = with_tier(SimConfig(), "1")
    assert (config.rpm, config.itpm, config.otpm) == (50, 50_000, 10_000)
    with pytest.raises(KeyError):
        with_tier(SimConfig(), "platinum")
