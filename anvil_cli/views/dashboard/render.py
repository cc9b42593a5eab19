"""The dashboard frame: a pure function of the run snapshot (see `anvil_cli.snapshot.types`).

Readable at 80 columns: one label column, one value column, every value line cut with an
ellipsis rather than wrapped. Colours are only emphasis; with NO_COLOR the text says it all
(the binding limit is marked `◀ binding`, alerts carry their severity in words).
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Final

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from anvil_cli.input_limits import plain_tree
from anvil_cli.snapshot.history import describe_event
from anvil_cli.snapshot.types import Alert, LastError, LastToolError, Pool, Snapshot, TimeSummary, WorkerRow
from anvil_cli.timefmt import local_iso
from anvil_cli.views.budgets import spent_scopes_line
from anvil_cli.views.checks import checks_line

MAX_MODELS: Final = 4
MAX_POOLS: Final = 4
MAX_ENDPOINTS: Final = 4
MAX_FAILURES: Final = 3
MAX_ALERTS: Final = 4
MAX_EVENTS: Final = 2
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
    """A latency to three figures at least (within 0.5%): 45.2ms, 0.412s, 12.3s; "-" when unknown."""
    if value is None:
        return "-"
    if value < 0.1:
        return f"{value * 1000:#.3g}ms"
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


def _progress(s: Snapshot) -> RenderableType:
    c = s["counts"]
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(ratio=1)
    grid.add_column(no_wrap=True)
    bar = ProgressBar(total=max(1, c["total"]), completed=c["done"])
    eta = fmt_duration(s["eta_s"])
    grid.add_row(bar, f"{s['progress_pct']:5.1f}%  {c['done']:,}/{c['total']:,}  ETA {eta}")
    return grid


def _jobs(s: Snapshot) -> Text:
    c = s["counts"]
    return _line(
        f"{c['succeeded']:,} ok  ",
        (f"{c['failed']:,} failed", "red" if c["failed"] else ""),
        f"  {c['running']:,} running  {c['pending']:,} pending  |  elapsed {fmt_duration(s['elapsed_s'])}",
    )


def _speed(s: Snapshot) -> Text:
    t = s["throughput"]
    return _line(
        (f"{t['jobs_per_s']:,.1f} jobs/s", "bold"),
        f"  {t['requests_per_min']:,.0f} req/min  (last {fmt_duration(t['window_s'])})"
        f"  |  overall {t['jobs_per_s_overall']:,.1f} jobs/s",
    )


def percentiles(t: TimeSummary) -> str:
    """`p50 0.412s  p95 0.690s  p99 1.20s`."""
    return f"p50 {fmt_s(t['p50'])}  p95 {fmt_s(t['p95'])}  p99 {fmt_s(t['p99'])}"


def _call_latency(s: Snapshot) -> list[Text]:
    """API call latency: request to answer of each call (what the p95 alert watches)."""
    lat = s["call_latency_s"]
    lines = [_line(f"{percentiles(lat)}  (recent p95 {fmt_s(lat['recent_p95'])}, {lat['count']:,} calls)")]
    models = s["call_latency_by_model_s"]
    if len(models) > 1:
        for model, m in list(models.items())[:MAX_MODELS]:
            lines.append(_line((f"{model[:20]:<20}", "dim"), f" {percentiles(m)}  n={m['count']:,}"))
    return lines


def _job_time(s: Snapshot) -> Text:
    """A job from start to result: its calls plus waits for the rate limiter and back-off."""
    t = s["job_time_s"]
    return _line(percentiles(t), ("  (incl. limiter waits, retries)", "dim"))


def _errors(s: Snapshot) -> list[Text]:
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
    last = e["last_error"]
    if last and e["error_rate_pct"] > 0:
        lines.append(_line(("last: ", "dim"), describe_error(last)))
    return lines


def _tool_errors(s: Snapshot) -> list[Text]:
    """Failed tool calls (none: no line): how many, of which kinds, and the last one."""
    e = s["errors"]
    count = e.get("tool_errors", 0)  # absent from a snapshot stored by an older Anvil
    if not count:
        return []
    kinds = ", ".join(f"{k} {v:,}" for k, v in e.get("tool_errors_by_kind", {}).items())
    lines = [_line((f"{count:,} failed tool call{'s' if count != 1 else ''}", "red"), f" ({kinds})")]
    last = e.get("last_tool_error")
    if last:
        lines.append(_line(("last: ", "dim"), describe_tool_error(last)))
    return lines


def describe_tool_error(err: LastToolError) -> str:
    """`tool kind: message`, short enough for one line."""
    message = " ".join((err["message"] or "").split())[:90]
    return f"{err['tool']} {err['kind']}: {message}" if message else f"{err['tool']} {err['kind']}"


def describe_error(err: LastError) -> str:
    """`type (status): message`, short enough for one line."""
    code = f" ({err['status_code']})" if err["status_code"] else ""
    message = " ".join((err["message"] or "").split())[:90]
    return f"{err['type']}{code}: {message}" if message else f"{err['type']}{code}"


def agents_text(s: Snapshot) -> str:
    """`18/20 in flight (90%)`; when the limit was lowered below the jobs already running, the
    excess is said to be draining: `100 in flight, limit 22 (78 draining)`."""
    a = s["agents"]
    if a["draining"]:
        return f"{a['in_flight']:,} in flight, limit {a['limit']:,} ({a['draining']:,} draining)"
    return f"{a['in_flight']:,}/{a['limit']:,} in flight ({a['utilisation_pct']:.0f}%)"


def _agents(s: Snapshot) -> Text:
    a, q = s["agents"], s["queue"]
    queue = f"queue {q['ready']:,} ready, {q['pending']:,} pending"
    line = _line(
        f"{agents_text(s)}  range {a['min']}-{a['max']}  |  {queue}",
        ("  PAUSED", "bold yellow") if s["paused"] else "",
    )
    if a.get("capped_note"):
        line.append(f"\n  {a['capped_note']}", style="yellow")
    return line


def _workers(s: Snapshot) -> Text:
    w = s["workers"]
    health = "green" if w["alive"] == w["count"] else "bold red"
    jobs = " ".join(str(r["jobs"]) for r in w["list"][:16])
    waiting = w.get("waiting", 0)
    return _line(
        (f"{w['alive']}/{w['count']} alive", health),
        (f", {waiting} waiting for resources" if waiting else "", "yellow"),
        f"  restarts {w['restarts']}  jobs held {jobs or '-'}{per_node(w['list'])}",
    )


def per_node(rows: list[WorkerRow]) -> str:
    """ "  on 2 nodes: 10.0.0.5 1a2b3c4d 2, 10.0.0.6 5e6f7a8b 2" (nothing on one machine)."""
    nodes = Counter(r["node"] for r in rows if r["node"] and r["alive"])
    if len(nodes) < 2:
        return ""
    return f"  on {len(nodes)} nodes: " + ", ".join(f"{n} {k}" for n, k in sorted(nodes.items()))


def _pool_line(name: str, pool: Pool) -> Text:
    text = _line((f"{name[:20]:<20}", "dim"))
    if pool["paused_for_s"]:
        text.append(f" PAUSED {pool['paused_for_s']:.1f}s (429)", style="bold yellow")
    for dim, d in pool["dimensions"].items():
        pct = d["in_use_pct"]
        binding = pool["binding"] == dim
        text.append(f" {DIM_LABEL.get(dim, dim)} ", style="bold magenta" if binding else "")
        text.append("off" if pct is None else f"{pct:3.0f}%", style="bold magenta" if binding else "")
        if binding:
            text.append(" ◀ binding", style="magenta")
        text.append(" ")
    return text


def _limits(s: Snapshot) -> list[Text]:
    pools = s["limits"]
    if not pools:
        return [_line(("no calls yet", "dim"))]
    return [_pool_line(name, pool) for name, pool in list(pools.items())[:MAX_POOLS]]


def _breakers(s: Snapshot) -> Text:
    breakers = s["breakers"]
    if not breakers:
        return _line(("none yet", "dim"))
    if all(b["state"] == "closed" for b in breakers.values()):
        return _line(("all closed", "green"), f" ({len(breakers)} model{'s' * (len(breakers) != 1)})")
    text = _line()
    for model, b in breakers.items():
        if b["state"] != "closed":
            retry = f" retry {fmt_duration(b['retry_in_s'])}" if b["retry_in_s"] else ""
            text.append(f"{model} ", style="")
            text.append(f"{b['state'].upper()}{retry}  ", style=BREAKER_STYLE.get(b["state"], ""))
    return text


def _endpoints(s: Snapshot) -> list[Text]:
    """Named endpoints only (`endpoints:`): each one's paid calls and cost over the whole run,
    their shares, its failed calls and 429s, its breakers open now."""
    endpoints = s.get("endpoints") or {}
    lines = []
    for name, e in list(endpoints.items())[:MAX_ENDPOINTS]:
        trouble = f"  {e['errors']:,} failed ({e['rate_limited']:,} 429s)" if e["errors"] else ""
        opened = f"  {e['open_breakers']} breaker(s) open" if e["open_breakers"] else ""
        lines.append(
            _line(
                (f"{name} ", "bold"),
                f"{e['calls']:,} calls ({e['calls_share_pct']:.1f}%)  {fmt_usd(e['cost_usd'])}"
                f" ({e['cost_share_pct']:.1f}%)",
                (trouble, "yellow"),
                (opened, "red"),
            )
        )
    if len(endpoints) > MAX_ENDPOINTS:
        lines.append(_line((f"… {len(endpoints) - MAX_ENDPOINTS} more (anvil status)", "dim")))
    return lines


def _cost(s: Snapshot) -> Text:
    c, b = s["cost"], s["budget"]
    budget = ""
    if b["max_usd"] is not None:
        budget = f"  |  budget {fmt_usd(b['max_usd'])}"
    r = c["projected_range_usd"]
    spread = f" ({fmt_usd(r['p10'])}-{fmt_usd(r['p90'])})" if r is not None and r["p90"] > r["p10"] else ""
    return _line(
        f"{fmt_usd(c['so_far_usd'])} so far  {fmt_usd(c['per_hour_usd'])}/h  "
        f"projected {fmt_usd(c['projected_total_usd'])}{spread}{budget}"
    )


def alert_line(a: Alert) -> Text:
    """`[high] error_rate: error rate 3.1% of calls ...`, the severity in its colour."""
    return _line(
        (f"[{a['severity']}]", SEVERITY_STYLE.get(a["severity"], "")), f" {a['name']}: {a['message']}"
    )


def _alerts(s: Snapshot) -> list[Text]:
    alerts = s["alerts"]
    if not alerts:
        return [_line(("none", "green"))]
    return [alert_line(a) for a in alerts[:MAX_ALERTS]]


def _events(s: Snapshot) -> list[Text]:
    """The latest breaker and scaling events (all of them: `anvil status RUN`), each with its time
    after it: on a narrow terminal the time is what gets cut, not the event."""
    return [_line(describe_event(e), (f"  {local_iso(e['at'])}", "dim")) for e in s["history"][-MAX_EVENTS:]]


def _failures(s: Snapshot) -> list[Text]:
    failures = s["errors"]["last_failures"][-MAX_FAILURES:]
    lines = []
    for f in reversed(failures):
        code = f" ({f['status_code']})" if f["status_code"] else ""
        lines.append(_line((f"#{f['seq']} {f['type']}{code}: ", "red"), f["message"]))
    return lines


def _labelled(label: str, lines: list[Text]) -> list[tuple[str, RenderableType]]:
    return [(label if i == 0 else "", line) for i, line in enumerate(lines)]


def _section_rows(s: Snapshot) -> list[tuple[str, RenderableType]]:
    rows: list[tuple[str, RenderableType]] = [
        ("progress", _progress(s)),
        ("jobs", _jobs(s)),
        ("speed", _speed(s)),
    ]
    rows += _labelled("calls", _call_latency(s))
    rows += [("job time", _job_time(s))]
    rows += _labelled("errors", _errors(s))
    rows += _labelled("tools", _tool_errors(s))
    rows += [("agents", _agents(s)), ("workers", _workers(s))]
    rows += _labelled("limits", _limits(s))
    rows += [("breakers", _breakers(s))]
    rows += _labelled("events", _events(s))
    rows += [("cost", _cost(s))]
    scopes = spent_scopes_line(s.get("governor") or {})  # budget.scopes: once one has stopped its jobs
    if scopes is not None:
        rows += [("budget", _line((scopes, "yellow")))]
    rows += _labelled("endpoint", _endpoints(s))
    checks = checks_line(s.get("checks"))  # only once a job was checked
    if checks is not None:
        rows += [("checks", _line(checks))]
    rows += _labelled("alerts", _alerts(s))
    rows += _labelled("failures", _failures(s))
    return rows


def render(snapshot: Snapshot, width: int = 80) -> RenderableType:
    """The whole dashboard for one snapshot, laid out for `width` columns (every string in it
    escaped: last failures and tool errors carry what servers and tools said)."""
    snapshot = plain_tree(snapshot)
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(style="bold", no_wrap=True, width=8)
    grid.add_column(ratio=1, overflow="ellipsis")
    for label, value in _section_rows(snapshot):
        grid.add_row(label, value)
    batch = os.path.basename(snapshot["batch_path"])
    title = f"anvil · run {snapshot['run_id']} · {snapshot['state']}"
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
