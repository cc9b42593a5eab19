"""What the governor asks of the scoped budgets' book (`policy/budgets/book.py`), and the line
each cap shows in its view: the governor holds every call against the run's budget here and
against its scopes and windows there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol

from anvil_cli.policy.governor.calls import Deny, Wait

SCOPE_DENY: Final = "budget_scope"  # the Deny and Wait reason, and the stop reason of the run


@dataclass(frozen=True, slots=True)
class ScopeLine:
    """A cap as this governor sees it: spent (the ledger's, with what is settled here),
    reserved by its calls in flight, left, and whether it has denied a call."""

    scope: str
    window: str
    period: str
    cap_usd: float
    spent_usd: float
    reserved_usd: float
    exhausted: bool

    @property
    def left_usd(self) -> float:
        return max(0.0, self.cap_usd - self.spent_usd - self.reserved_usd)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "window": self.window,
            "period": self.period,
            "cap_usd": self.cap_usd,
            "spent_usd": self.spent_usd,
            "reserved_usd": self.reserved_usd,
            "left_usd": self.left_usd,
            "exhausted": self.exhausted,
        }


class ScopeGuard(Protocol):
    """The book, as the governor drives it."""

    def check(self, scopes: tuple[str, ...], worst_usd: float, now: float) -> Wait | Deny | None: ...

    def hold(self, ticket: int, scopes: tuple[str, ...], worst_usd: float, now: float) -> None: ...

    def settle(self, ticket: int, actual_usd: float, now: float) -> None: ...

    def release(self, ticket: int, now: float) -> None: ...

    def tick(self, now: float) -> None: ...

    def drain_events(self) -> list[tuple[str, float, dict[str, Any]]]: ...

    def lines(self, now: float) -> list[ScopeLine]: ...
