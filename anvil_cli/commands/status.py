"""`anvil status`: what ran and what is running, from the journal, from any terminal."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from anvil_cli.commands.common import (
    CONFIG_HELP,
    domain_errors,
    journal_for_reading,
    out_console,
    set_in,
    settings_from,
)
from anvil_cli.config.settings import Settings
from anvil_cli.engine.journal.store import RUN_INTERRUPTED, RUN_RUNNING, RUN_STOPPED, Journal
from anvil_cli.input_limits import plain_tree
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.snapshot.history import describe_event
from anvil_cli.snapshot.status import RunStatus, runs_json, status_json
from anvil_cli.timefmt import local_iso
from anvil_cli.views.budgets import render_budgets
from anvil_cli.views.checks import render_checks
from anvil_cli.views.dashboard.render import describe_tool_error, fmt_duration, fmt_s, fmt_usd, render
from anvil_cli.views.endpoints import render_endpoints
from anvil_cli.views.spend import check_by, render_spend, spend_of

WATCH_EVERY_S = 1.0
HISTORY_SHOWN = 10
STATE_STYLE = {
    RUN_RUNNING: "bold green",
    "finished": "green",
    RUN_STOPPED: "yellow",
    RUN_INTERRUPTED: "bold yellow",
}
RUN_COLUMNS = ("run", "state", "done", "cost", "time", "started", "batch")
FIGURES = frozenset({"done", "cost", "time"})
MIN_BATCH_CHARS = 8
MAX_BATCH_CHARS = 32


def _run_row(r: dict[str, Any]) -> dict[str, str]:
    return {
        "run": r["run_id"],
        "state": r["state"],
        "done": f"{r['done']:,}/{r['total']:,}",
        "cost": fmt_usd(r["cost_usd"]),
        "time": fmt_duration(r["duration_s"]),
        "started": local_iso(r["created_at"]),
        "batch": os.path.basename(r["batch_path"]),
    }


def runs_table(runs: list[dict[str, Any]], width: int) -> RenderableType:
    """The recent runs, a line each, in `width` columns: ids and figures always whole; the start
    time when it fits (the id begins with it too); the batch file's name cut to what is left."""
    rows = [_run_row(r) for r in runs]
    widest = {name: max([len(name), *(len(row[name]) for row in rows)]) for name in RUN_COLUMNS}

    def need(names: list[str]) -> int:
        return sum(widest[name] + 1 for name in names)  # and a space after each

    shown = [name for name in RUN_COLUMNS if name not in ("started", "batch")]
    if need([*shown, "started"]) + MIN_BATCH_CHARS <= width:
        shown.append("started")
    batch_chars = min(widest["batch"], MAX_BATCH_CHARS, max(MIN_BATCH_CHARS, width - need(shown)))
    table = Table(title="recent runs", title_justify="left", box=None, pad_edge=False, padding=(0, 1, 0, 0))
    for name in shown:
        justify: JustifyMethod = "right" if name in FIGURES else "left"
        table.add_column(name, no_wrap=True, width=widest[name], justify=justify)
    table.add_column("batch", overflow="ellipsis", no_wrap=True, width=batch_chars)
    for row in rows:
        cells = [Text(row[name], style=STATE_STYLE.get(row[name], "")) for name in shown]
        table.add_row(*cells, row["batch"])
    return table


def _header(st: RunStatus) -> list[RenderableType]:
    c = st["counts"]
    state = Text(st["state"], style=STATE_STYLE.get(st["state"], ""))
    lines: list[RenderableType] = [
        Text.assemble(("run ", "bold"), (st["run_id"], "bold"), " · ", state, f" · {st['batch_path']}"),
        Text(f"started {local_iso(st['created_at'])} · took {fmt_duration(st['duration_s'])}"),
        *([Text(f"API at {', '.join(st['api_hosts'])}")] if st.get("api_hosts") else []),
        Text(
            f"{c['succeeded']:,} succeeded, {c['failed']:,} failed, {c['running']:,} running, "
            f"{c['pending']:,} pending of {c['total']:,} · cost {fmt_usd(st['cost_usd'])}"
        ),
    ]
    if st["tool_errors"]:  # over the whole run, from the journal
        last = st["errors"].get("last_tool_error")
        tail = f" · last: {describe_tool_error(last)}" if last else ""
        lines.append(Text(f"{st['tool_errors']:,} failed tool call(s){tail}", style="red"))
    if st["state"] == RUN_INTERRUPTED and st["stored_state"] == RUN_RUNNING:
        lines.append(Text(f"interrupted: its process (pid {st['pid']}) is gone", style="bold yellow"))
    elif st["stop_reason"]:
        lines.append(Text(f"stopped: {st['stop_reason']}", style="yellow"))
    for spent in st.get("budget_scopes", []):  # budget.scopes that stopped jobs (the others went on)
        lines.append(Text(spent, style="yellow"))
    if st["resume_command"]:
        lines.append(Text.assemble("resume with: ", (st["resume_command"], "bold")))
    return lines


