"""`anvil status --budgets`: each cap of the settings (`budget.per_day_usd`, `per_month_usd`,
`budget.scopes`) in its current period, with what the state dir's ledger says was spent and is
reserved (leased by the governors of running processes), and what is left. Read from the
ledger alone: works with no run in progress. Caps per run (a scope's `max_usd`) are the run's
own and are not in the ledger."""

from __future__ import annotations

from typing import Any

from anvil_cli.config.settings import Settings
from anvil_cli.engine.ledger.store import Ledger, LedgerRow, ledger_path
from anvil_cli.policy.budgets import CapKey, caps_from, period_of


def _ledger_rows(settings: Settings, wall: float) -> dict[CapKey, LedgerRow]:
    path = ledger_path(settings.state_dir)
    if not path.exists():
        return {}
    ledger = Ledger(path)
    try:
        return {row.key: row for row in ledger.rows(wall)}
    finally:
        ledger.close()


def budget_lines(settings: Settings, wall: float) -> list[dict[str, Any]]:
    """A line per cap of the current periods (and per scope the ledger knows that has no cap
    here: spent, no cap)."""
    rows = _ledger_rows(settings, wall)
    out: list[dict[str, Any]] = []
    shown: set[CapKey] = set()
    for cap in caps_from(settings.budget):
        if cap.window == "run":
            continue
        key = CapKey(cap.scope, cap.window, period_of(cap.window, wall))
        row = rows.get(key, LedgerRow(key, 0.0, 0.0))
        left = max(0.0, cap.usd - row.spent_usd - row.leased_usd)
        out.append(_line(key, cap.usd, row, left))
        shown.add(key)
    for key, row in rows.items():
        if key not in shown and key.window != "run" and key.period == period_of(key.window, wall):
            out.append(_line(key, None, row, None))
    return out


def _line(key: CapKey, cap: float | None, row: LedgerRow, left: float | None) -> dict[str, Any]:
    return {
        "scope": key.scope,
        "window": key.window,
        "period": key.period,
        "cap_usd": cap,
        "spent_usd": row.spent_usd,
        "reserved_usd": row.leased_usd,
        "left_usd": left,
    }
