"""Plain progress for CI and pipes: one line every few seconds, alert lines, then the summary."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from anvil_cli.input_limits import plain_tree
from anvil_cli.snapshot.types import Snapshot
from anvil_cli.timefmt import local_iso
from anvil_cli.views.budgets import spent_scopes_line
from anvil_cli.views.checks import checks_line, pct
from anvil_cli.views.dashboard.render import describe_error
from anvil_cli.views.dashboard.render import (
    fmt_s as _fmt_s,  # latencies to three figures, as on the dashboard
)


def _agents(s: Snapshot) -> str:
    """`4/4`; above a lowered limit: `100 (limit 22, 78 draining)`, never `100/22`."""
    a = s["agents"]
    if a["draining"]:
        return f"{a['in_flight']} (limit {a['limit']}, {a['draining']} draining)"
    return f"{a['in_flight']}/{a['limit']}"


def snapshot_line(s: Snapshot) -> str:
    """A progress line from a run snapshot (see `anvil_cli.snapshot.types`)."""
    s = plain_tree(s)
    c, t, e = s["counts"], s["throughput"], s["errors"]
    calls, jobs = s["call_latency_s"], s["job_time_s"]
    eta = s["eta_s"]
    eta_text = "-" if eta is None else f"{eta:.0f}s"
    line = (
        f"{c['done']}/{c['total']} done ({s['progress_pct']:.1f}%, {c['failed']} failed) ETA {eta_text} | "
        f"{t['jobs_per_s']:.1f} jobs/s, {t['requests_per_min']:.0f} req/min | "
        f"agents {_agents(s)} queue {s['queue']['ready']} | "
        f"calls p50 {_fmt_s(calls['p50'])} p95 {_fmt_s(calls['p95'])}, job time p95 {_fmt_s(jobs['p95'])} | "
        f"errors {e['error_rate_pct']:.1f}% 429s {e['rate_limited']} retries {e['retries']} | "
        f"${s['cost']['so_far_usd']:.4f} (${s['cost']['per_hour_usd']:.2f}/h)"
    )
    scopes = spent_scopes_line(s.get("governor") or {})  # budget.scopes: once one has stopped its jobs
    if scopes is not None:
        line += f" | {scopes}"
    tool_errors = e.get("tool_errors", 0)  # absent from a snapshot stored by an older Anvil
    if tool_errors:
        line += f" | tool errors {tool_errors}"
    checks = s.get("checks")  # only once a job was checked
    if checks:
        line += f" | checks {pct(checks['pass_rate'])} passed ({checks['passed']}/{checks['checked']})"
    opened = [m for m, b in s["breakers"].items() if b["state"] != "closed"]
    if opened:
        line += " | breaker open: " + ", ".join(opened)
    last = e["last_error"]
    if last and e["error_rate_pct"] > 0:
        line += f" | last error: {describe_error(last)}"
    return line


class PlainProgress:
    """Prints a progress line to stderr at most every `interval_s` seconds."""

    def __init__(self, console: Console, interval_s: float) -> None:
        self.console = console
        self.interval_s = interval_s
        self._next_due_s = interval_s

    def snapshot(self, snap: Snapshot, *, force: bool = False) -> bool:
        """Print `snap` as a line once every `interval_s` of the run (by the snapshot's own
        clock, so tests need no sleeping), or now with `force`. Returns whether it printed."""
        elapsed = snap["elapsed_s"]
        if not force and elapsed < self._next_due_s:
            return False
        self._next_due_s = elapsed + self.interval_s
        self.console.print(
            f"[{local_iso(snap['updated_at'])}] {snapshot_line(snap)}", markup=False, soft_wrap=True
        )
        return True


def _times(summary: dict[str, Any], key: str) -> str:
    t = summary.get(key) or {}
    return f"p50 {_fmt_s(t.get('p50'))} p95 {_fmt_s(t.get('p95'))} p99 {_fmt_s(t.get('p99'))}"


def human_summary(console: Console, summary: dict[str, Any]) -> None:
    """`anvil run`'s closing lines, from its summary (`session.finish.run_summary`)."""
    summary = plain_tree(summary)
    c = summary["counts"]
    console.print(
        f"run {summary['run_id']}: {summary['state']} | {c['succeeded']} succeeded, {c['failed']} failed, "
        f"{c['pending']} pending of {c['total']}",
        markup=False,
    )
    console.print(f"  {summary['duration_s']:.1f}s, {summary['jobs_per_s']:.2f} jobs/s", markup=False)
    console.print(f"  API call latency {_times(summary, 'call_latency_s')}", markup=False)
    console.print(
        f"  job time {_times(summary, 'job_time_s')} (with limiter waits and retries)", markup=False
    )
    hits = summary.get("cache_hits") or 0
    calls = summary.get("api_calls", summary["attempts"])  # every call made, failed ones too
    console.print(
        f"  API calls {calls}, retries {summary['retries']}, 429s {summary['rate_limited']}"
        + (f", answered from cache {hits}" if hits else ""),
        markup=False,
    )
    t = summary["tokens"]
    console.print(f"  tokens in {t['input']:,} out {t['output']:,}", markup=False)
    console.print(
        f"  cost this session ${summary['cost_usd']:.4f}, whole run ${summary['run_cost_usd']:.4f}",
        markup=False,
    )
    if summary.get("failures_by_type"):
        errs = ", ".join(f"{k} x{v}" for k, v in sorted(summary["failures_by_type"].items()))
        console.print(f"  failed jobs by error: {errs}", markup=False)
    if summary.get("tool_errors"):
        kinds = ", ".join(f"{k} x{v}" for k, v in sorted((summary.get("tool_errors_by_kind") or {}).items()))
        console.print(f"  failed tool calls {summary['tool_errors']} (this session: {kinds})", markup=False)
    checks = checks_line(summary.get("checks"))  # a summary with checks, when it has them
    if checks is not None:
        console.print(f"  checks: {checks}", markup=False)
    if summary.get("output"):
        console.print(f"  results: {summary['output']}", markup=False)
