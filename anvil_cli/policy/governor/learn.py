"""Learning an endpoint's request rate where the provider sends no `anthropic-ratelimit-*`
headers (Bedrock, Vertex): additive increase, multiplicative decrease (AIMD).

A 429 multiplies the pool's effective requests rate by `DECREASE_FACTOR` (not below
`MIN_PER_MIN`), at most once per `DECREASE_EVERY_S`, and only for a call granted after the last
cut: the 429s of one overload arrive together and count once. Each success adds
`INCREASE_SHARE` of the configured rate, never above it. The rate is the pool's own
(`PoolLimiter.learn_rate`), so the view shows it and a replacement governor's seed starts from
it; a change is reported when the rate falls, and on the way back every `REPORT_STEP_SHARE` of
the configured rate and on reaching it (not on every success).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from anvil_cli.policy.governor.limiter import REQUESTS, PoolLimiter

DECREASE_FACTOR: Final = 0.7
MIN_PER_MIN: Final = 1.0
DECREASE_EVERY_S: Final = 1.0
INCREASE_SHARE: Final = 0.005
REPORT_STEP_SHARE: Final = 0.05


@dataclass(frozen=True, slots=True)
class Learned:
    """The effective rate of a pool's `dimension` changed by what its answers taught."""

    dimension: str
    configured_per_min: float
    effective_per_min: float
    reason: str  # "rate_limited" (a 429 lowered it) | "recovering" (successes raised it)


class RateLearner:
    """AIMD for the requests rate of the pools of endpoints without rate-limit headers."""

    def __init__(self) -> None:
        self._decreased_at: dict[str, float] = {}  # pool -> when a 429 last lowered its rate
        self._reported: dict[str, float] = {}  # pool -> the rate last reported

    def rate_limited(self, key: str, pool: PoolLimiter, now: float, granted_at: float) -> Learned | None:
        """A 429 from the pool's endpoint for a call granted at `granted_at`: lower the rate,
        once per overload (a call granted before the last cut was sent at the old rate)."""
        last = self._decreased_at.get(key)
        if last is not None and (now - last < DECREASE_EVERY_S or granted_at <= last):
            return None
        self._decreased_at[key] = now
        current = _rate(pool)
        lowered = max(MIN_PER_MIN, current * DECREASE_FACTOR)
        if lowered >= current:
            return None
        pool.learn_rate(REQUESTS, lowered, now)
        return self._report(key, pool, "rate_limited")

    def succeeded(self, key: str, pool: PoolLimiter, now: float) -> Learned | None:
        """A success from the pool's endpoint: raise the rate a step back towards the configured."""
        configured = pool.limits.requests_per_minute
        current = _rate(pool)
        if current >= configured:
            return None
        pool.learn_rate(REQUESTS, current + configured * INCREASE_SHARE, now)
        raised = _rate(pool)
        last = self._reported.get(key, current)
        if raised >= configured or raised - last >= configured * REPORT_STEP_SHARE:
            return self._report(key, pool, "recovering")
        return None

    def _report(self, key: str, pool: PoolLimiter, reason: str) -> Learned:
        rate = _rate(pool)
        self._reported[key] = rate
        return Learned(REQUESTS, pool.limits.requests_per_minute, rate, reason)


def _rate(pool: PoolLimiter) -> float:
    rate = pool.effective_per_min[REQUESTS]
    return pool.limits.requests_per_minute if rate is None else rate
