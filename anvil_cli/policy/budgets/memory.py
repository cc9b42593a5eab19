"""A ledger held in memory: the shared governor actor's on Ray (a cluster has no shared state
dir: the actor holds the scopes for every run that joins it), each run's own `run` window, and
the tests'. One owner; what it leases and spends is counted as the SQLite ledger counts it."""

from __future__ import annotations

from anvil_cli.policy.budgets.caps import CapKey
from anvil_cli.policy.budgets.lease import LeaseAnswer, lease_size


class MemoryLedger:
    """Spend and the one owner's lease per cap key."""

    def __init__(self) -> None:
        self.spent: dict[CapKey, float] = {}
        self.leased: dict[CapKey, float] = {}

    def lease(
        self, key: CapKey, cap_usd: float, need_usd: float, worst_usd: float, wall: float
    ) -> LeaseAnswer:
        spent, leased = self.spent.get(key, 0.0), self.leased.get(key, 0.0)
        granted = lease_size(cap_usd - spent - leased, need_usd, worst_usd)
        self.leased[key] = leased + granted
        return LeaseAnswer(granted, spent, leased + granted)

    def sync(self, spent: dict[CapKey, float], keep: dict[CapKey, float], wall: float) -> None:
        for key, usd in spent.items():
            self.spent[key] = self.spent.get(key, 0.0) + usd
        for key, usd in keep.items():
            self.leased[key] = usd
