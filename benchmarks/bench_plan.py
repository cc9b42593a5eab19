"""How close `anvil plan` comes to a real run on the simulator: `python benchmarks/bench_plan.py`.

70 jobs at 1,200 requests/min with a burst of 5 and 0.1 s latency (Anvil's limits bind; the
simulator has none). Prints the planned and measured cost and duration; measured = first
dispatch to last result (a run's `duration_s` also counts starting and stopping its processes).
The test suite checks the plan against the run's schedule at a fake clock; this measures the
real thing, so it belongs on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from anvil_cli.engine.journal.store import Journal
from anvil_cli.sim import SimConfig, SimServer

MODEL = "claude-haiku-4-5"


def _anvil(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "ANTHROPIC_"))}
    env.update(ANTHROPIC_API_KEY="bench-key", NO_COLOR="1")
    argv = [sys.executable, "-m", "anvil_cli", *args]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=True)


def measure(jobs: int) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        SimServer(SimConfig(seed=4, latency_ms=100, output_tokens=40)).start_thread() as sim,
    ):
        root = Path(tmp)
        batch = root / "b.jsonl"
        with batch.open("w") as fh:
            for i in range(jobs):
                job = {
                    "id": f"job-{i:04d}",
                    "prompt": f"plan question {i} " * 20,
                    "model": MODEL,
                    "max_tokens": 64,
                }
                fh.write(json.dumps(job) + "\n")
        config = root / "anvil.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "provider": {"base_url": sim.base_url},
                    "scaling": {"workers": 2, "max_agents": 20, "max_concurrent_jobs": 20, "min_agents": 1},
                    "rate_limits": {"default": {"requests_per_minute": 1200, "burst_size": 5}},
                    "plan": {"expected_output_tokens": 40, "assumed_latency_s": 0.1},
                    "cache": {"enabled": False},
                    "state_dir": str(root / ".anvil"),
                }
            )
        )
        plan = json.loads(_anvil("plan", str(batch), "--config", str(config), "--json", cwd=root).stdout)
        _anvil("run", str(batch), "--config", str(config), "-o", str(root / "out.jsonl"), cwd=root)
        with Journal.open(root / ".anvil") as journal:
            run = journal.latest_run()
            assert run is not None
            rows = list(journal.iter_results(run.id))
    cost = sum(float(r.get("cost_usd") or 0.0) for r in rows)
    measured_s = max(r["finished_at"] for r in rows) - min(r["started_at"] for r in rows)
    return {
        "planned_s": plan["duration_s"],
        "measured_s": measured_s,
        "planned_usd": plan["expected_usd"],
        "measured_usd": cost,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--jobs", type=int, default=70)
    args = parser.parse_args()
    got = measure(args.jobs)
    for what, planned, measured in (
        ("duration", got["planned_s"], got["measured_s"]),
        ("cost", got["planned_usd"], got["measured_usd"]),
    ):
        off = (planned - measured) / measured * 100 if measured else float("nan")
        print(f"{what:9} planned {planned:10.4f}  measured {measured:10.4f}  ({off:+.1f}%)")


if __name__ == "__main__":
    main()
