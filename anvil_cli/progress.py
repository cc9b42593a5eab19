"""Plain progress for CI and pipes: one line every few seconds, then the summary."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console


def progress_line(s: dict[str, Any], in_flight: int, agent_limit: int) -> str:
    lat = s["latency_s"]
    p50 = f"{lat['p50']:.2f}s" if lat["p50"] is not None else "-"
    p95 = f"{lat['p95']:.2f}s" if lat["p95"] is not None else "-"
    return (
        f"{s['done']}/{s['total']} done ({s['succeeded']} ok, {s['failed']} failed) | "
        f"{s['recent_jobs_per_s']:.1f} jobs/s, {s['recent_requests_per_min']:.0f} req/min | "
        f"agents {in_flight}/{agent_limit} | p50 {p50} p95 {p95} | "
        f"429s {s['rate_limited']} retries {s['retries']} | ${s['cost_usd']:.4f}"
    )


class PlainProgress:
    """Prints a progress line to stderr at most every `interval_s` seconds."""

    def __init__(self, console: Console, interval_s: float) -> None:
        self.console = console
        self.interval_s = interval_s
        self._last = time.monotonic()

    def tick(self, summary: dict[str, Any], in_flight: int, agent_limit: int) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        stamp = time.strftime("%H:%M:%S")
        self.console.print(f"[{stamp}] {progress_line(summary, in_flight, agent_limit)}", markup=False)


def human_summary(console: Console, summary: dict[str, Any]) -> None:
    c = summary["counts"]
    lat = summary["latency_s"]

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}s"

    console.print(
        f"run {summary['run_id']}: {summary['state']} | {c['succeeded']} succeeded, {c['failed']} failed, "
        f"{c['pending']} pending of {c['total']}",
        markup=False,
    )
    console.print(
        f"  {summary['duration_s']:.1f}s, {summary['jobs_per_s']:.2f} jobs/s | latency p50 {fmt(lat['p50'])} "
        f"p95 {fmt(lat['p95'])} p99 {fmt(lat['p99'])} | attempts {summary['attempts']}, "
        f"429s {summary['rate_limited']}",
        markup=False,
    )
    t = summary["tokens"]
    console.print(
        f"  tokens in {t['input']:,} out {t['output']:,} | cost this session ${summary['cost_usd']:.4f}, "
        f"whole run ${summary['run_cost_usd']:.4f}",
        markup=False,
    )
    if summary.get("failures_by_type"):
        errs = ", ".join(f"{k} x{v}" for k, v in sorted(summary["failures_by_type"].items()))
        console.print(f"  failed jobs by error: {errs}", markup=False)
    if summary.get("output"):
        console.print(f"  results: {summary['output']}", markup=False)
