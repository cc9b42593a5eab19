"""Continuously refilled token buckets per model class. Pure: every method takes `now_s`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from anvil_cli.sim.config import SimConfig


@dataclass(slots=True)
class TokenBucket:
    """A bucket of `capacity` refilled at `per_min / 60` a second. Its level may go negative (debt)."""

    capacity: float
    per_min: float
    level: float
    updated_s: float

    @classmethod
    def full(cls, capacity: float, per_min: float, now_s: float) -> TokenBucket:
        return cls(capacity=capacity, per_min=per_min, level=capacity, updated_s=now_s)

    @property
    def rate_per_s(self) -> float:
        return self.per_min / 60.0

    def refill(self, now_s: float) -> None:
        if now_s > self.updated_s:
            self.level = min(self.capacity, self.level + (now_s - self.updated_s) * self.rate_per_s)
            self.updated_s = now_s

    def wait_s(self, need: float, now_s: float) -> float:
        """Seconds until the level reaches `need` (capped at capacity); 0 when it already has."""
        self.refill(now_s)
        deficit = min(need, self.capacity) - self.level
        if self.rate_per_s <= 0:
            return math.inf if deficit > 0 else 0.0
        return max(0.0, deficit / self.rate_per_s)

    def take(self, amount: float, now_s: float) -> None:
        self.refill(now_s)
        self.level -= amount

    def seconds_to_full(self, now_s: float) -> float:
        self.refill(now_s)
        return max(0.0, (self.capacity - self.level) / self.rate_per_s) if self.rate_per_s > 0 else 0.0


@dataclass(slots=True)
class ClassBuckets:
    """The three buckets of one model class; None = that dimension is unlimited."""

    requests: TokenBucket | None
    input_tokens: TokenBucket | None
    output_tokens: TokenBucket | None

    def named(self) -> list[tuple[str, TokenBucket]]:
        pairs = (
            ("requests", self.requests),
            ("input-tokens", self.input_tokens),
            ("output-tokens", self.output_tokens),
        )
        return [(name, b) for name, b in pairs if b is not None]


def retry_after_header(wait_s: float) -> str:
    """`retry-after` value for a wait: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(wait_s)))


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class RateLimiter:
    """Per-model-class request, input-token and output-token buckets.

    Admission needs one request, the request's input tokens (input + cache writes, capped at the
    bucket's capacity so a huge request can pass once the bucket is full) and a non-empty output
    bucket. Output tokens are charged with the real count when the answer is produced, which may
    leave the output bucket in debt until it refills.
    """

    config: SimConfig
    pools: dict[str, ClassBuckets] = field(default_factory=dict)

    def pool(self, model_class: str, now_s: float) -> ClassBuckets:
        found = self.pools.get(model_class)
        if found is None:
            found = self.pools[model_class] = self._new_pool(now_s)
        return found

    def _new_pool(self, now_s: float) -> ClassBuckets:
        cfg = self.config
        req_cap = cfg.request_capacity
        return ClassBuckets(
            requests=TokenBucket.full(req_cap, cfg.rpm, now_s) if req_cap and cfg.rpm else None,
            input_tokens=TokenBucket.full(cfg.itpm, cfg.itpm, now_s) if cfg.itpm else None,
            output_tokens=TokenBucket.full(cfg.otpm, cfg.otpm, now_s) if cfg.otpm else None,
        )

    def admit(self, model_class: str, input_cost: int, now_s: float) -> float:
        """0.0 and charge the request + input tokens when admitted; else the seconds to wait."""
        wait = self.wait_s(model_class, input_cost, now_s)
        if wait > 0:
            return wait
        self.take(model_class, input_cost, now_s)
        return 0.0

    def wait_s(self, model_class: str, input_cost: int, now_s: float) -> float:
        """Seconds until a request of `input_cost` input tokens would be admitted (0: now)."""
        pool = self.pool(model_class, now_s)
        needs = ((pool.requests, 1.0), (pool.input_tokens, float(input_cost)), (pool.output_tokens, 1.0))
        return max((b.wait_s(need, now_s) for b, need in needs if b is not None), default=0.0)

    def take(self, model_class: str, input_cost: int, now_s: float) -> None:
        """Charge one request and its input tokens."""
        pool = self.pool(model_class, now_s)
        if pool.requests is not None:
            pool.requests.take(1.0, now_s)
        if pool.input_tokens is not None:
            pool.input_tokens.take(float(input_cost), now_s)

    def charge_output(self, model_class: str, output_tokens: int, now_s: float) -> None:
        bucket = self.pool(model_class, now_s).output_tokens
        if bucket is not None:
            bucket.take(float(output_tokens), now_s)

    def headers(self, model_class: str, now_s: float, wall: datetime) -> dict[str, str]:
        """`anthropic-ratelimit-*` headers; unlimited dimensions are left out."""
        out: dict[str, str] = {}
        pool = self.pool(model_class, now_s)
        tightest: tuple[int, str] | None = None
        for name, bucket in pool.named():
            remaining = _remaining(name, bucket)
            reset = rfc3339(wall + timedelta(seconds=bucket.seconds_to_full(now_s)))
            out[f"anthropic-ratelimit-{name}-limit"] = str(int(bucket.per_min))
            out[f"anthropic-ratelimit-{name}-remaining"] = str(remaining)
            out[f"anthropic-ratelimit-{name}-reset"] = reset
            if name != "requests" and (tightest is None or remaining < tightest[0]):
                tightest = (remaining, name)
        if tightest is not None:
            for part in ("limit", "remaining", "reset"):
                out[f"anthropic-ratelimit-tokens-{part}"] = out[f"anthropic-ratelimit-{tightest[1]}-{part}"]
        return out


def _remaining(name: str, bucket: TokenBucket) -> int:
    level = max(0, math.floor(bucket.level))
    return level if name == "requests" else level // 1000 * 1000
