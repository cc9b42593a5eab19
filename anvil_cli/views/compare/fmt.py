"""How `anvil compare` writes its figures and their differences, the same in every view."""

from __future__ import annotations

from anvil_cli.views.dashboard.render import fmt_s

Number = int | float


def fmt_usd(value: float) -> str:
    """Dollars to the cent from $1, else to a millionth (one job's cost is often less than a
    cent)."""
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.6f}"


def fmt_value(unit: str, value: Number | None) -> str:
    """A figure as every view prints it ("-" when there is none)."""
    if value is None:
        return "-"
    if unit == "rate":
        return f"{value:.1%}"
    if unit == "score":
        return f"{value:.3f}"
    if unit == "usd":
        return fmt_usd(float(value))
    if unit == "s":
        return fmt_s(float(value))
    return f"{value:,}"


def fmt_difference(unit: str, diff: float | None, ratio: float | None) -> str:
    """B − A (a pass rate in percentage points) and, when A is not zero, B / A."""
    if diff is None:
        return "-"
    sign = "+" if diff >= 0 else "-"
    if unit == "rate":
        text = f"{diff * 100:+.1f} pp"
    elif unit == "score":
        text = f"{diff:+.3f}"
    elif unit == "usd":
        text = sign + fmt_usd(abs(diff))
    elif unit == "s":
        text = sign + fmt_s(round(abs(diff), 9))  # 0.5 - 0.4 reads 0.100s, not 99.9ms
    else:
        text = f"{diff:+,}"
    return text if ratio is None else f"{text} (×{ratio:.2f})"
