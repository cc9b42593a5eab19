"""The dashboard frame: a pure function of the run snapshot (see `anvil_cli.snapshot`).

Readable at 80 columns: one label column, one value column, every value line cut with an
ellipsis rather than wrapped. Colours are only emphasis; with NO_COLOR the text says it all
(the binding limit is marked with `<`, alerts carry their severity in words).
"""

from __future__ import annotations

import os
from typing import Any, Final

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

MAX_MODELS: Final = 4
MAX_POOLS: Final = 4
MAX_FAILURES: Final = 3
MAX_ALERTS: Final = 4
SEVERITY_STYLE: Final = {"high": "bold red", "medium": "yellow", "low": "cyan"}
BREAKER_STYLE: Final = {"closed": "green", "half_open": "yellow", "open": "bold red"}
DIM_LABEL: Final = {"requests": "req", "input_tokens": "in", "output_tokens": "out"}


def fmt_duration(seconds: float | None) -> str:
    """45s, 3m12s, 1h04m; "-" when unknown."""
    if seconds is None:
        return "-"
    s = round(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def fmt_s(value: float | None) -> str:
    """A latency: 0.412s, 12.3s; "-" when unknown."""
    if value is None:
        return "-"
    return f"{value:.3f}s" if value < 10 else f"{value:.1f}s"


def fmt_usd(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def _line(*parts: str | tuple[str, str]) -> Text:
    """One value line, cut with an ellipsis if too long."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for part in parts:
        if isinstance(part, tuple):
            text.append(part[0], style=part[1])
        else:
            text.append(part)
    return text


def _progress(s: dict[str, Any]) -> RenderableType:
    c = s["counts"]
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(ratio=1)
    grid.add_column(no_wrap=True)
    bar = ProgressBar(total=max(1, c["total"]), completed=c["done"])
    eta = fmt_duration(s["eta_s"])
    grid.add_row(bar, f"{s['progress_pct']:5.1f}%  {c['done']:,}/{c['total']:,}  ETA {eta}")
    return grid


def _jobs(s: dict[str, Any]) -> Text:
    c = s["counts"]
    return _line(
        f"{c['succeeded']:,} ok  ",
        (f"{c['failed']:,} failed", "red" if c["failed"] else ""),
        f"  {c['in_flight']:,} running  {c['pending']:,} pending  |  elapsed {fmt_duration(s['elapsed_s'])}",
    )


def _speed(s: dict[str, Any]) -> Text:
    t = s["throughput"]
    return _line(
        (f"{t['jobs_per_s']:,.1f} jobs/s", "bold"),
        f"  {t['requests_per_min']:,.0f} req/min  (last {fmt_duration(t['window_s'])})"
        f"  |  overall {t['jobs_per_s_overall']:,.1f} jobs/s",
    )


def _latency(s: dict[str, Any]) -> list[Text]:
    lat = s["latency_s"]
    lines = [
        _line(
            f"p50 {fmt_s(lat['p50'])}  p95 {fmt_s(lat['p95'])}  p99 {fmt_s(lat['p99'])}"
            f"  (recent p95 {fmt_s(lat.get('recent_p95'))}, {lat['count']:,} jobs)"
        )
    ]
    models = s.get("latency_by_model_s") or {}
    if len(models) > 1 or (models and lat["count"] != next(iter(models.values()))["count"]):
        for model, m in list(models.items())[:MAX_MODELS]:
            lines.append(
                _line(
                    (f"{model[:20]:<20}", "dim"),
                    f" p50 {fmt_s(m['p50'])}  p95 {fmt_s(m['p95'])}  p99 {fmt_s(m['p99'])}  n={m['count']:,}",
                )
            )
    return lines


def _errors(s: dict[str, Any]) -> list[Text]:
    e = s["errors"]
    window = "last min" if e["window_s"] >= 60 else f"last {fmt_duration(e['window_s'])}"
    lines = [
        _line(
            (f"{e['error_rate_pct']:.1f}% of calls", "red" if e["error_rate_pct"] >= 2 else ""),
            f" ({window})  429s {e['rate_limited']:,}  retries {e['retries']:,}"
            f"  failed calls {sum(e['by_type'].values()):,}",
        )
    ]
    if e["by_type"]:
        by_type = ", ".join(f"{k} {v:,}" for k, v in e["by_type"].items())
        lines.append(_line(("by type: ", "dim"), by_type))
    last = e.get("last_error")
    if last and e["error_rate_pct"] > 0:
        lines.append(_line(("last: ", "dim"), describe_error(last)))
    return lines


def describe_error(err: dict[str, Any]) -> str:
    """`type (status): message`, short enough for one line."""
    code = f" ({err['status_code']})" if err.get("status_code") else ""
    message = " ".join(str(err.get("message") or "").split())[:90]
    return f"{err.get('type', 'error')}{code}: {message}" if message else f"{err.get('type', 'error')}{code}"


def _agents(s: dict[str, Any]) -> Text:
    a, q = s["agents"], s["queue"]
    return _line(
        f"{a['in_flight']:,}/{a['limit']:,} in flight ({a['utilisation_pct']:.0f}%)  "
        f"range {a['min']}-{a['max']}  |  queue {q['ready']:,} ready, {q['pending']:,} pending",
        ("  PAUSED", "bold yellow") if s.get("paused") else "",
    )


def _workers(s: dict[str, Any]) -> Text:
    w = s["workers"]
    health = "green" if w["alive"] == w["count"] else "bold red"
    jobs = " ".join(str(r["jobs"]) for r in w["list"][:16])
    return _line(
        (f"{w['alive']}/{w['count']} alive", health),
        f"  restarts {w['restarts']}  jobs held {jobs or '-'}",
    )


def _pool_line(name: str, pool: dict[str, Any]) -> Text:
    text = _line((f"{name[:20]:<20}", "dim"))
    if pool.get("paused_for_s"):
        text.append(f" PAUSED {pool['paused_for_s']:.1f}s (429)", style="bold yellow")
    for dim, d in pool["dimensions"].items():
        pct = d.get("in_use_pct")
        binding = pool.get("binding") == dim
        text.append(f" {DIM_LABEL.get(dim, dim)} ", style="bold magenta" if binding else "")
        text.append("off" if pct is None else f"{pct:3.0f}%", style="bold magenta" if binding else "")
        if binding:
            text.append(" ◀ binding", style="magenta")
        text.append(" ")
    return text


def _limits(s: dict[str, Any]) -> list[Text]:
    pools = s.get("limits") or {}
    if not pools:
        return [_line(("no calls yet", "dim"))]
    return [_pool_line(name, pool) for name, pool in list(pools.items())[:MAX_POOLS]]


def _breakers(s: dict[str, Any]) -> Text:
    breakers = s.get("breakers") or {}
    if not breakers:
        return _line(("none yet", "dim"))
    if all(b["state"] == "closed" for b in breakers.values()):
        return _line(("all closed", "green"), f" ({len(breakers)} model{'s' * (len(breakers) != 1)})")
    text = _line()
    for model, b in breakers.items():
        if b["state"] != "closed":
            retry = f" retry {fmt_duration(b['retry_in_s'])}" if b.get("retry_in_s") else ""
            text.append(f"{model} ", style="")
            text.append(f"{b['state'].upper()}{retry}  ", style=BREAKER_STYLE.get(b["state"], ""))
    return text


def _cost(s: dict[str, Any]) -> Text:
    c, b = s["cost"], s.get("budget") or {}
    budget = ""
    if b.get("max_usd") is not None:
        budget = f"  |  budget {fmt_usd(b['max_usd'])}"
    return _line(
        f"{fmt_usd(c['so_far_usd'])} so far  {fmt_usd(c['per_hour_usd'])}/h  "
        f"projected {fmt_usd(c['projected_total_usd'])}{budget}"
    )


def _alerts(s: dict[str, Any]) -> list[Text]:
    alerts = s.get("alerts") or []
    if not alerts:
        return [_line(("none", "green"))]
    return [
        _line((f"{a['severity'].upper():<6} ", SEVERITY_STYLE.get(a["severity"], "")), a["message"])
        for a in alerts[:MAX_ALERTS]
    ]


def _failures(s: dict[str, Any]) -> list[Text]:
    failures = list(s["errors"].get("last_failures") or [])[-MAX_FAILURES:]
    lines = []
    for f in reversed(failures):
        code = f" ({f['status_code']})" if f.get("status_code") else ""
        lines.append(_line((f"#{f['seq']} {f['type']}{code}: ", "red"), str(f.get("message") or "")))
    return lines


def _section_rows(s: dict[str, Any]) -> list[tuple[str, RenderableType]]:
    rows: list[tuple[str, RenderableType]] = [
        ("progress", _progress(s)),
        ("jobs", _jobs(s)),
        ("speed", _speed(s)),
    ]
    rows += [("latency" if i == 0 else "", line) for i, line in enumerate(_latency(s))]
    rows += [("errors" if i == 0 else "", line) for i, line in enumerate(_errors(s))]
    rows += [("agents", _agents(s)), ("workers", _workers(s))]
    rows += [("limits" if i == 0 else "", line) for i, line in enumerate(_limits(s))]
    rows += [("breakers", _breakers(s)), ("cost", _cost(s))]
    rows += [("alerts" if i == 0 else "", line) for i, line in enumerate(_alerts(s))]
    rows += [("failures" if i == 0 else "", line) for i, line in enumerate(_failures(s))]
    return rows


def render(snapshot: dict[str, Any], width: int = 80) -> RenderableType:
    """The whole dashboard for one snapshot, laid out for `width` columns."""
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(style="bold", no_wrap=True, width=8)
    grid.add_column(ratio=1, overflow="ellipsis")
    for label, value in _section_rows(snapshot):
        grid.add_row(label, value)
    batch = os.path.basename(str(snapshot.get("batch_path") or ""))
    title = f"anvil · run {snapshot.get('run_id', '?')} · {snapshot.get('state', '?')}"
    return Panel(
        Group(grid),
        title=Text(title, style="bold"),
        subtitle=Text(batch, style="dim") if batch else None,
        width=max(40, width),
        padding=(0, 1),
    )


def waiting(message: str = "starting…") -> RenderableType:
    """The frame shown before the first snapshot."""
    return Panel(Text(message, style="dim"), title=Text("anvil", style="bold"), padding=(0, 1))
