"""One rate-limit pool's buckets (requests, input and output tokens), adapted to the server's headers.

Header adaptation, from the `anthropic-ratelimit-{requests,input-tokens,output-tokens}-*` headers:

1. `-limit` (per minute): the effective rate is min(configured, server). A run configured above the
   account's real limit so converges on the first response instead of hammering the server; the
   rate is never raised above what is configured, but follows the server back up to it (a tier
   upgrade mid-run). A token dimension configured as unlimited gets a bucket at the server's rate.
   Each change of the effective rate is reported once (`Adaptation`).
2. `-remaining`: if the server says less is left than our bucket holds, lower our level to it (the
   key may be shared with other programs). Token `remaining` is rounded down to thousands, so token
   levels are only clamped when remaining + 1000 < level; requests are exact. If the caller says
   when the headers arrived (`headers_at`, e.g. the start of a long stream), the refill since then
   is added back before clamping.
3. `-reset` is ignored: it is wall-clock time, and the limit and remaining already say enough.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from anvil_cli.policy.governor.bucket import TokenBucket
from anvil_cli.policy.governor.view import DimensionView, PoolView

REQUESTS: Final = "requests"
INPUT_TOKENS: Final = "input_tokens"
OUTPUT_TOKENS: Final = "output_tokens"
DIMENSIONS: Final = (REQUESTS, INPUT_TOKENS, OUTPUT_TOKENS)
_HEADER_NAME: Final = {REQUESTS: "requests", INPUT_TOKENS: "input-tokens", OUTPUT_TOKENS: "output-tokens"}
# The server rounds token `remaining` down to thousands: the truth is within this much above it.
TOKEN_REMAINING_SLACK: Final = 1000.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Configured limits of one pool; a None token limit means "no client-side limit"."""

    requests_per_minute: float
    burst_size: int
    input_tokens_per_minute: float | None = None
    output_tokens_per_minute: float | None = None
    # Safety margins (the engine sets them; 1.0 / 0.0 = none). Granted requests reach the server
    # after a variable delay (threads, the GIL, the network), so arrival gaps are sometimes shorter
    # than grant gaps: sending at exactly the server's rate with its whole burst draws 429s, each
    # pausing the pool for a whole `retry-after` second. Pacing a little under the effective rate
    # lets the server's bucket regrow a reserve; leaving part of the burst unused absorbs jitter
    # from the start. Both apply after adaptation to the server's own limit.
    rate_margin: float = 1.0
    burst_reserve: float = 0.0

    def per_min(self, dimension: str) -> float | None:
        """The configured per-minute limit of `dimension`."""
        return {
            REQUESTS: self.requests_per_minute,
            INPUT_TOKENS: self.input_tokens_per_minute,
            OUTPUT_TOKENS: self.output_tokens_per_minute,
        }[dimension]


@dataclass(frozen=True, slots=True)
class ServerReading:
    """What the server's headers said about one dimension."""

    limit_per_min: float | None
    remaining: float | None


@dataclass(frozen=True, slots=True)
class Adaptation:
    """The effective rate of one dimension changed because of the server's `-limit` header."""

    dimension: str
    configured_per_min: float | None
    server_per_min: float
    effective_per_min: float


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    if value is None or value != value or value in (float("inf"), float("-inf")) or value < 0:
        return None
    return value


def read_ratelimit_headers(headers: Mapping[str, str]) -> dict[str, ServerReading]:
    """The limit and remaining per dimension from lower-cased headers; garbage reads as absent."""
    out: dict[str, ServerReading] = {}
    for dim, name in _HEADER_NAME.items():
        limit = _number(headers.get(f"anthropic-ratelimit-{name}-limit"))
        remaining = _number(headers.get(f"anthropic-ratelimit-{name}-remaining"))
        if limit is not None or remaining is not None:
            out[dim] = ServerReading(limit if limit else None, remaining)
    return out


