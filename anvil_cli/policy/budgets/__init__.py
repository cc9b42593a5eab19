"""Budgets by scope and window (`budget.scopes`, `budget.per_day_usd`, `budget.per_month_usd`):
which scopes a job belongs to, the caps and their periods, how much money to lease from the
ledger, and the in-memory book that holds each call's worst case against every cap it is under.
Pure: the time comes in as an argument; the ledger is reached through `LeaseSource`."""

from anvil_cli.policy.budgets.book import ScopeBook
from anvil_cli.policy.budgets.caps import ALL, Cap, CapKey, caps_from, period_of, scopes_of
from anvil_cli.policy.budgets.lease import LeaseAnswer, LeaseSource, lease_size
from anvil_cli.policy.budgets.memory import MemoryLedger
from anvil_cli.policy.governor.scoped import SCOPE_DENY, ScopeLine

__all__ = [
    "ALL",
    "SCOPE_DENY",
    "Cap",
    "CapKey",
    "LeaseAnswer",
    "LeaseSource",
    "MemoryLedger",
    "ScopeBook",
    "ScopeLine",
    "caps_from",
    "lease_size",
    "period_of",
    "scopes_of",
]
