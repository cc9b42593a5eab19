"""The real `Governor` standing in for a worker's `GovernorClient` in tests that drive one agent
directly: its clock jumps a minute on every round trip, so no pause or 429 holds a test, and it
keeps what it saw (the asks with their model and priority, the outcomes settled)."""

from __future__ import annotations

from dataclasses import replace

from anvil_cli.policy.governor import BreakerPolicy, CallAsk, Governor, GovernorView, Granted, Limits, Outcome


class JumpingGovernor:
    """A `GovernorClient` over the real governor; grants name `endpoint` when one is given."""

    def __init__(self, endpoint: str | None = None) -> None:
        self.endpoint = endpoint
        self.now = 0.0
        limits = Limits(requests_per_minute=60_000, burst_size=1_000)
        self.gov = Governor(
            lambda _m: ("default", limits), BreakerPolicy(), max_usd=None, warn_usd=None, now=0.0
        )
        self.asked: list[tuple[str, CallAsk, int]] = []  # (model, ask, priority), in order
        self.outcomes: list[Outcome] = []

    @property
    def asks(self) -> list[CallAsk]:
        return [ask for _, ask, _ in self.asked]

    def _tick(self) -> float:
        self.now += 60.0
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
        return []

    def view(self) -> GovernorView:
        return self.gov.view(self.now)
