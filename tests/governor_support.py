"""The real `Governor` standing in for a worker's `GovernorClient` in tests that drive one agent
directly: its clock jumps a step on every round trip (a minute by default, so no pause or 429
holds a test), and it keeps what it saw (the asks with their model and priority, the outcomes
settled, the breakers' events)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from anvil_cli.policy.governor import BreakerPolicy, CallAsk, Governor, GovernorView, Granted, Limits, Outcome


class JumpingGovernor:
    """A `GovernorClient` over the real governor (`gov`: one of the test's own; else one pool of
    60,000 requests a minute); grants name `endpoint` when one is given."""

    def __init__(
        self, endpoint: str | None = None, *, gov: Governor | None = None, step_s: float = 60.0
    ) -> None:
        self.endpoint = endpoint
        self.now = 0.0
        self.step_s = step_s
        limits = Limits(requests_per_minute=60_000, burst_size=1_000)
        self.gov = gov or Governor(
            lambda _m: ("default", limits), BreakerPolicy(), max_usd=None, warn_usd=None, now=0.0
        )
        self.asked: list[tuple[str, CallAsk, int]] = []  # (model, ask, priority), in order
        self.outcomes: list[Outcome] = []
        self.events: list[dict[str, Any]] = []  # the breakers' events, as they were drained

    @property
    def asks(self) -> list[CallAsk]:
        return [ask for _, ask, _ in self.asked]

    def _tick(self) -> float:
        self.now += self.step_s
        return self.now

    def acquire_many(self, model: str, asks: list[CallAsk], priority: int, owner: int) -> Granted:
        self.asked.extend((model, ask, priority) for ask in asks)
        granted = self.gov.acquire_many(model, asks, self._tick(), priority=priority, asker=owner)
        if self.endpoint is None:
            return granted
        return Granted([replace(g, endpoint=self.endpoint) for g in granted.grants], granted.then)

    def settle_many(self, settled: list[tuple[int, Outcome]], released: list[int]) -> list[str]:
        now = self._tick()
        for ticket, outcome in settled:
            self.outcomes.append(outcome)
            self.gov.settle(ticket, outcome, now)
        for ticket in released:
            self.gov.release(ticket, now)
        self.events += [dict(e.data) for e in self.gov.drain_events() if e.kind == "breaker"]
        return []

    def view(self) -> GovernorView:
        return self.gov.view(self.now)
