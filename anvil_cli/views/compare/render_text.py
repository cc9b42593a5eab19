"""`anvil compare` in the terminal: a Rich table of every side's figures with each other side's
difference from the first (B − A, and B / A), then the flips, the jobs only one side has and
the cheapest side at the target pass rate. Every string from the journal is escaped (`plain`)
and never read as markup; the lists stop at `MAX_SHOWN` lines (`--json` has all of them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from anvil_cli.input_limits import plain
from anvil_cli.views.compare.fmt import fmt_difference, fmt_value
from anvil_cli.views.compare.model import FIGURES, Comparison, Flip, Pair

MAX_SHOWN: Final = 20


def figures_table(c: Comparison) -> Table:
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), title_justify="left")
    table.add_column("")
    for side in c.sides:
        table.add_column(Text(plain(side.name), style="bold"), justify="right")
    for pair in c.pairs:
        header = "B − A (B / A)" if len(c.sides) == 2 else f"{plain(pair.b)} − {plain(pair.a)}"
        table.add_column(Text(header), justify="right")
    for f in FIGURES:
        cells = [fmt_value(f.unit, side.figures[f.key]) for side in c.sides]
        diffs = [fmt_difference(f.unit, **p.differences[f.key]) for p in c.pairs]
        table.add_row(f.label, *cells, *diffs)
    return table


def _one(failure: Mapping[str, str | None]) -> str:
    detail = failure.get("detail")
    return plain(failure.get("name") or "") + (f": {plain(detail)}" if detail else "")


def _failed(failures: Sequence[Mapping[str, str | None]]) -> str:
    if not failures:
        return "passed"
    return ", ".join(_one(f) for f in failures)


def _flip_lines(title: str, flips: Sequence[Flip], pair: Pair) -> list[RenderableType]:
    lines: list[RenderableType] = [Text(f"{title}: {len(flips):,}", style="bold")]
    for flip in flips[:MAX_SHOWN]:
        lines.append(Text(f"  {plain(flip.id)}", style="bold"))
        lines.append(Text(f"    {plain(pair.a)}: {_failed(flip.a_failures)}"))
        lines.append(Text(f"    {plain(pair.b)}: {_failed(flip.b_failures)}"))
    if len(flips) > MAX_SHOWN:
        lines.append(Text(f"  … and {len(flips) - MAX_SHOWN:,} more (all of them: --json)", style="dim"))
    return lines


def _only_lines(side: str, ids: Sequence[str]) -> list[RenderableType]:
    if not ids:
        return []
    shown = ", ".join(plain(i) for i in ids[:MAX_SHOWN])
    more = f", … and {len(ids) - MAX_SHOWN:,} more" if len(ids) > MAX_SHOWN else ""
    return [Text(f"only in {plain(side)} ({len(ids):,}): {shown}{more}")]


def _pair_lines(c: Comparison, pair: Pair) -> list[RenderableType]:
    by = "base id" if c.matched_by == "base_id" else "id"
    a, b = plain(pair.a), plain(pair.b)
    lines: list[RenderableType] = [Text(""), Text(f"{b} against {a}: {pair.matched:,} jobs matched by {by}")]
    lines += _flip_lines(f"pass → fail ({a} → {b})", pair.pass_to_fail, pair)
    lines += _flip_lines(f"fail → pass ({a} → {b})", pair.fail_to_pass, pair)
    lines += _only_lines(pair.a, pair.only_a)
    lines += _only_lines(pair.b, pair.only_b)
    return lines


def render_text(c: Comparison) -> RenderableType:
    """The whole comparison for a terminal."""
    names = " · ".join(plain(s.name) for s in c.sides)
    run = f" of run {plain(c.sides[0].run_id)}" if c.matched_by == "base_id" else ""
    parts: list[RenderableType] = [Text(f"comparing {names}{run}", style="bold"), Text(""), figures_table(c)]
    for pair in c.pairs:
        parts += _pair_lines(c, pair)
    parts += [Text(""), Text(plain(c.verdict()), style="bold")]
    return Group(*parts)