class PoolLimiter:
    """The buckets of one pool (shared by every model in it), a 429 pause, and header adaptation."""

    def __init__(self, limits: Limits, now: float) -> None:
        self.limits = limits
        self.effective_per_min: dict[str, float | None] = {d: limits.per_min(d) for d in DIMENSIONS}
        self.buckets: dict[str, TokenBucket] = {}
        for dim, per_min in self.effective_per_min.items():
            if per_min is not None:
                self.buckets[dim] = TokenBucket(self._rate_per_s(per_min), self._capacity(dim, per_min), now)
        self.paused_until: float | None = None

    def _capacity(self, dim: str, per_min: float) -> float:
        """Tokens: one minute's worth. Requests: the burst less a reserve, shrunk in proportion
        when adapted down."""
        reserve = self.limits.burst_reserve
        if dim != REQUESTS:
            return per_min * (1.0 - reserve)
        configured, burst = self.limits.requests_per_minute, float(self.limits.burst_size)
        if per_min < configured:
            burst = min(burst * per_min / configured, per_min)
        if burst <= 1.0 or reserve <= 0.0:
            return max(1.0, burst)
        return max(1.0, burst - max(1.0, round(burst * reserve)))

    def _rate_per_s(self, per_min: float) -> float:
        return per_min / 60.0 * self.limits.rate_margin

    def wait(self, need: Mapping[str, float], now: float) -> tuple[float, str]:
        """(seconds, binding reason) until `need` fits; (0.0, "") if it fits now."""
        if self.paused_until is not None and self.paused_until > now:
            return self.paused_until - now, "paused"
        worst, reason = 0.0, ""
        for dim, bucket in self.buckets.items():
            seconds = bucket.wait_s(need.get(dim, 0.0), now)
            if seconds > worst:
                worst, reason = seconds, dim
        return worst, reason

    def take(self, need: Mapping[str, float], now: float) -> dict[str, float]:
        """Take `need` from every bucket that exists; returns what was charged per dimension."""
        charged: dict[str, float] = {}
        for dim, bucket in self.buckets.items():
            amount = need.get(dim, 0.0)
            bucket.take(amount, now)
            charged[dim] = amount
        return charged

    def adjust(self, dim: str, delta: float, now: float) -> None:
        """Charge `delta` more (positive) or refund it (negative) in `dim`, if it has a bucket."""
        bucket = self.buckets.get(dim)
        if bucket is None or delta == 0:
            return
        if delta > 0:
            bucket.take(delta, now)
        else:
            bucket.give(-delta, now)

    def pause(self, retry_after_s: float, now: float) -> bool:
        """Hold the pool until now + retry_after_s (extend, never shorten) and empty the requests bucket."""
        self.buckets[REQUESTS].clamp(0.0, now)
        until = now + retry_after_s
        if self.paused_until is not None and self.paused_until >= until:
            return False
        self.paused_until = until
        return True

    def observe(
        self, headers: Mapping[str, str], now: float, headers_at: float | None = None
    ) -> list[Adaptation]:
        """Adapt rates and levels to a response's rate-limit headers; returns the rate changes."""
        readings = read_ratelimit_headers(headers)
        changes = [c for c in (self._adapt(d, r, now) for d, r in readings.items()) if c is not None]
        for dim, reading in readings.items():
            self._clamp(dim, reading, now, headers_at)
        return changes

    def _adapt(self, dim: str, reading: ServerReading, now: float) -> Adaptation | None:
        server = reading.limit_per_min
        if server is None:
            return None
        configured = self.limits.per_min(dim)
        effective = server if configured is None else min(configured, server)
        if effective == self.effective_per_min[dim]:
            return None
        self._set_rate(dim, effective, now)
        return Adaptation(dim, configured, server, effective)

    def lower_rate(self, dim: str, per_min: float, now: float) -> None:
        """Start below the configured rate (a rate learned before); the server's headers raise
        it back up to the configured rate."""
        configured = self.limits.per_min(dim)
        if per_min <= 0 or (configured is not None and per_min >= configured):
            return
        self._set_rate(dim, per_min, now)

    def learn_rate(self, dim: str, per_min: float, now: float) -> None:
        """Set the effective rate to one learned without headers (from 429s: `learn.py`),
        never above the configured rate."""
        configured = self.limits.per_min(dim)
        if configured is not None:
            per_min = min(per_min, configured)
        if per_min > 0 and per_min != self.effective_per_min[dim]:
            self._set_rate(dim, per_min, now)

    def _set_rate(self, dim: str, per_min: float, now: float) -> None:
        self.effective_per_min[dim] = per_min
        capacity = self._capacity(dim, per_min)
        bucket = self.buckets.get(dim)
        if bucket is None:
            self.buckets[dim] = TokenBucket(self._rate_per_s(per_min), capacity, now)
        else:
            bucket.set_rate(self._rate_per_s(per_min), capacity, now)

    def empty(self, now: float) -> None:
        """Every bucket to zero: no burst, the rate refills them."""
        for bucket in self.buckets.values():
            bucket.clamp(0.0, now)

    def _clamp(self, dim: str, reading: ServerReading, now: float, headers_at: float | None) -> None:
        bucket = self.buckets.get(dim)
        if bucket is None or reading.remaining is None:
            return
        remaining = reading.remaining
        if headers_at is not None and headers_at < now:
            remaining = min(bucket.capacity, remaining + (now - headers_at) * bucket.rate_per_s)
        slack = 0.0 if dim == REQUESTS else TOKEN_REMAINING_SLACK
        if remaining + slack < bucket.level(now):
            bucket.clamp(remaining, now)

    def view(self, now: float, reserved: Mapping[str, float]) -> PoolView:
        """The pool as of `now`; `reserved`: what the calls in flight hold per dimension."""
        paused = (
            self.paused_until - now if self.paused_until is not None and self.paused_until > now else None
        )
        return PoolView(paused, {d: self._dim_view(d, now, reserved) for d in DIMENSIONS})

    def _dim_view(self, dim: str, now: float, reserved: Mapping[str, float]) -> DimensionView:
        bucket = self.buckets.get(dim)
        return DimensionView(
            capacity=bucket.capacity if bucket else None,
            level=bucket.level(now) if bucket else None,
            rate_per_min=self.effective_per_min[dim],
            configured_per_min=self.limits.per_min(dim),
            reserved_in_flight=reserved.get(dim, 0.0),
        )


def sum_by_dimension(amounts: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Add up per-dimension amounts (e.g. the reservations of the calls in flight)."""
    total = dict.fromkeys(DIMENSIONS, 0.0)
    for amount in amounts:
        for dim, value in amount.items():
            total[dim] = total.get(dim, 0.0) + value
    return total
