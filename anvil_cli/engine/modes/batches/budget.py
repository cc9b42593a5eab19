"""The budget of `--mode batches`: the governor's own guard (`policy/governor/budget.py`), one hold per
open batch (its worst case), settled with what the batch's results cost.

As in messages mode the guard covers the whole run: it starts from what a resumed run spent
before (`engine/governor_host/manager.py` does the same for the governor), so its figures and messages are the
whole run's and its cap the one in force; its notices become the
same journal events ("budget_warn", "budget_exhausted", with the governor's data), and
`view()` is the governor view's `budget`, which the budget alert reads.

The scopes and windows (`budget.scopes`, `per_day_usd`, `per_month_usd`) are `scopes.BatchScopes`':
`choose` holds each job of the next batch against the caps it is under, after `max_usd`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from anvil_cli.engine.modes.batches.scopes import Ask, BatchScopes
from anvil_cli.policy.governor.budget import BudgetGuard, BudgetView
from anvil_cli.policy.governor.calls import Deny


@dataclass(slots=True)
class Choice:
    """Which jobs of the next batch go in (their indices, held), and why the others do not."""

    chosen: list[int] = field(default_factory=list)
    stopped: bool = False  # `max_usd` covers no more of them now: the rest wait
    scope_denied: list[int] = field(default_factory=list)  # a cap cannot cover them: pending, for a resume
    scope_waiting: bool = False  # a cap's money is held (open batches, other processes): asked again


class BatchesBudget:
    """Decides how many of the next requests fit; holds, releases and settles batches."""

    def __init__(
        self,
        max_usd: float | None,
        warn_usd: float | None,
        spent_before_usd: float,
        held_usd: Iterable[float] = (),
        scopes: BatchScopes | None = None,
    ) -> None:
        self.guard = BudgetGuard(max_usd, warn_usd, spent_before_usd)
        self.scopes = scopes if scopes is not None else BatchScopes(None, {})
        self.denied = False  # the cap cannot cover the next request even once every batch has ended
        self.denied_worst_usd = 0.0  # the worst case of the request it could not cover
        for usd in held_usd:  # batches of an earlier session, still open
            self.guard.reserve(usd)

    def fitting(self, worst_usd: list[float]) -> int:
        """How many of these requests, in order, fit together on top of what is held. When not
        even the first fits and never could (the open batches' results cost nothing at best),
        the budget is exhausted: `denied`, and a "budget_exhausted" notice."""
        return len(self._choose([Ask(-1, (), usd) for usd in worst_usd], scoped=False).chosen)

    def choose(self, asks: list[Ask]) -> Choice:
        """The jobs of the next batch that fit, in order: `max_usd` as `fitting` says (the rest
        wait once one does not fit), then each job's caps, which hold it when they cover it; a
        job they cannot cover is left out while the others go in."""
        return self._choose(asks, scoped=True)

    def _choose(self, asks: list[Ask], *, scoped: bool) -> Choice:
        choice = Choice()
        total = 0.0
        for n, ask in enumerate(asks):
            usd = ask.worst_usd
            if not self.guard.fits(total + usd):
                if not choice.chosen and self.guard.exhausted_for(usd):
                    self.denied = True
                    self.denied_worst_usd = usd
                    self.guard.deny(usd)
                choice.stopped = True
                break
            refusal = self.scopes.admit(ask) if scoped else None
            if isinstance(refusal, Deny):
                choice.scope_denied.append(n)
            elif refusal is not None:
                choice.scope_waiting = True
            else:
                choice.chosen.append(n)
                total += usd
        return choice

    def hold(self, worst_usd: float) -> None:
        """A batch is about to be created: hold its worst case."""
        self.guard.reserve(worst_usd)

    def release(self, worst_usd: float, seqs: Iterable[int] = ()) -> None:
        """A held batch (of these jobs) was never created (refused, or not found on the server)."""
        self.guard.release(worst_usd)
        self.scopes.release(seqs)

    def settle(
        self,
        worst_usd: float,
        actual_usd: float,
        seqs: Iterable[int] = (),
        costs: Mapping[int, float] | None = None,
    ) -> None:
        """A held batch's results are in: what it cost replaces its hold (warns once), and each
        of its jobs' (`costs`: by seq) their holds under the scopes."""
        self.guard.settle(worst_usd, actual_usd)
        self.scopes.settle(seqs, costs or {})

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """(kind, data) of the journal events since the last call, as the governor emits them
        (the scopes' "budget_scope_exhausted" too)."""
        return self.guard.drain_events() + self.scopes.events()

    def view(self) -> BudgetView:
        """As the governor's `GovernorView.budget`."""
        return self.guard.view()
