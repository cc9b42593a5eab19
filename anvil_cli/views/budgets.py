"""The budgets table of `anvil status --budgets` (from `snapshot/budgets.py`'s lines), and the
one line a run's views give its spent scopes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.table import Table
from rich.text import Text

from anvil_cli.policy.governor.budget import usd

LOW_SHARE = 0.02  # a cap with less than this share left is shown in yellow


def _usd(value: float | None) -> str:
    return "-" if value is None else usd(value)


def render_budgets(lines: list[dict[str, Any]], ledger: str) -> Table | Text:
    """Each cap: scope, window, period, cap, spent, reserved, left."""
    if not lines:
        return Text("no budgets by scope or window are set (budget.per_day_usd, per_month_usd, scopes)")
    table = Table(title=f"budgets (ledger {ledger})", title_justify="left", box=None, pad_edge=False)
    for name in ("scope", "window", "period"):
        table.add_column(name, no_wrap=True)
    for name in ("cap", "spent", "reserved", "left"):
        table.add_column(name, justify="right", no_wrap=True)
    for line in lines:
        cap, left = line["cap_usd"], line["left_usd"]
        style = "yellow" if cap is not None and left is not None and left < cap * LOW_SHARE else ""
        figures = [_usd(line[k]) for k in ("cap_usd", "spent_usd", "reserved_usd", "left_usd")]
        table.add_row(line["scope"], line["window"], line["period"], *figures, style=style)
    return table


def spent_scopes_line(governor: Mapping[str, Any]) -> str | None:
    """`scope budget spent, its jobs stopped: metadata.team=research (day, $50.00)`: the caps of
    a run's governor (`GovernorView.to_dict()`) that denied a call; None while none has."""
    scopes: Iterable[Mapping[str, Any]] = governor.get("scopes") or []
    spent = [f"{s['scope']} ({s['window']}, {usd(s['cap_usd'])})" for s in scopes if s.get("exhausted")]
    return f"scope budget spent, its jobs stopped: {', '.join(spent)}" if spent else None
