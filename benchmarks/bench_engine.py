"""Engine benchmarks against the simulator, each with a naive baseline measured in the same run.

The baseline is what users write today: a ThreadPoolExecutor of 32 threads over the SDK with
its default retries. Run all four:

    python benchmarks/bench_engine.py            # or: --only 1,3  --quick
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import yaml

from anvil_cli.sim import SimConfig, SimServer

MODEL = "claude-haiku-4-5"


@dataclass
class Scenario:
    name: str
    jobs: int
    sim: SimConfig
    anvil_rpm: float
    anvil_burst: int
    agents: int
    latency_ms: float


def _batch(path: Path, n: int) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            fh.write(
                json.dumps({"id": f"j{i:05d}", "prompt": f"bench {i}", "model": MODEL, "max_tokens": 64})
                + "\n"
            )
    return path


def _tree(root: int) -> list[int]:
    """A process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def _rss_mb(pids: list[int]) -> float:
    total_kb = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
        except OSError:
            pass
    return total_kb / 1024


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def anvil_config(sc: Scenario) -> dict[str, Any]:
    """Anvil's config for a scenario (also what bench_holds.py runs as a measured tree)."""
    return {
        "scaling": {"max_agents": sc.agents, "max_concurrent_jobs": sc.agents, "min_agents": 1},
        "rate_limits": {"default": {"requests_per_minute": sc.anvil_rpm, "burst_size": sc.anvil_burst}},
        "retries": {"max_attempts": 10},
        "run": {"progress_interval_s": 3600},
    }