def _times(m: dict[str, Any], key: str) -> str:
    t = m.get(key) or {}
    return f"p50 {fmt_s(t.get('p50'))} p95 {fmt_s(t.get('p95'))} p99 {fmt_s(t.get('p99'))}"


def _ended_figures(st: RunStatus) -> list[RenderableType]:
    m = st["metrics"]
    if not m:
        return [Text("no figures recorded for this run", style="dim")]
    job_time = "job_time_s" if "job_time_s" in m else "latency_s"  # the name before call latency was kept
    lines: list[RenderableType] = [Text(f"throughput {m.get('jobs_per_s', 0):.2f} jobs/s")]
    if "call_latency_s" in m:
        lines.append(Text(f"API call latency {_times(m, 'call_latency_s')}"))
    lines += [
        Text(f"job time {_times(m, job_time)} (with limiter waits and retries)"),
        Text(
            f"attempts {m.get('attempts', 0):,} · retries {m.get('retries', 0):,} · "
            f"429s {m.get('rate_limited', 0):,} · tokens in {(m.get('tokens') or {}).get('input', 0):,} "
            f"out {(m.get('tokens') or {}).get('output', 0):,}"
        ),
    ]
    for label, key in (
        ("failed calls by error", "errors_by_type"),
        ("failed jobs by error", "failures_by_type"),
    ):
        by_type = m.get(key) or {}
        if by_type:
            lines.append(Text(f"{label}: " + ", ".join(f"{k} x{v}" for k, v in sorted(by_type.items()))))
    return lines


def _history_lines(st: RunStatus) -> list[RenderableType]:
    """Breaker openings, probes and closings, and agent scaling, as the journal recorded them."""
    events = st["history"]
    if not events:
        return []
    lines: list[RenderableType] = [Text("breaker and scaling history:", style="bold")]
    if len(events) > HISTORY_SHOWN:
        lines.append(Text(f"  … {len(events) - HISTORY_SHOWN} earlier (all of them: --json)", style="dim"))
    lines += [Text(f"  {local_iso(e['at'])} {describe_event(e)}") for e in events[-HISTORY_SHOWN:]]
    return lines


def _alert_lines(st: RunStatus) -> list[RenderableType]:
    events = st["alert_events"]
    if not events or st["live"]:
        return []  # a live run shows its active alerts in the dashboard frame
    lines: list[RenderableType] = [Text("alerts during the run:", style="bold")]
    for e in events[-5:]:
        change = "raised" if e.get("change") == "raised" else "cleared"
        text = f"[{e.get('severity')}] {e.get('name')}: {e.get('message')}"
        lines.append(Text(f"  {local_iso(e.get('at'))} {change} {text}"))
    return lines


def render_status(st: RunStatus, width: int) -> RenderableType:
    """One run, human-readable: header, then the live frame or the final figures, the breaker
    and scaling history, and the alerts."""
    parts = _header(st)
    if st["live"]:
        parts.append(render(st, width))
    else:
        parts += _ended_figures(st)
        # named endpoints only; a live run's frame shows them itself
        parts += [Text(line) for line in render_endpoints(st.get("endpoints"))]
    # the journal's, over the whole run, by model, variant and metadata key (a live frame has the line)
    parts += [Text(line) for line in render_checks(st.get("checks"))]
    parts += _history_lines(st)
    parts += _alert_lines(st)
    return Group(*parts)


@dataclass(frozen=True)
class SpendOptions:
    pricer: Pricer
    by: str | None


