"""How many agents a run should have: pure policy, time passed in.

Agents are slots (asyncio tasks in the workers), so idle ones cost little; what too many cost
is responsiveness. When the rate limit is what binds, every agent beyond what the limit can feed holds a job
while it waits on the governor, and a critical job added later (`POST /jobs`) queues behind
them. So:

* a run starts with `max_agents` (no slow start: the first seconds matter);
* while a rate limit is at least `scale_up_threshold` % used, the agent count moves toward what
  the limit can keep busy, by Little's law: calls per second x seconds per call x headroom;
* while it is not, and agents are at least `scale_up_threshold` % busy with jobs still
  waiting, the count grows (x1.5) toward `max_agents`;
* while agents are at most `scale_down_threshold` % busy and nothing waits, it shrinks
  toward what is busy;
never below `min_agents` nor above `max_agents`, and at most one change per `cooldown_s`.
A manual `POST /scale` pins the count: automatic scaling stops for that run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from anvil_cli.policy.governor.view import GovernorView


@dataclass(frozen=True, slots=True)
class ScalePolicy:
    """The bounds and thresholds of automatic scaling (from `scaling:` in the config)."""

    min_agents: int
    max_agents: int
    scale_up_threshold: float = 80.0  # percent
    scale_down_threshold: float = 20.0  # percent
    cooldown_s: float = 2.0
    headroom: float = 2.0  # agents kept per agent Little's law asks for, for latency spread
    growth: float = 1.5


@dataclass(frozen=True, slots=True)
class Load:
    """What the conductor saw this tick."""

    busy: int  # agents holding a job
    waiting: int  # jobs ready to dispatch
    limiter_pct: float  # the most used rate limit, % of its effective rate
    calls_per_s: float  # successful API calls per second, recently
    call_latency_s: float | None  # mean duration of one API call, recently


class Scaler:
    """Decides the agent count once per tick; `decide` returns the new count."""

    def __init__(self, policy: ScalePolicy, now: float) -> None:
        self.policy = policy
        self.agents = policy.max_agents
        self.pinned = False
        self._last_change = now

    def pin(self, agents: int) -> None:
        """A manual setting (POST /scale): keep it, scale no more."""
        self.agents = agents
        self.pinned = True

    def decide(self, load: Load, now: float) -> int:
        if self.pinned or now - self._last_change < self.policy.cooldown_s:
            return self.agents
        target = self._bounded(self._target(load))
        if target != self.agents:
            self.agents = target
            self._last_change = now
        return self.agents

    def _target(self, load: Load) -> int:
        p = self.policy
        utilisation = 100.0 * load.busy / max(1, self.agents)
        if load.limiter_pct >= p.scale_up_threshold and load.call_latency_s and load.calls_per_s > 0:
            return math.ceil(load.calls_per_s * load.call_latency_s * p.headroom)
        if utilisation >= p.scale_up_threshold and load.waiting > 0:
            return math.ceil(self.agents * p.growth)
        if utilisation <= p.scale_down_threshold and load.waiting == 0:
            return load.busy
        return self.agents

    def _bounded(self, agents: int) -> int:
        return max(self.policy.min_agents, min(self.policy.max_agents, agents))


def limiter_in_use_pct(governor: GovernorView) -> float:
    """How drawn down the most used bucket is (0 = full, 100 = empty): near 100 while a rate
    limit is what holds the run back."""
    worst = 0.0
    for pool in governor.pools.values():
        if pool.paused_until_s:
            return 100.0
        for dim in pool.dimensions.values():
            capacity, level = dim.capacity, dim.level
            if capacity and level is not None:
                worst = max(worst, 100.0 * (1.0 - max(0.0, level) / capacity))
    return worst


# -- the in-flight window: how many jobs to hand to workers at once --------------------------
#
# Jobs in workers beyond what the rate limits can serve soon only wait there, and a critical job
# dispatched later queues behind them. So the conductor keeps in workers at most what the limits
# can feed by Little's law (requests per second x seconds per call, with headroom) plus each
# pool's burst; within that window the governor grants in priority order.

WINDOW_HEADROOM = 1.5  # for the spread of call latency around its mean
ASSUMED_CALL_S = 2.0  # until a call has been timed


@dataclass(frozen=True, slots=True)
class PoolRate:
    """One pool's request limit: per minute (None: unlimited) and its burst."""

    requests_per_min: float | None
    burst: float


def feedable_agents(pools: list[PoolRate], call_latency_s: float | None) -> int | None:
    """How many calls the pools' request limits can keep in flight; None if any is unlimited."""
    latency = call_latency_s if call_latency_s else ASSUMED_CALL_S
    total = 0.0
    for pool in pools:
        if pool.requests_per_min is None:
            return None
        total += pool.requests_per_min / 60.0 * latency * WINDOW_HEADROOM + pool.burst
    return max(1, math.ceil(total)) if pools else None


def pool_rates(governor: GovernorView) -> list[PoolRate]:
    """The request limits in force, from the governor's view (adapted to the server's)."""
    out: list[PoolRate] = []
    for pool in governor.pools.values():
        dim = pool.dimensions["requests"]  # a pool shows every dimension
        out.append(PoolRate(dim.rate_per_min, float(dim.capacity or 0.0)))
    return out
