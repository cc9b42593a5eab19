"""`anvil compare --html FILE`: the comparison as one self-contained page in the report's style
(the run page's own stylesheet, inlined as `anvil report` inlines it): the figures side by side
with their differences, the flips, the jobs only one side has, and the verdict. No script runs
in it: the comparison's JSON rides along as inert data (`report.embedded_json`), and its
Content-Security-Policy allows only its own style, by hash, and no connection at all. Every
string from the journal is HTML-escaped."""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from anvil_cli.timefmt import local_iso
from anvil_cli.views.compare.fmt import fmt_difference, fmt_value
from anvil_cli.views.compare.model import FIGURES, Comparison, Flip, Pair
from anvil_cli.views.report import csp_hash, embedded_json, inline_asset, write_report

MAX_ROWS: Final = 1_000  # of each list on the page (`--json` has all of them)
# what this page adds to the run page's stylesheet: room between its panels and sections
_MORE_CSS: Final = (
    "\n.compare { margin-top: 12px; }\n.compare table + h2, .compare p + h2 { margin-top: 16px; }\n"
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _figures(c: Comparison) -> str:
    heads = [f"<th>{_e(s.name)}</th>" for s in c.sides]
    heads += [f"<th>{'B − A (B / A)' if len(c.sides) == 2 else _e(f'{p.b} − {p.a}')}</th>" for p in c.pairs]
    rows = []
    for f in FIGURES:
        cells = [f'<td class="num">{_e(fmt_value(f.unit, s.figures[f.key]))}</td>' for s in c.sides]
        cells += [
            f'<td class="num">{_e(fmt_difference(f.unit, **p.differences[f.key]))}</td>' for p in c.pairs
        ]
        rows.append(f"<tr><th>{_e(f.label)}</th>{''.join(cells)}</tr>")
    return f"<table><thead><tr><th></th>{''.join(heads)}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _one(failure: Mapping[str, str | None]) -> str:
    detail = failure.get("detail")
    return f"<code>{_e(failure.get('name') or '')}</code>" + (f": {_e(detail)}" if detail else "")


def _failed(failures: Sequence[Mapping[str, str | None]]) -> str:
    if not failures:
        return '<span class="muted">passed</span>'
    parts = [_one(f) for f in failures]
    return '<span class="error">' + "<br>".join(parts) + "</span>"


def _more(total: int) -> str:
    if total <= MAX_ROWS:
        return ""
    return f'<p class="muted">… and {total - MAX_ROWS:,} more (all of them: --json)</p>'


def _flips(title: str, flips: Sequence[Flip], pair: Pair) -> str:
    head = f"<h2>{_e(title)} <span class='muted'>({len(flips):,})</span></h2>"
    if not flips:
        return head + '<p class="muted">none</p>'
    rows = "".join(
        f'<tr><td class="mono">{_e(f.id)}</td><td class="msg">{_failed(f.a_failures)}</td>'
        f'<td class="msg">{_failed(f.b_failures)}</td></tr>'
        for f in flips[:MAX_ROWS]
    )
    table = f"<table><thead><tr><th>job</th><th>{_e(pair.a)}</th><th>{_e(pair.b)}</th></tr></thead>"
    return head + table + f"<tbody>{rows}</tbody></table>" + _more(len(flips))


def _only(side: str, ids: Sequence[str]) -> str:
    if not ids:
        return ""
    shown = ", ".join(f"<code>{_e(i)}</code>" for i in ids[:MAX_ROWS])
    head = f"<h2>Only in {_e(side)} <span class='muted'>({len(ids):,})</span></h2>"
    return f"{head}<p>{shown}</p>{_more(len(ids))}"


def _pair(c: Comparison, pair: Pair) -> str:
    by = "base id" if c.matched_by == "base_id" else "id"
    return (
        f'<div class="panel wide"><h2>{_e(pair.b)} against {_e(pair.a)}</h2>'
        f'<p class="muted">{pair.matched:,} jobs matched by {by}</p>'
        + _flips(f"Pass → fail ({pair.a} → {pair.b})", pair.pass_to_fail, pair)
        + _flips(f"Fail → pass ({pair.a} → {pair.b})", pair.fail_to_pass, pair)
        + _only(pair.a, pair.only_a)
        + _only(pair.b, pair.only_b)
        + "</div>"
    )


def render_html(c: Comparison, *, now: float) -> str:
    """The comparison as a whole page."""
    css = inline_asset("app.css") + _MORE_CSS
    csp = f"default-src 'none'; style-src {csp_hash(css)}; img-src data:; base-uri 'none'; form-action 'none'"
    names = " · ".join(s.name for s in c.sides)
    run = f" of run {c.sides[0].run_id}" if c.matched_by == "base_id" else ""
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>Anvil compare {_e(names)}</title>\n<style>{css}</style>\n</head>\n"
        '<body class="report">\n<header class="top"><div class="title">'
        f'<h1>Anvil compare</h1><span class="mono">{_e(names)}{_e(run)}</span></div>'
        f"<p><strong>{_e(c.verdict())}</strong></p></header>\n"
        '<section class="tables compare">\n<div class="panel wide"><h2>Side by side</h2>'
        + _figures(c)
        + "</div>\n"
        + "\n".join(_pair(c, p) for p in c.pairs)
        + f'\n</section>\n<footer class="muted">written {_e(local_iso(now))} by anvil compare</footer>\n'
        + f'<script type="application/json" id="anvil-compare">{embedded_json(c.to_json())}</script>\n'
        + "</body>\n</html>\n"
    )


def write_html(c: Comparison, path: Path) -> None:
    """Write the page atomically, mode 0600 (UsageError, exit 2, when it cannot be)."""
    write_report(path, render_html(c, now=time.time()))
