"""Plain progress for CI and pipes: one line every few seconds, alert lines, then the summary."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console


def _fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def snapshot_line(s: dict[str, Any]) -> str:
    """A progress line from a run snapshot (see `anvil_cli.snapshot`)."""
    c, t, lat, e = s["counts"], s["throughput"], s["latency_s"], s["errors"]
    eta = s.get("eta_s")
    eta_text = "-" if eta is None else f"{eta:.0f}s"
    line = (
        f"{c['done']}/{c['total']} done ({s['progress_pct']:.1f}%, {c['failed']} failed) ETA {eta_text} | "
        f"{t['jobs_per_s']:.1f} jobs/s, {t['requests_per_min']:.0f} req/min | "
        f"agents {s['agents']['in_flight']}/{s['agents']['limit']} queue {s['queue']['ready']} | "
        f"p50 {_fmt_s(lat['p50'])} p95 {_fmt_s(lat['p95'])} | "
        f"errors {e['error_rate_pct']:.1f}% 429s {e['rate_limited']} retries {e['retries']} | "
        f"${s['cost']['so_far_usd']:.4f} (${s['cost']['per_hour_usd']:.2f}/h)"
    )
    opened = [m for m, b in (s.get("breakers") or {}).items() if b.get("state") != "closed"]
    if opened:
        line += " | breaker open: " + ", ".join(opened)
    last = e.get("last_error")
    if last and e["error_rate_pct"] > 0:
        from anvil_cli.dashboard.render import describe_error

        line += f" | last error: {describe_error(last)}"
    return line


def stamp_of(wall: float | None) -> str:
    """HH:MM:SS of a wall-clock time (local)."""
    return time.strftime("%H:%M:%S", time.localtime(wall)) if wall is not None else "--:--:--"


class PlainProgress:
    """Prints a progress line to stderr at most every `interval_s` seconds."""

    def __init__(self, console: Console, interval_s: float) -> None:
        self.console = console
        self.interval_s = interval_s
        self._next_due_s = interval_s

    def snapshot(self, snap: dict[str, Any], *, force: bool = False) -> bool:
        """Print `snap` as a line once every `interval_s` of the run (by the snapshot's own
        clock, so tests need no sleeping), or now with `force`. Returns whether it printed."""
        elapsed = float(snap.get("elapsed_s") or 0.0)
        if not force and elapsed < self._next_due_s:
            return False
        self._next_due_s = elapsed + self.interval_s
        self.console.print(
            f"[{stamp_of(snap.get('updated_at'))}] {snapshot_line(snap)}", markup=False, soft_wrap=True
        )
        return True


def human_summary(console: Console, summary: dict[str, Any]) -> None:
    c = summary["counts"]
    lat = summary["latency_s"]
    console.print(
        f"run {summary['run_id']}: {summary['state']} | {c['succeeded']} succeeded, {c['failed']} failed, "
        f"{c['pending']} pending of {c['total']}",
        markup=False,
    )
    console.print(
        f"  {summary['duration_s']:.1f}s, {summary['jobs_per_s']:.2f} jobs/s | "
        f"latency p50 {_fmt_s(lat['p50'])} p95 {_fmt_s(lat['p95'])} p99 {_fmt_s(lat['p99'])}",
        markup=False,
    )
    hits = summary.get("cache_hits") or 0
    console.print(
        f"  API calls {summary['attempts']}, retries {summary['retries']}, 429s {summary['rate_limited']}"
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
    if summary.get("output"):
        console.print(f"  results: {summary['output']}", markup=False)
