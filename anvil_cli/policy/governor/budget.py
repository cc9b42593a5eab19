"""The budget guard: reserve a call's worst-case cost before it starts, settle the actual after."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

# Float sums of many small prices drift; a reservation within this much of the cap still fits.
_SLACK_USD: Final = 1e-9


def usd(amount: float) -> str:
    """`$0.20`, or `$0.1981` when cents would round it."""
    cents = amount * 100
    return f"${amount:.2f}" if abs(cents - round(cents)) < 1e-6 else f"${amount:.4f}"


def exhausted_message(spent_usd: float, worst_usd: float, max_usd: float | None) -> str:
    """Why the budget stopped a run, in the whole run's figures: what it has spent (across every
    resume) and the cap in force."""
    cap = "no" if max_usd is None else usd(max_usd)
    return (
        f"budget reached: the run has spent {usd(spent_usd)} of its {cap} cap, and the next call's "
        f"worst case ({usd(worst_usd)}) would pass it"
    )


@dataclass(frozen=True, slots=True)
class BudgetNotice:
    """A one-off budget event: "budget_warn" or "budget_exhausted" (with the worst case of the
    call or batch refused)."""

    kind: str
    spent_usd: float
    reserved_usd: float
    worst_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class BudgetView:
    """The budget as of now: what every view shows of it and the budget alert reads (the
    governor's, or Message Batches mode's own guard)."""

    spent_usd: float
    reserved_usd: float
    max_usd: float | None
    warn_usd: float | None

    def to_dict(self) -> dict[str, Any]:
        """As JSON (the snapshot's `governor.budget`)."""
        return {
            "spent_usd": self.spent_usd,
            "reserved_usd": self.reserved_usd,
            "max_usd": self.max_usd,
            "warn_usd": self.warn_usd,
        }


class BudgetGuard:
    """Keeps spent + reserved ≤ max_usd, so a run that reserves worst-case costs never overspends.

    `max_usd` and `warn_usd` are the whole run's; `spent_before_usd` is what the run spent before
    this guard began (a resumed run), so `spent_usd` and every message speak of the whole run."""

    def __init__(self, max_usd: float | None, warn_usd: float | None, spent_before_usd: float = 0.0) -> None:
        self.max_usd = max_usd
        self.warn_usd = warn_usd
        self.spent_usd = spent_before_usd
        self.reserved_usd = 0.0
        self._holds = 0  # reservations outstanding: at zero, reserved_usd is reset to exactly 0.0
        self._warned = False
        self._exhausted = False
        self._notices: list[BudgetNotice] = []

    def fits(self, cost_usd: float) -> bool:
        """Would reserving `cost_usd` on top of what is spent and reserved stay within the cap?"""
        if self.max_usd is None:
            return True
        return self.spent_usd + self.reserved_usd + cost_usd <= self.max_usd + _SLACK_USD

    def exhausted_for(self, cost_usd: float) -> bool:
        """Would `cost_usd` break the cap even if every call in flight turned out free?"""
        if self.max_usd is None:
            return False
        return self.spent_usd + cost_usd > self.max_usd + _SLACK_USD

    def deny(self, worst_usd: float = 0.0) -> None:
        """Record that a call costing at worst `worst_usd` was refused for budget (notifies once)."""
        if not self._exhausted:
            self._exhausted = True
            notice = BudgetNotice("budget_exhausted", self.spent_usd, self.reserved_usd, worst_usd)
            self._notices.append(notice)

    def reserve(self, cost_usd: float) -> None:
        """Hold `cost_usd` for a call about to start (check `fits` first)."""
        self.reserved_usd += cost_usd
        self._holds += 1

    def release(self, reserved_usd: float) -> None:
        """Drop a reservation whose call never ran."""
        self._holds = max(0, self._holds - 1)
        self.reserved_usd = max(0.0, self.reserved_usd - reserved_usd) if self._holds else 0.0

    def settle(self, reserved_usd: float, actual_usd: float) -> None:
        """Replace a reservation by what the call actually cost; warn once past `warn_usd`."""
        self.release(reserved_usd)
        self.charge(actual_usd)

    def charge(self, actual_usd: float) -> None:
        """Count a call paid for without a reservation here (one granted by a governor that was
        lost and replaced); warn once past `warn_usd`."""
        self.spent_usd += actual_usd
        if self.warn_usd is not None and not self._warned and self.spent_usd >= self.warn_usd:
            self._warned = True
            self._notices.append(BudgetNotice("budget_warn", self.spent_usd, self.reserved_usd))

    def drain(self) -> list[BudgetNotice]:
        """Notices since the last drain, oldest first."""
        out, self._notices = self._notices, []
        return out

    def drain_events(self) -> list[tuple[str, dict[str, Any]]]:
        """(kind, data) of the notices since the last drain, as the journal records them (the
        governor's events and Message Batches mode's alike)."""
        out: list[tuple[str, dict[str, Any]]] = []
        for notice in self.drain():
            data: dict[str, Any] = {"spent_usd": notice.spent_usd}
            if notice.kind == "budget_warn":
                data["warn_usd"] = self.warn_usd
            else:
                data.update(
                    reserved_usd=notice.reserved_usd, max_usd=self.max_usd, worst_usd=notice.worst_usd
                )
            out.append((notice.kind, data))
        return out

    def view(self) -> BudgetView:
        """The budget as of now."""
        return BudgetView(self.spent_usd, self.reserved_usd, self.max_usd, self.warn_usd)
