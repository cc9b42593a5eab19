"""How long a plan's calls take at the configured limits (`anvil plan`'s duration).

Per rate-limit pool: each limit needs `max(0, amount - bucket capacity) / rate` (requests start
with `burst_size` in the bucket, token buckets with a minute's worth); the agents can carry at
most `agents / latency` calls a second (Little's law). The slowest of these is the binding
limit; the run takes that long plus one call's latency. The concurrency needed to reach a
pool's rate-limited throughput is `throughput x latency`. Every call counts: a job's answer, and
its re-asks and judges (plan/checks.py), which go through the same limits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from anvil_cli.config.settings import RateLimit
from anvil_cli.policy.pricing.table import model_class

LimitFor = Callable[[str], tuple[str, RateLimit]]  # a model's rate_limits key and its limits


@dataclass
class Load:
    """What one model's calls must carry through its pool."""

    model: str
    requests: float
    input_tokens: float
    expected_output_tokens: float


@dataclass
class PoolPlan:
    """One rate-limit pool: what it must carry, its limits, how long that takes."""

    pool: str
    models: list[str]
    requests: int
    input_tokens: int
    expected_output_tokens: float
    requests_per_minute: float
    input_tokens_per_minute: float | None
    output_tokens_per_minute: float | None
    seconds_by_limit: dict[str, float]
    binding_limit: str
    duration_s: float
    concurrency_needed: float


@dataclass
class Schedule:
    pools: list[PoolPlan]
    duration_s: float
    binding: str
    binding_pool: str | None
    notes: list[str]


def merged(loads: Iterable[Load]) -> list[Load]:
    """One load per model (the sum of those given), in the order first seen."""
    out: dict[str, Load] = {}
    for load in loads:
        have = out.get(load.model)
        if have is None:
            out[load.model] = Load(load.model, load.requests, load.input_tokens, load.expected_output_tokens)
        else:
            have.requests += load.requests
            have.input_tokens += load.input_tokens
            have.expected_output_tokens += load.expected_output_tokens
    return list(out.values())


@dataclass(frozen=True, slots=True)
class Pace:
    """What moves one schedule of a plan's range off the expected one (the defaults: the
    expected itself), besides its output tokens and mean latency: the last call's latency
    (`tail_s`, default the mean's); the limits' rates as a share of the configured ones (the
    governor paces a little under them); the request bucket's level at the start as a share of
    `burst_size` (the governor keeps a reserve); and how many standard
    deviations of a chain of calls one agent makes in a row (`chain_sd`, with each call's
    latency spread `latency_cv`), where the agents bind."""

    tail_s: float | None = None
    rate_share: float = 1.0
    bucket_start: float = 1.0
    chain_sd: float = 0.0
    latency_cv: float = 0.0


def schedule(
    loads: list[Load],
    limit_for: LimitFor,
    latency_s: float,
    agents: int,
    output_share: float,
    pace: Pace | None = None,
) -> Schedule:
    """How long the calls take at the configured limits with `output_share` x the expected
    output: the slowest pool, or the agents (Little's law), plus one call. `pace`: what else
    differs from the expected (plan/duration.py)."""
    pace = pace or Pace()
    pools = _pools(loads, limit_for, latency_s, output_share, pace)
    rate_s = max((p.duration_s - latency_s for p in pools), default=0.0)
    requests = sum(p.requests for p in pools)
    chain = math.ceil(requests / agents) - 1 if requests else 0  # calls one agent makes before its last
    conc_s = max(0.0, chain * latency_s + pace.chain_sd * pace.latency_cv * latency_s * math.sqrt(chain))
    slowest = max(pools, key=lambda p: p.duration_s, default=None)
    if rate_s <= 0:
        slowest = None
    binding = slowest.binding_limit if slowest is not None else "none (one call's latency)"
    notes: list[str] = []
    if conc_s > rate_s:
        binding, slowest = "concurrency (agents)", None
        needed = math.ceil(sum(p.concurrency_needed for p in pools))
        notes.append(
            f"max_agents ({agents}) caps this run below what the limits can feed: set"
            f" scaling.max_agents (or --agents) to ~{needed:,} to reach them"
        )
    tail_s = latency_s if pace.tail_s is None else pace.tail_s
    duration = (max(rate_s, conc_s) + tail_s) if requests else 0.0
    return Schedule(pools, duration, binding, slowest.pool if slowest is not None else None, notes)


def _pools(
    loads: list[Load], limit_for: LimitFor, latency_s: float, output_share: float, pace: Pace
) -> list[PoolPlan]:
    grouped: dict[str, list[Load]] = {}
    for load in loads:
        key, _ = limit_for(load.model)
        grouped.setdefault(f"{key}:{model_class(load.model)}", []).append(load)
    return [
        _pool(name, group, limit_for, latency_s, output_share, pace)
        for name, group in sorted(grouped.items())
    ]


def _pool(
    name: str, group: list[Load], limit_for: LimitFor, latency_s: float, output_share: float, pace: Pace
) -> PoolPlan:
    _, rl = limit_for(group[0].model)
    requests = round(sum(m.requests for m in group))
    inp = round(sum(m.input_tokens for m in group))
    outp = sum(m.expected_output_tokens for m in group) * output_share
    share = pace.rate_share
    rpm = rl.requests_per_minute * share
    seconds = {"requests": _need_s(requests, rpm, rl.burst_size * pace.bucket_start)}
    if rl.input_tokens_per_minute:
        seconds["input tokens"] = _need_s(inp, rl.input_tokens_per_minute * share, rl.input_tokens_per_minute)
    if rl.output_tokens_per_minute:
        out_per_min = rl.output_tokens_per_minute
        seconds["output tokens"] = _need_s(outp, out_per_min * share, out_per_min)
    binding = max(seconds, key=lambda k: seconds[k])
    rate_s = seconds[binding]
    throughput = requests / rate_s if rate_s > 0 else float(requests) / max(latency_s, 1e-9)
    return PoolPlan(
        pool=name,
        models=[m.model for m in group],
        requests=requests,
        input_tokens=inp,
        expected_output_tokens=round(outp, 1),
        requests_per_minute=rl.requests_per_minute,
        input_tokens_per_minute=rl.input_tokens_per_minute,
        output_tokens_per_minute=rl.output_tokens_per_minute,
        seconds_by_limit={k: round(v, 3) for k, v in seconds.items()},
        binding_limit=binding,
        duration_s=rate_s + latency_s,
        concurrency_needed=round(min(float(requests), throughput * latency_s), 1),
    )


def _need_s(amount: float, per_min: float, capacity: float) -> float:
    """Seconds a bucket refilled at `per_min` and starting at `capacity` needs for `amount`."""
    return max(0.0, amount - capacity) / per_min * 60.0
