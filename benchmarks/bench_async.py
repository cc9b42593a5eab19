"""Benchmarks 5-8 of issue 10 (targets of issue 24), and 13: many agents, CPU and memory of
every process, priorities, capacity.

Each run of `anvil run` (this checkout's code) is measured as a whole process tree (see
proctree.py: CPU exact from wait4 of every process, orphans of the fork server included;
memory sampled from /proc) against a simulator in its own process, which is not counted.

5. 1,000 agents, 5 s latency, 4,000 jobs: span <= 1.05x the floor's, CPU per job <= 1.3x the
   floor's, peak memory of the tree <= 300 MB.
6. 3,000 agents, 10 s latency, 9,000 jobs: span <= 1.1x the floor's, memory <= 450 MB.
   The floor (floor_async.py) is one asyncio process on the SDK's aiohttp client, no limiter,
   no journal, measured in the same run and the same way.
7. Benchmarks 1-4 (bench_engine.py's scenarios and baseline) still hold; on benchmark 1, CPU per
   job of every Anvil process, start-up included (target <= 5 ms), and time to first request
   (target <= 1.0 s).
8. Priority under a binding limit (300 RPM, burst 5): 200 low then 20 critical jobs; every
   critical job among the first 30 to finish; a critical job posted over the HTTP API mid-run
   answered within 3 s.

"Span" is the simulator's first request to the last result (first request seen by polling the
simulator's stats every 5 ms; last result from Anvil's journal, or the floor's own clock);
"wall" is spawning the process to its exit. Always exits 0: it is a report.

13. Capacity (issue 24): the largest agent count one process tree sustains at 10 s latency with
   its span within 1.1x the floor's (measured in the same run for each count), and its memory:
   1,000, 2,000, 4,000, 8,000 agents with 3 jobs each, stopping at the first that misses.

    PYTHONPATH=. python benchmarks/bench_async.py            # 5,6,7,8 (several minutes)
    PYTHONPATH=. python benchmarks/bench_async.py --quick --only 5,8
    PYTHONPATH=. python benchmarks/bench_async.py --only 13  # capacity (up to ~10 minutes)
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(REPO), str(HERE)]  # this checkout's anvil_cli, then the benchmarks beside

import bench_engine  # noqa: E402
from treebench import (  # noqa: E402
    BYTECODE,
    FAST_LIMITS,
    Measured,
    child_env,
    cpu_pair,
    fmt,
    print_roles,
    print_table,
    problems,
    ratio,
    run_anvil,
    run_floor,
    verdict,
)

from anvil_cli.sim import SimConfig  # noqa: E402

# -- benchmarks 5 and 6: many agents against the floor ---------------------------------------------


@dataclass
class SpanCase:
    n: int
    agents: int
    latency_s: float
    jobs: int
    rss_target_mb: float
    cpu_ratio_target: float | None  # CPU per job vs the floor's; None = not a target
    span_ratio_target: float = 1.1
    stated: bool = False  # the model's request rate stated in the config (else none in the way)

    @property
    def stated_rpm(self) -> float:
        """What a user running this many agents states: the calls they make a minute, +15%."""
        return round(1.15 * 60 * self.agents / self.latency_s, -2)

    @property
    def bound_s(self) -> float:
        """The span with every agent busy from first request to last result."""
        waves = -(-self.jobs // self.agents)
        return waves * self.latency_s


def span_cases(quick: bool) -> dict[int, SpanCase]:
    if quick:
        return {5: SpanCase(5, 250, 2.0, 1000, 300, 1.3, 1.05), 6: SpanCase(6, 750, 4.0, 2250, 450, None)}
    return {5: SpanCase(5, 1000, 5.0, 4000, 300, 1.3, 1.05), 6: SpanCase(6, 3000, 10.0, 9000, 450, None)}


@dataclass
class SpanRun:
    """Anvil and the floor on one case, measured back to back against their own simulators."""

    case: SpanCase
    anvil: Measured
    afacts: dict[str, Any]
    floor: Measured
    ffacts: dict[str, Any]

    @property
    def a_span(self) -> float | None:
        if self.anvil.first_request_at is None or self.afacts["last_finished"] is None:
            return None
        return float(self.afacts["last_finished"]) - self.anvil.first_request_at

    @property
    def f_span(self) -> float | None:
        if self.floor.first_request_at is None or not self.ffacts.get("last_done"):
            return None
        return float(self.ffacts["last_done"]) - self.floor.first_request_at

    @property
    def a_cpu_ms(self) -> float:
        return 1000 * self.anvil.run.cpu_s / self.case.jobs

    @property
    def f_cpu_ms(self) -> float:
        return 1000 * self.floor.run.cpu_s / self.case.jobs

    @property
    def all_ok(self) -> bool:
        return self.afacts["succeeded"] == self.case.jobs and self.ffacts.get("ok", 0) == self.case.jobs


def run_span(case: SpanCase) -> SpanRun:
    """The floor, then Anvil, on the same batch against simulators of the same seed."""
    sim_config = SimConfig(latency_ms=case.latency_s * 1000, seed=case.n)
    timeout_s = 6 * case.bound_s + 120
    stated = {bench_engine.MODEL: {"requests_per_minute": case.stated_rpm, "burst_size": case.agents}}
    cfg = {
        "scaling": {"max_agents": case.agents, "max_concurrent_jobs": case.agents, "min_agents": 1},
        "rate_limits": stated if case.stated else {"default": FAST_LIMITS},
        "cache": {"enabled": False},
        "run": {"progress_interval_s": 3600},
    }
    with tempfile.TemporaryDirectory(prefix=f"anvil-bench{case.n}-") as tmp:
        work = Path(tmp)
        batch = bench_engine._batch(work / "batch.jsonl", case.jobs)
        (work / "floor").mkdir()
        (work / "anvil").mkdir()
        floor, ffacts = run_floor(case.jobs, case.agents, sim_config, work / "floor", timeout_s)
        anvil, afacts = run_anvil(cfg, batch, sim_config, work / "anvil", timeout_s)
    return SpanRun(case, anvil, afacts, floor, ffacts)


def bench_span(case: SpanCase) -> None:
    limits = f"the model's limit stated: {case.stated_rpm:,.0f}/min" if case.stated else "no client limit"
    print(
        f"\n[{case.n}] {case.agents:,} agents, {case.latency_s:g} s latency, {case.jobs:,} jobs "
        f"(bound: {case.bound_s:g} s of calls; {limits})"
    )
    r = run_span(case)
    anvil, afacts, floor, ffacts = r.anvil, r.afacts, r.floor, r.ffacts
    a_span, f_span, a_cpu, f_cpu = r.a_span, r.f_span, r.a_cpu_ms, r.f_cpu_ms
    span_r, cpu_r = ratio(a_span, f_span), ratio(a_cpu, f_cpu)
    wall_r = ratio(anvil.run.wall_s, floor.run.wall_s)
    span_t, cpu_t, rss_t = case.span_ratio_target, case.cpu_ratio_target, case.rss_target_mb
    a_rss, f_rss = anvil.run.peak_rss_mb, floor.run.peak_rss_mb
    rows = [
        ("span: 1st request → last result", fmt(a_span, " s"), fmt(f_span, " s"), fmt(span_r, "×"),
         f"≤ {span_t:g}×", verdict(None if span_r is None else span_r <= span_t)),
        ("wall: spawn → exit", fmt(anvil.run.wall_s, " s"), fmt(floor.run.wall_s, " s"), fmt(wall_r, "×"),
         "", "info"),
        ("time to first request", fmt(anvil.ttfr_s, " s"), fmt(floor.ttfr_s, " s"), "", "", "info"),
        ("CPU per job, all processes", fmt(a_cpu, " ms"), fmt(f_cpu, " ms"), fmt(cpu_r, "×"),
         f"≤ {cpu_t:g}×" if cpu_t else "",
         "info" if cpu_t is None else verdict(None if cpu_r is None else cpu_r <= cpu_t)),
        ("CPU s, exact (sampled, a lower bound)", cpu_pair(anvil.run), cpu_pair(floor.run), "", "", "info"),
        ("peak RSS of the tree (sum)", fmt(a_rss, " MB", 0), fmt(f_rss, " MB", 0), "", f"≤ {rss_t:g} MB",
         verdict(a_rss <= rss_t)),
        ("peak PSS of the tree", fmt(anvil.run.peak_pss_mb, " MB", 0), fmt(floor.run.peak_pss_mb, " MB", 0),
         "", "", "info"),
        ("jobs ok", f"{afacts['succeeded']}/{case.jobs}", f"{ffacts.get('ok', 0)}/{case.jobs}", "", "all",
         verdict(afacts["succeeded"] == case.jobs)),
        ("requests / peak in flight (sim)", f"{anvil.sim['requests']} / {anvil.sim['peak_concurrent']}",
         f"{floor.sim['requests']} / {floor.sim['peak_concurrent']}", "", "", "info"),
        ("processes (orphans reaped)", f"{anvil.run.procs} ({anvil.run.orphans})",
         f"{floor.run.procs} ({floor.run.orphans})", "", "", "info"),
    ]  # fmt: skip
    print_table(("", "anvil", "floor", "ratio", "target", ""), rows)
    print_roles(anvil.run)
    if anvil.run.outlived_s > 0.5:
        print(f"  note: Anvil's last process outlived the main one by {anvil.run.outlived_s:.1f} s (counted)")
    if ffacts.get("errors"):
        print(f"  floor errors: {ffacts['errors']}")
    for line in problems(anvil, "anvil") + problems(floor, "floor"):
        print("  " + line)


# -- benchmark 13: the most agents one process tree sustains ---------------------------------------


def capacity_counts(quick: bool) -> list[int]:
    return [250, 500, 1000] if quick else [1000, 2000, 4000, 8000]


def bench_capacity(quick: bool, counts: list[int] | None = None, span_target: float = 1.1) -> None:
    """Issue 24's new benchmark: the largest agent count one process tree sustains at 10 s latency
    (3 jobs per agent: three waves) with its span within `span_target` of the floor's, measured
    in the same run for each count; upward from the first count, stopping at the first that
    misses (span, or a job not ok)."""
    latency_s = 4.0 if quick else 10.0
    print(
        f"\n[13] capacity: agents at {latency_s:g} s latency, jobs = 3 x agents, "
        f"span <= {span_target:g}x the floor's"
    )
    header = ("agents", "jobs", "anvil span", "floor span", "ratio", "CPU/job", "floor CPU/job",
              "CPU ratio", "RSS", "PSS", "floor RSS", "")  # fmt: skip
    rows: list[tuple[str, ...]] = []
    sustained: int | None = None
    for agents in counts or capacity_counts(quick):
        case = SpanCase(13, agents, latency_s, 3 * agents, 0, None, span_target)
        r = run_span(case)
        span_r = ratio(r.a_span, r.f_span)
        ok = span_r is not None and span_r <= span_target and r.all_ok
        rows.append((
            f"{agents:,}", f"{case.jobs:,}", fmt(r.a_span, " s"), fmt(r.f_span, " s"), fmt(span_r, "×"),
            fmt(r.a_cpu_ms, " ms"), fmt(r.f_cpu_ms, " ms"), fmt(ratio(r.a_cpu_ms, r.f_cpu_ms), "×"),
            fmt(r.anvil.run.peak_rss_mb, " MB", 0), fmt(r.anvil.run.peak_pss_mb, " MB", 0),
            fmt(r.floor.run.peak_rss_mb, " MB", 0),
            "ok" if ok else f"MISS ({r.afacts['succeeded']}/{case.jobs} ok)",
        ))  # fmt: skip
        for line in problems(r.anvil, f"anvil at {agents}") + problems(r.floor, f"floor at {agents}"):
            print("  " + line)
        sys.stdout.flush()
        if not ok:
            break
        sustained = agents
    print_table(header, rows)
    said = f"{sustained:,} agents" if sustained is not None else "none of the counts tried"
    print(f"  sustained: {said} (span <= {span_target:g}x the floor's, every job ok)")


# -- main ---------------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def compile_checkout() -> None:
    """This checkout's bytecode, written ahead (pip does this on install; a checkout run with
    PYTHONDONTWRITEBYTECODE would otherwise compile ~200 modules in each process it starts)."""
    argv = [sys.executable, "-m", "compileall", "-q", str(REPO / "anvil_cli")]
    subprocess.run(argv, env=child_env(), capture_output=True, check=False)


def header() -> None:
    git = ["git", "-C", str(REPO), "describe", "--always", "--dirty"]
    rev = subprocess.run(git, capture_output=True, text=True, check=False).stdout.strip()
    where = subprocess.run(
        [sys.executable, "-c", "import anvil_cli; print(anvil_cli.__file__)"],
        env=child_env(), capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    code = "compiled ahead" if BYTECODE["on"] else "compiled from source at each start (--no-pyc)"
    print(f"anvil_cli: {where} ({rev}); {os.cpu_count()} CPUs, load {load}; floor on {loop}; bytecode {code}")


def main() -> None:
    import bench_holds  # benchmark 7
    import bench_priority  # benchmark 8

    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--only", default="5,6,7,8", help="benchmarks to run, e.g. 5,8")
    parser.add_argument("--quick", action="store_true", help="small sizes, for trying things")
    parser.add_argument("--counts", default="", help="benchmark 13: agent counts to try, e.g. 8000,16000")
    parser.add_argument("--engine", default="1,2,3,4", help="benchmark 7: which of benchmarks 1-4")
    parser.add_argument("--no-pyc", action="store_true", help="no bytecode for this checkout (as before)")
    parser.add_argument(
        "--stated-limits",
        action="store_true",
        help="5 and 6 with the model's request rate in the config as a user states it (agents/latency +15%%)",
    )
    args = parser.parse_args()
    BYTECODE["on"] = not args.no_pyc
    if BYTECODE["on"]:
        compile_checkout()
    chosen = [int(x) for x in args.only.split(",") if x.strip()]
    signal.signal(signal.SIGTERM, _interrupt)  # clean up the trees on SIGTERM too
    header()
    cases = {n: replace(c, stated=args.stated_limits) for n, c in span_cases(args.quick).items()}
    runners: dict[int, Callable[[], None]] = {
        5: lambda: bench_span(cases[5]),
        6: lambda: bench_span(cases[6]),
        7: lambda: bench_holds.run(args.quick, {int(x) for x in args.engine.split(",") if x.strip()}),
        8: lambda: bench_priority.run(args.quick),
        13: lambda: bench_capacity(args.quick, [int(x) for x in args.counts.split(",") if x.strip()]),
    }
    for n in chosen:
        if n not in runners:
            print(f"\n[{n}] no such benchmark here (5-8, 13)")
            continue
        try:
            runners[n]()
        except KeyboardInterrupt:
            print(f"\n[{n}] interrupted; every process it started was stopped")
            sys.exit(130)
        except Exception as exc:  # a report: one broken benchmark does not stop the others
            print(f"\n[{n}] failed: {type(exc).__name__}: {exc}")
        sys.stdout.flush()
    sys.exit(0)


if __name__ == "__main__":
    main()
