"""The "by endpoint" block of `anvil status` and `anvil report`: each named endpoint of the run
(`endpoints:` in anvil.yaml) with its paid calls, its cost, its share of the endpoints' cost,
its failed calls and 429s, and its breakers open now; as plain lines of fixed-width columns.

Reads a status's `endpoints` (`anvil_cli.snapshot.endpoints.EndpointStatus`, figures from the
journal); a run without named endpoints has none, and gets no lines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

HEADER: Final = ("endpoint", "calls", "calls %", "cost", "cost %", "errors", "429s", "open")


def _usd(value: float) -> str:
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def endpoint_rows(endpoints: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """One row of cells per endpoint, by name: name, calls, calls share, cost, cost share,
    errors, 429s, breakers open."""
    return [
        (
            name,
            f"{int(e['calls']):,}",
            f"{float(e['calls_share_pct']):.1f}%",
            _usd(float(e["cost_usd"])),
            f"{float(e['cost_share_pct']):.1f}%",
            f"{int(e['errors']):,}",
            f"{int(e['rate_limited']):,}",
            f"{int(e['open_breakers']):,}",
        )
        for name, e in sorted(endpoints.items())
    ]


def render_endpoints(endpoints: Mapping[str, Mapping[str, Any]] | None, indent: str = "  ") -> list[str]:
    """The block as plain lines (a title, a header, a line per endpoint); [] without endpoints."""
    if not endpoints:
        return []
    rows = [HEADER, *endpoint_rows(endpoints)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]

    def line(row: tuple[str, ...]) -> str:
        figures = (cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True))
        cells = [row[0].ljust(widths[0]), *figures]
        return (indent + "  ".join(cells)).rstrip()

    return ["by endpoint (calls and cost over the whole run; open: breakers open now):", *map(line, rows)]
