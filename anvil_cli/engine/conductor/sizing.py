"""How many jobs the conductor keeps in workers: the scaler's agent count, bounded by the
in-flight window the rate limits can feed. A thin driver around the pure policy of
`anvil_cli.policy.scaler`, fed once a tick."""

from __future__ import annotations

from typing import Any

from anvil_cli.config.settings import Settings
from anvil_cli.policy.governor import GovernorView
from anvil_cli.policy.scaler import (
    Load,
    PoolRate,
    ScalePolicy,
    Scaler,
    feedable_agents,
    limiter_in_use_pct,
    pool_rates,
)


class AgentSizing:
    """The agent limit (scaled, or pinned by `POST /scale`) and the in-flight window."""

    def __init__(self, settings: Settings, now: float) -> None:
        scaling = settings.scaling
        self.limit = scaling.agent_limit()
        self.scaler = Scaler(
            ScalePolicy(
                min_agents=min(scaling.min_agents, self.limit),
                max_agents=self.limit,
                scale_up_threshold=scaling.scale_up_threshold,
                scale_down_threshold=scaling.scale_down_threshold,
            ),
            now,
        )
        self._configured = [
            PoolRate(rl.requests_per_minute, float(rl.burst_size)) for rl in settings.rate_limits.values()
        ]
        self.feedable = feedable_agents(self._configured, None)  # until the governor has pools

    def window(self) -> int:
        """Jobs to keep in workers at most now."""
        return self.limit if self.feedable is None else min(self.limit, self.feedable)

    def pin(self, agents: int) -> None:
        """A manual setting holds: no more automatic scaling."""
        self.limit = agents
        self.scaler.pin(agents)

    def tick(
        self,
        governor: GovernorView,
        busy: int,
        waiting: int,
        call_load: tuple[float, float | None],  # (calls per second, seconds per call), recently
        now: float,
    ) -> dict[str, Any] | None:
        """This second's decision; returns the change of the agent limit (for the journal), if any."""
        calls_per_s, call_latency_s = call_load
        self.feedable = feedable_agents(pool_rates(governor) or self._configured, call_latency_s)
        load = Load(
            busy=busy,
            waiting=waiting,
            limiter_pct=limiter_in_use_pct(governor),
            calls_per_s=calls_per_s,
            call_latency_s=call_latency_s,
        )
        before = self.limit
        self.limit = self.scaler.decide(load, now)
        if self.limit == before:
            return None
        return {"from": before, "to": self.limit, "busy": busy, "limiter_pct": load.limiter_pct}
