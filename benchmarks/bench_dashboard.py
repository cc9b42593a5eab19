"""The live dashboard's CPU cost during the overhead-bound run (engine benchmark 3).

Runs the same 5,000-job zero-latency batch twice in a real pseudo-terminal, once with the
dashboard and once with `--no-dashboard`, and samples the conductor process's CPU time from
/proc. The difference, over the run's duration, is the dashboard's share of one core.

    python benchmarks/bench_dashboard.py [--jobs 5000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pexpect
import yaml

from anvil_cli.sim import SimConfig, SimServer

TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def one_run(base_url: str, jobs: int, dashboard: bool) -> tuple[float, float]:
    """(conductor CPU seconds, run seconds) of one `anvil run` on a pty."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        salt = uuid.uuid4().hex[:8]  # fresh prompts: nothing comes from the result cache
        with (work / "b.jsonl").open("w") as fh:
            for i in range(jobs):
                job = {
                    "id": f"j{i}",
                    "prompt": f"dash {salt} {i}",
                    "model": "claude-haiku-4-5",
                    "max_tokens": 64,
                }
                fh.write(json.dumps(job) + "\n")
        cfg = {
            "provider": {"base_url": base_url},
            "rate_limits": {"default": {"requests_per_minute": 10**7, "burst_size": 10**5}},
            "state_dir": str(work / ".anvil"),
        }
        (work / "anvil.yaml").write_text(yaml.safe_dump(cfg))
        args = ["-m", "anvil_cli", "run", "b.jsonl", "--config", "anvil.yaml"]
        if not dashboard:
            args.append("--no-dashboard")
        env = {**os.environ, "ANTHROPIC_API_KEY": "bench", "TERM": "xterm-256color"}
        t0 = time.monotonic()
        child = pexpect.spawn(sys.executable, args, cwd=tmp, env=env, dimensions=(50, 100), timeout=300)
        cpu = 0.0
        while child.isalive():
            sample = _cpu_s(child.pid)
            cpu = sample if sample is not None else cpu
            try:
                child.expect(pexpect.EOF, timeout=0.05)
            except pexpect.TIMEOUT:
                continue
        child.close()
        return cpu, time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with SimServer(SimConfig(seed=3)).start_process() as sim:
        results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for _ in range(args.rounds):
            for dashboard in (False, True):
                results[dashboard].append(one_run(sim.base_url, args.jobs, dashboard))
    for dashboard, runs in results.items():
        cpu = min(r[0] for r in runs)
        secs = min(r[1] for r in runs)
        print(f"{'dashboard' if dashboard else 'plain    '}: conductor CPU {cpu:.2f} s over {secs:.2f} s")
    on = min(r[0] for r in results[True])
    off = min(r[0] for r in results[False])
    secs = min(r[1] for r in results[True])
    print(
        f"dashboard share of one core: {100 * (on - off) / secs:.1f}% ({on - off:.2f} s CPU in {secs:.1f} s)"
    )


if __name__ == "__main__":
    main()
