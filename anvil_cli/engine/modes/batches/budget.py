"""The budget of `--mode batches`: the governor's own guard (`policy/governor/budget.py`), one hold per
open batch (its worst case), settled with what the batch's results cost.

As in messages mode the guard covers the whole run: it starts from what a resumed run spent
before (`engine/governor_host/manager.py` does the same for the governor), so its figures and messages are the
whole run's and its cap the one in force; its notices become the
same journal events ("budget_warn", "budget_exhausted", with the governor's data), and
`view()` is the governor view's `budget`, which the budget alert reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from anvil_cli.policy.governor.budget import BudgetGuard, BudgetView


class BatchesBudget:
    """Decides how many of the next requests fit; holds, releases and settles batches."""

    def __init__(
        self,
        max_usd: float | None,
        warn_usd: float | None,
        spent_before_usd: float,
        held_usd: Iterable[float] = (),
    ) -> None:
        self.guard = BudgetGuard(max_usd, warn_usd, spent_before_usd)
        self.denied = False  # the cap cannot cover the next request even once every batch has ended
        self.denied_worst_usd = 0.0  # the worst case of the request it could not cover
        for usd in held_usd:  # batches of an earlier session, still open
            self.guard.reserve(usd)

    def fitting(self, worst_usd: list[float]) -> int:
        """How many of these requests, in order, fit together on top of what is held. When not
        even the first fits and never could (the open batches' results cost nothing at best),
        the budget is exhausted: `denied`, and a "budget_exhausted" notice."""
        total = 0.0
        for n, usd in enumerate(worst_usd):
            if not self.guard.fits(total + usd):
                if n == 0 and self.guard.exhausted_for(usd):
                    self.denied = True
                    self.denied_worst_usd = usd
                    self.guard.deny(usd)
                return n
            total += usd
        return len(worst_usd)

    def hold(self, worst_usd: float) -> None:
        """A batch is about to be created: hold its worst case."""
        self.guard.reserve(worst_usd)

    def release(self, worst_usd: float) -> None:
        """A held batch was never created (refused, or not found on the server)."""
        self.guard.release(worst_usd)

    def settle(self, worst_usd: float, actual_usd: float) -> None:
        """A held batch's results are in: what it cost replaces its hold (warns once)."""
        self.guard.settle(worst_usd, actual_usd)

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """(kind, data) of the journal events since the last call, as the governor emits them."""
        return self.guard.drain_events()

    def view(self) -> BudgetView:
        """As the governor's `GovernorView.budget`."""
        return self.guard.view()