def _view(
    journal: Journal,
    run: str | None,
    width: int,
    spend: SpendOptions | None = None,
    checks_by: Sequence[str] | None = None,
) -> tuple[RenderableType, str]:
    """(the human renderable, the JSON text) of one look at the journal."""
    st = status_json(journal, run, checks_by=checks_by)
    payload: dict[str, Any] = dict(st)
    parts: list[RenderableType] = []
    # the terminal gets every string escaped (a batch path, a tool's or a server's message may
    # hold an escape sequence); the JSON keeps them as they are (json.dumps escapes them there)
    if run is None:
        runs = runs_json(journal)
        payload["runs"] = runs
        parts += [runs_table(plain_tree(runs), width), Text("")]
    parts.append(render_status(plain_tree(st), width))
    if spend is not None:  # reads every finished job: once per look, not in GET /status
        payload["spend"] = spent = spend_of(journal, str(st["run_id"]), spend.pricer, by=spend.by)
        parts.append(Text("\n".join(render_spend(plain_tree(spent)))))
    return Group(*parts), json.dumps(payload, indent=2)


def _watch(
    journal: Journal, run: str | None, json_out: bool, console: Console, checks_by: Sequence[str] | None
) -> None:
    """Re-render every second until Ctrl-C."""
    if json_out:
        while True:
            sys.stdout.write(json.dumps(status_json(journal, run, checks_by=checks_by)) + "\n")
            sys.stdout.flush()
            time.sleep(WATCH_EVERY_S)
    with Live(console=console, auto_refresh=False, transient=False) as live:
        while True:
            human, _ = _view(journal, run, console.width, checks_by=checks_by)
            live.update(human, refresh=True)
            time.sleep(WATCH_EVERY_S)


def status_command(
    run: str | None = typer.Argument(None, metavar="RUN", help="Run id or prefix (default: the latest run)."),
    json_out: bool = typer.Option(
        False,
        "--json",
        help="Print the status as JSON: what GET /status serves, plus `spend` (where the money went).",
    ),
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh every second until Ctrl-C."),
    config: Path | None = typer.Option(None, "--config", "-c", metavar="FILE", help=CONFIG_HELP),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", metavar="DIR", help="Where the journal lives (default .anvil)."
    ),
    by: str | None = typer.Option(
        None,
        "--by",
        metavar="KEY",
        help="Also break the cost down by this key of the jobs: metadata.KEY (e.g. metadata.team) or model.",
    ),
    budgets: bool = typer.Option(
        False,
        "--budgets",
        help="Show each budget by scope and window (budget.scopes, per_day_usd, per_month_usd): its cap,"
        " spent, reserved by running processes and left, from the state dir's ledger (no run needed).",
    ),
) -> None:
    """What ran and what is running: the recent runs, and one run's counts, speed, latency, cost,
    errors and alerts, and where its money went (cost by model and by --by, the most expensive
    jobs, and what the result cache, prompt caching and Batches mode saved against list price).
    Reads the journal only; works from any terminal while a run is going."""
    overrides: dict[str, Any] = {}
    set_in(overrides, "state_dir", str(state_dir) if state_dir else None)
    with domain_errors():
        settings = settings_from(config, overrides)
        if budgets:
            _show_budgets(settings, json_out)
            return
        spend = SpendOptions(Pricer.from_settings(settings), check_by(by) if by else None)
        journal = journal_for_reading(settings)
        console = out_console()
        checks_by = settings.checks.by or None  # none set here: the keys the run was started with
        with journal:
            try:
                if watch:
                    _watch(journal, run, json_out, console, checks_by)
                human, text = _view(journal, run, console.width, spend, checks_by)
            except KeyboardInterrupt:
                raise typer.Exit(0) from None
    if json_out:
        sys.stdout.write(text + "\n")
    else:
        console.print(human)


def _show_budgets(settings: Settings, json_out: bool) -> None:
    # imported here: the budget ledger's modules (~4 ms) load for `--budgets` only, not at
    # every command's start-up (`anvil run`'s included: the CLI imports every command)
    from anvil_cli.engine.ledger.store import ledger_path
    from anvil_cli.snapshot.budgets import budget_lines

    lines = budget_lines(settings, time.time())
    if json_out:
        sys.stdout.write(json.dumps({"budgets": lines}, indent=2) + "\n")
    else:
        out_console().print(render_budgets(plain_tree(lines), str(ledger_path(settings.state_dir))))


def register(app: typer.Typer) -> None:
    """Add `anvil status` to the app."""
    summary = "Show recent runs, or one run's progress, cost and errors."
    app.command("status", short_help=summary)(status_command)