def run_anvil(sc: Scenario, base_url: str, workdir: Path) -> dict[str, Any]:
    batch = _batch(workdir / "batch.jsonl", sc.jobs)
    cfg = {
        **anvil_config(sc),
        "provider": {"base_url": base_url, "timeout_s": 60},
        "state_dir": str(workdir / ".anvil"),
    }
    config = workdir / "anvil.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "ANTHROPIC_API_KEY": "bench-key", "NO_COLOR": "1"}
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "anvil_cli",
            "run",
            str(batch),
            "--config",
            str(config),
            "--json",
            "--quiet",
            "--fresh",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    peak = [0.0]
    ticks: dict[int, int] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            pids = _tree(proc.pid)
            peak[0] = max(peak[0], _rss_mb(pids))
            for pid in pids:
                ticks[pid] = max(ticks.get(pid, 0), _cpu_ticks(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.monotonic() - t0
    stop.set()
    if proc.returncode != 0:
        raise SystemExit(f"anvil run failed ({proc.returncode}): {err[-2000:]}")
    summary = json.loads(out)
    with sqlite3.connect(workdir / ".anvil" / "journal.sqlite") as db:
        first, last = db.execute("SELECT MIN(started_at), MAX(finished_at) FROM jobs").fetchone()
    cpu_s = sum(ticks.values()) / os.sysconf("SC_CLK_TCK")  # sampled every 0.2 s: a slight undercount
    return {
        "makespan_s": summary["duration_s"],
        "span_s": last - first,  # first dispatch to last result: the run without process start-up
        "wall_s": wall,
        "succeeded": summary["counts"]["succeeded"],
        "cpu_ms_per_job": 1000 * cpu_s / sc.jobs,
        "peak_rss_mb": peak[0],
    }


def run_baseline(sc: Scenario, base_url: str) -> dict[str, Any]:
    client = anthropic.Anthropic(api_key="bench-key", base_url=base_url)  # default retries (2)
    ok = [0]
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            client.messages.create(
                model=MODEL, max_tokens=64, messages=[{"role": "user", "content": f"bench {i}"}]
            )
        except anthropic.APIError:
            return
        with lock:
            ok[0] += 1

    cpu0 = time.process_time()
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(one, range(sc.jobs)))
    wall = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    client.close()
    return {
        "makespan_s": wall,
        "span_s": wall,
        "wall_s": wall,
        "succeeded": ok[0],
        "cpu_ms_per_job": 1000 * cpu / sc.jobs,
    }


def _measure(sc: Scenario, which: str, workdir: Path) -> dict[str, Any]:
    with SimServer(sc.sim).start_process() as sim:
        result = run_anvil(sc, sim.base_url, workdir) if which == "anvil" else run_baseline(sc, sim.base_url)
        stats = sim.stats()
    result["requests"] = stats["requests"]
    result["rate_limited"] = stats["rate_limited"]
    result["pct_429"] = 100.0 * stats["rate_limited"] / max(1, stats["requests"])
    return result


def scenarios(quick: bool) -> dict[int, Scenario]:
    scale = 0.25 if quick else 1.0
    lat = 200.0
    return {
        1: Scenario(
            "rate-bound",
            int(600 * scale),
            SimConfig(rpm=1200, burst=20, latency_ms=lat, seed=1),
            1200,
            20,
            100,
            lat,
        ),
        2: Scenario(
            "misconfigured (2x)",
            int(600 * scale),
            SimConfig(rpm=1200, burst=20, latency_ms=lat, seed=2),
            2400,
            40,
            100,
            lat,
        ),
        3: Scenario("overhead-bound", int(5000 * scale), SimConfig(seed=3), 10**7, 10**5, 100, 0.0),
        4: Scenario(
            "scale (100 agents, 2 s)",
            int(1000 * scale),
            SimConfig(latency_ms=2000, seed=4),
            10**7,
            10**5,
            100,
            2000.0,
        ),
    }


def report(n: int, sc: Scenario, anvil: dict[str, Any], base: dict[str, Any]) -> None:
    print(f"\n[{n}] {sc.name}: {sc.jobs} jobs")
    for label, r in (("anvil", anvil), ("baseline", base)):
        print(
            f"  {label:8s} makespan {r['makespan_s']:7.2f}s (work {r['span_s']:6.2f}s)  "
            f"ok {r['succeeded']:5d}/{sc.jobs}  "
            f"requests {r['requests']:5d}  429s {r['rate_limited']:4d} ({r['pct_429']:.2f}%)  "
            f"cpu {r['cpu_ms_per_job']:.2f} ms/job"
            + (f"  peak rss {r['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in r else "")
        )
    if n in (1, 2):
        bound = (sc.jobs - 20) / (sc.sim.rpm or 1) * 60 + sc.latency_ms / 1000
        print(
            f"  bound {bound:.2f}s | anvil work {anvil['span_s'] / bound:.3f}x bound "
            f"(with start-up {anvil['makespan_s'] / bound:.3f}x), "
            f"baseline {base['makespan_s'] / bound:.3f}x bound"
        )
    elif n == 3:
        a, b = sc.jobs / anvil["makespan_s"], sc.jobs / base["makespan_s"]
        w = sc.jobs / anvil["span_s"]
        print(
            f"  jobs/s anvil {a:.0f} with start-up ({w:.0f} once running) vs baseline {b:.0f}: "
            f"ratio {a / b:.2f} ({w / b:.2f} once running)"
        )
    else:
        target = sc.agents / (sc.latency_ms / 1000)
        a = sc.jobs / anvil["makespan_s"]
        w = sc.jobs / anvil["span_s"]
        b = sc.jobs / base["makespan_s"]
        print(
            f"  throughput anvil {a:.1f} jobs/s with start-up, {w:.1f} once running = {w / target:.2f} x "
            f"agents/latency ({a / target:.2f} with start-up); baseline {b:.1f} jobs/s (ratio {a / b:.2f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="1,2,3,4")
    parser.add_argument("--quick", action="store_true", help="a quarter of the jobs")
    args = parser.parse_args()
    chosen = [int(x) for x in args.only.split(",")]
    all_sc = scenarios(args.quick)
    for n in chosen:
        sc = all_sc[n]
        with tempfile.TemporaryDirectory() as tmp:
            anvil = _measure(sc, "anvil", Path(tmp))
        base = _measure(sc, "baseline", Path("."))
        report(n, sc, anvil, base)


if __name__ == "__main__":
    main()
