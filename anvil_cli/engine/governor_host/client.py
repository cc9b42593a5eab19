"""How the engine reaches the run's governor, wherever it lives (a Manager process locally, a
named actor on a cluster): this protocol. `governor_host.manager.GovernorService` serves it."""

from __future__ import annotations

from typing import Protocol

from anvil_cli.policy.governor import (
    CallAsk,
    Deny,
    GovernorEvent,
    GovernorView,
    Grant,
    Granted,
    Outcome,
    Wait,
)


class GovernorClient(Protocol):
    """Every API call is granted and settled through this; the conductor also reads and steers."""

    def acquire(
        self, model: str, est_input_tokens: int, max_tokens: int, worst_cost_usd: float, owner: int = -1
    ) -> Grant | Wait | Deny: ...

    def acquire_many(self, model: str, asks: list[CallAsk], priority: int, owner: int) -> Granted: ...

    def settle_many(self, settled: list[tuple[int, Outcome]], released: list[int]) -> list[str]: ...

    def settle(self, ticket: int, outcome: Outcome) -> None: ...

    def release(self, ticket: int) -> None: ...

    def release_owner(self, owner: int) -> int: ...

    def drain_events(self) -> list[GovernorEvent]: ...

    def view(self) -> GovernorView: ...

    def set_breaker(self, model: str, state: str) -> None: ...

    def join(self, run_id: str, spent_usd: float) -> None: ...
