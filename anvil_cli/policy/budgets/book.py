"""The governor's book of scoped budgets: every call is held, at its worst case, against each cap
it is under (the state dir's day and month, and each of its job's scopes by window) before it
starts, and settled after. Money comes from the ledger in leases (`lease.py`) and is handed out
here in memory; spend goes back to the ledger at most every `SYNC_S`, and at once while a cap
is tight, when unused lease money is returned too. A cap that cannot cover a call even if
nothing were in flight denies it (`SCOPE_DENY`); one whose money is held by calls in flight (here
or in another process) makes it wait. Pure: `now` is monotonic seconds, `wall_offset` turns it
into Unix time for the windows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from anvil_cli.policy.budgets.caps import ALL, Cap, CapKey, period_of
from anvil_cli.policy.budgets.lease import SLACK_USD, TIGHT_CALLS, LeaseSource, LedgerUnavailable
from anvil_cli.policy.budgets.memory import MemoryLedger
from anvil_cli.policy.governor.budget import usd
from anvil_cli.policy.governor.calls import Deny, Wait
from anvil_cli.policy.governor.scoped import SCOPE_DENY, ScopeLine

SYNC_S: Final = 1.0  # spend goes to the ledger at most this often (at once while a cap is tight)
RENEW_S: Final = 15.0  # leases held this long are renewed (the ledger's LEASE_TTL_S is longer)
RETRY_S: Final = 0.25  # a cap with nothing to lease is asked again after this long
POLL_S: Final = 1.0  # a call waiting for money held elsewhere asks again after this long


@dataclass(slots=True)
class _Lease:
    leased: float = 0.0  # leased from the ledger and not yet returned
    held: float = 0.0  # worst cases of calls in flight
    holds: int = 0  # calls in flight: at zero, `held` is exactly 0.0 (float sums drift)
    spent: float = 0.0  # settled here, not yet synced
    tight: bool = False
    ledger_spent: float = 0.0  # the ledger's spend of the key when last heard
    retry_at: float = 0.0  # the ledger had nothing to lease: not asked again before this

    @property
    def free(self) -> float:
        return self.leased - self.held - self.spent


@dataclass(slots=True)
class _Hold:
    keys: list[CapKey]
    worst: float


@dataclass(slots=True)
class ScopeBook:
    """The caps of a run's governor, held against `source`; the `run` window against
    `run_source`, under the period `run_period` (the run's id where the ledger holds it, so a
    resumed run or a replaced governor counts what the run spent before)."""

    caps: tuple[Cap, ...]
    source: LeaseSource
    wall_offset: float = 0.0  # Unix time minus `now`
    run_source: LeaseSource = field(default_factory=MemoryLedger)
    run_period: str = "run"
    _leases: dict[CapKey, _Lease] = field(default_factory=dict)
    _holds: dict[int, _Hold] = field(default_factory=dict)
    _exhausted: set[CapKey] = field(default_factory=set)
    _events: list[tuple[str, float, dict[str, Any]]] = field(default_factory=list)
    _synced_at: float = 0.0

    def _keys(self, scopes: tuple[str, ...], now: float) -> list[tuple[CapKey, Cap]]:
        wall = now + self.wall_offset
        return [
            (CapKey(c.scope, c.window, self._period(c.window, wall)), c)
            for c in self.caps
            if c.scope == ALL or c.scope in scopes
        ]

    def _period(self, window: str, wall: float) -> str:
        return self.run_period if window == "run" else period_of(window, wall)

    def _source(self, key: CapKey) -> LeaseSource:
        return self.run_source if key.window == "run" else self.source

    def check(self, scopes: tuple[str, ...], worst_usd: float, now: float) -> Wait | Deny | None:
        """Can a call of these scopes, costing at worst `worst_usd`, start now? Leases more
        where what is leased does not cover it."""
        for key, cap in self._keys(scopes, now):
            lease = self._leases.setdefault(key, _Lease())
            if lease.free + SLACK_USD >= worst_usd:
                continue
            if now >= lease.retry_at:  # else the ledger said no a moment ago: not asked again yet
                need = worst_usd - max(0.0, lease.free)
                try:
                    answer = self._source(key).lease(key, cap.usd, need, worst_usd, now + self.wall_offset)
                except LedgerUnavailable as exc:  # no lease, no call: its jobs stop, resumably
                    return self._deny(key, cap, lease.ledger_spent + lease.spent, worst_usd, now, f"{exc}")
                lease.leased += answer.granted_usd
                lease.ledger_spent = answer.spent_usd
                lease.tight = cap.usd - answer.spent_usd - answer.leased_usd < TIGHT_CALLS * worst_usd
                if answer.granted_usd > 0:
                    continue
                lease.retry_at = now + RETRY_S
            spent = lease.ledger_spent + lease.spent
            if spent + worst_usd > cap.usd + SLACK_USD:
                return self._deny(key, cap, spent, worst_usd, now)
            return Wait(POLL_S, SCOPE_DENY)  # held by calls in flight: they may leave enough
        return None

    def _deny(
        self, key: CapKey, cap: Cap, spent: float, worst_usd: float, now: float, ledger_error: str = ""
    ) -> Deny:
        message = (
            f"scope {key.scope}: spent {usd(spent)} of its {usd(cap.usd)} {key.label()}, and the next "
            f"call's worst case ({usd(worst_usd)}) would pass it"
        )
        if ledger_error:
            message = f"scope {key.scope} ({key.label()}): the budget ledger cannot be used: {ledger_error}"
        if key not in self._exhausted:
            self._exhausted.add(key)
            data = {"scope": key.scope, "window": key.window, "period": key.period, "cap_usd": cap.usd}
            self._events.append(
                ("budget_scope_exhausted", now, {**data, "spent_usd": spent, "message": message})
            )
            self.sync(now)  # what is leased here goes back: other processes may still fit smaller calls
        return Deny(SCOPE_DENY, message)

    def hold(self, ticket: int, scopes: tuple[str, ...], worst_usd: float, now: float) -> None:
        """Hold `worst_usd` for a granted call (after `check` said it fits)."""
        keys = [key for key, _ in self._keys(scopes, now)]
        for key in keys:
            lease = self._leases.setdefault(key, _Lease())
            lease.held += worst_usd
            lease.holds += 1
        if keys:
            self._holds[ticket] = _Hold(keys, worst_usd)

    def release(self, ticket: int, now: float) -> None:
        """A granted call that was never made."""
        self.settle(ticket, 0.0, now)

    def settle(self, ticket: int, actual_usd: float, now: float) -> None:
        """Replace a call's hold by what it cost; syncs when due (at once while a cap is tight)."""
        hold = self._holds.pop(ticket, None)
        if hold is None:
            return
        tight = False
        for key in hold.keys:
            lease = self._leases[key]
            lease.holds -= 1
            lease.retry_at = 0.0  # what it held may be enough for the next: the ledger may be asked
            lease.held = max(0.0, lease.held - hold.worst) if lease.holds > 0 else 0.0
            lease.spent += actual_usd
            tight = tight or lease.tight
        if tight or now - self._synced_at >= SYNC_S:
            self.sync(now)

    def tick(self, now: float) -> None:
        """Sync when due (the host calls this as it is asked for its view): spend settled here,
        leases no call holds back, and every `RENEW_S` the leases renewed (else reclaimable)."""
        since = now - self._synced_at
        leases = self._leases.values()
        idle = any(lease.spent or (lease.holds == 0 and lease.leased > 0) for lease in leases)
        if (since >= SYNC_S and idle) or (since >= RENEW_S and any(lease.leased > 0 for lease in leases)):
            self.sync(now)

    def sync(self, now: float, *, closing: bool = False) -> None:
        """Spend to the ledger; lease money beyond the calls in flight back where the cap is
        tight, nothing is in flight, or the book is `closing`."""
        self._synced_at = now
        by_source: dict[int, tuple[LeaseSource, dict[CapKey, float], dict[CapKey, float]]] = {}
        for key, lease in self._leases.items():
            source = self._source(key)
            _, spent, keep = by_source.setdefault(id(source), (source, {}, {}))
            back = closing or lease.tight or lease.holds == 0
            keep[key] = 0.0 if closing else lease.held if back else lease.leased - lease.spent
            if lease.spent:
                spent[key] = lease.spent
        for source, spent, keep in by_source.values():
            try:
                source.sync(spent, keep, now + self.wall_offset)
            except LedgerUnavailable:  # kept here (still leased there): synced next time
                continue
            for key, new_leased in keep.items():
                lease = self._leases[key]
                lease.ledger_spent += lease.spent
                lease.leased, lease.spent = new_leased, 0.0

    def drain_events(self) -> list[tuple[str, float, dict[str, Any]]]:
        """(kind, now, data) of the caps spent since the last drain: "budget_scope_exhausted"."""
        out, self._events = self._events, []
        return out

    def lines(self, now: float) -> list[ScopeLine]:
        """Every cap of the current periods, as this governor sees it."""
        out = []
        for key, cap in self._keys(tuple({c.scope for c in self.caps}), now):
            lease = self._leases.get(key, _Lease())
            spent = lease.ledger_spent + lease.spent
            out.append(
                ScopeLine(
                    key.scope, key.window, key.period, cap.usd, spent, lease.held, key in self._exhausted
                )
            )
        return out
