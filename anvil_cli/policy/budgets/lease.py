"""Leases: chunks of a cap's remaining money that a governor takes from the ledger at once and
hands out call by call in memory, so no call writes to the ledger. `lease_size` sizes them: an
eighth of what is left, at most `MAX_LEASE_CALLS` calls' worth, and near the end exactly what
the call needs, so the last dollars go out in call-sized pieces and no governor sits on money
another needs. `LeaseSource` is what the book asks (the SQLite ledger, or `MemoryLedger`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from anvil_cli.policy.budgets.caps import CapKey

LEASE_SHARE: Final = 1 / 8  # of what is left of the cap
MAX_LEASE_CALLS: Final = 32  # worst cases of the asking call
# a cap with less than this many worst cases left is tight: leases go back as their calls settle
TIGHT_CALLS: Final = 64
SLACK_USD: Final = 1e-9  # float sums of prices drift: within this of the cap still fits


def lease_size(left_usd: float, need_usd: float, worst_usd: float) -> float:
    """How much to lease when `need_usd` more is needed for a call of worst case `worst_usd`
    and `left_usd` of the cap is neither spent nor leased: 0 when the need does not fit."""
    if need_usd > left_usd + SLACK_USD:
        return 0.0
    size = max(need_usd, min(left_usd * LEASE_SHARE, MAX_LEASE_CALLS * worst_usd))
    return min(size, max(left_usd, need_usd))


class LedgerUnavailable(Exception):
    """The ledger cannot be read or written (a damaged file, a lock held too long, a full disk)."""


@dataclass(frozen=True, slots=True)
class LeaseAnswer:
    """What the ledger granted (0: nothing), and its figures for the cap after the grant: spent
    by everyone (as synced) and leased by every live governor (this one included)."""

    granted_usd: float
    spent_usd: float
    leased_usd: float


class LeaseSource(Protocol):
    """Where leases come from and spend goes (one transaction each); `LedgerUnavailable` when
    neither can be done."""

    def lease(
        self, key: CapKey, cap_usd: float, need_usd: float, worst_usd: float, wall: float
    ) -> LeaseAnswer:
        """Extend this owner's lease of `key` by `lease_size(...)` of what is left under `cap_usd`."""
        ...

    def sync(self, spent: dict[CapKey, float], keep: dict[CapKey, float], wall: float) -> None:
        """Add `spent` to the keys' spend; set this owner's lease of each key in `keep` to that
        amount (the rest goes back). One transaction."""
        ...
