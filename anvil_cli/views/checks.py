"""How a run's answers fared against their checks, as text: the one-line figures the dashboard,
the progress line and `anvil status` show (`checks_line`), and the "checks" block of
`anvil status` and `anvil report` (`render_checks`): pass rate and mean score by model, by
variant and by each metadata key of `checks.by`, each check's passes, the re-asks and what
the judges cost, apart.

Reads a snapshot's or a status's `checks` (`anvil_cli.snapshot.types.Checks`); a run without
checks has none and gets nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

HEADER: Final = ("", "checked", "passed", "pass rate", "mean score", "jobs", "cost")


def pct(rate: float | None) -> str:
    """A 0-1 share as a percentage, "-" when unknown."""
    return "-" if rate is None else f"{100.0 * rate:.1f}%"


def score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def usd(value: float) -> str:
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def checks_line(checks: Mapping[str, Any] | None) -> str | None:
    """`12/15 passed (80.0%) · mean score 0.87 · 3 re-asks · judges $0.0123`; None without checks."""
    if not checks:
        return None
    parts = [
        f"{checks['passed']:,}/{checks['checked']:,} passed ({pct(checks['pass_rate'])})",
        f"mean score {score(checks['mean_score'])}",
    ]
    if checks["reasks"]:
        parts.append(f"{checks['reasks']:,} re-ask(s) ({usd(float(checks['reask_cost_usd']))})")
    if checks["judge_cost_usd"]:
        parts.append(f"judges {usd(float(checks['judge_cost_usd']))}")
    return " · ".join(parts)


def group_tables(checks: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, Mapping[str, Any]]]]]:
    """(title, [(name, group)]) of each grouping that has groups: by model, by variant, by each
    metadata key."""
    tables = [("model", list(checks["by_model"].items())), ("variant", list(checks["by_variant"].items()))]
    tables += [(f"metadata.{key}", list(groups.items())) for key, groups in checks["by"].items()]
    return [(title, rows) for title, rows in tables if rows]


def group_cells(name: str, g: Mapping[str, Any]) -> tuple[str, ...]:
    return (
        name,
        f"{int(g['checked']):,}",
        f"{int(g['passed']):,}",
        pct(g["pass_rate"]),
        score(g["mean_score"]),
        f"{int(g['jobs']):,}",
        usd(float(g["cost_usd"])),
    )


def _table(title: str, rows: list[tuple[str, ...]], indent: str) -> list[str]:
    head = (title, *HEADER[1:])
    every = [head, *rows]
    widths = [max(len(r[i]) for r in every) for i in range(len(head))]

    def line(row: tuple[str, ...]) -> str:
        cells = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))]
        return (indent + "  ".join(cells)).rstrip()

    return [line(r) for r in every]


def render_checks(checks: Mapping[str, Any] | None, indent: str = "  ") -> list[str]:
    """The block as plain lines; [] without checks."""
    line = checks_line(checks)
    if checks is None or line is None:
        return []
    lines = [f"checks: {line}"]
    per_check = checks["per_check"]
    if per_check:
        lines.append(
            indent
            + "each check: "
            + ", ".join(
                f"{name} {int(c['passed']):,}/{int(c['total']):,} (score {score(c['mean_score'])})"
                for name, c in per_check.items()
            )
        )
    for title, groups in group_tables(checks):
        lines += _table(title, [group_cells(name, g) for name, g in groups], indent)
    return lines
