"""Benchmark 9: how close `anvil plan` comes to the run, with and without a sample (`--sample 20`,
and `--sample auto --precision 0.10`): `python benchmarks/bench_forecast.py`.

Three batches of 1,500 jobs on the simulator, each job's answer length set by a directive drawn
from the scenario's distribution (the plan cannot read them: `@sim{...}` is just prompt text):

  short   answers ~110 tokens (lognormal sigma 0.4) under max_tokens 4,096; requests bind
  long    answers ~8 x the prompt's words (+/-20%) under max_tokens 4,096, answer time
          growing with length (0.5 ms a token); the 40 agents bind
  mixed   haiku short (60%), sonnet medium (30%), opus long (10%): three pools

For each: the plan from the `max_tokens` rule (a fresh state dir), the plan with `--sample 20`,
the plan with `--sample auto --precision 0.10` (its first round is the same 20 jobs: their run
is reused), then the run. Measured cost = every run's cost in the state dir: the run's and the
samples' (the sampled answers come from the cache in the run); measured duration = the run's
first start to last finish (the jobs sampled are cache hits in it: a few % fewer calls than the
plan's). Targets: cost within 10% and duration within 15% with the sample; each sample's spend
at most 2% of the batch's.
Anvil's configured limits bind (the simulator has none), so durations are the schedule's, not
the machine's; still, run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from anvil_cli.engine.journal.store import Journal
from anvil_cli.sim import SimConfig, SimServer

MODELS = {"haiku": "claude-haiku-4-5", "sonnet": "claude-sonnet-4-6", "opus": "claude-opus-4-8"}
LIMITS = {
    "short": {"requests_per_minute": 6000, "burst_size": 20},
    "long": {"requests_per_minute": 20000, "burst_size": 50},
    "mixed": {"requests_per_minute": 4000, "burst_size": 20},
}
AGENTS = {"short": 200, "long": 40, "mixed": 200}
MS_PER_TOKEN = {"short": 0.1, "long": 0.5, "mixed": 0.1}


def _job(i: int, rng: random.Random, scenario: str) -> dict[str, Any]:
    words = rng.randint(20, 200)
    if scenario == "short":
        model, max_tokens, out = MODELS["haiku"], 4096, rng.lognormvariate(4.62, 0.4)  # mean ~110
    elif scenario == "long":
        model, max_tokens, out = MODELS["sonnet"], 4096, 8 * words * rng.uniform(0.8, 1.2)
    else:
        pick = rng.random()
        kind = "haiku" if pick < 0.6 else ("sonnet" if pick < 0.9 else "opus")
        mean = {"haiku": 150, "sonnet": 500, "opus": 1200}[kind]
        model, max_tokens, out = MODELS[kind], 4096, rng.lognormvariate(0, 0.3) * mean
    prompt = f"@sim{{output_tokens={max(1, int(out))}}} task {i}: " + " ".join(["word"] * words)
    return {"id": f"job-{i:05d}", "prompt": prompt, "model": model, "max_tokens": max_tokens}


def _anvil(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "ANTHROPIC_"))}
    env.update(ANTHROPIC_API_KEY="bench-key", NO_COLOR="1")
    argv = [sys.executable, "-m", "anvil_cli", *args]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=True)


def measure(scenario: str, jobs: int, sample: int, precision: float) -> dict[str, Any]:
    sim_cfg = SimConfig(seed=9, latency_ms=60, latency_spread=0.2, ms_per_output_token=MS_PER_TOKEN[scenario])
    with tempfile.TemporaryDirectory() as tmp, SimServer(sim_cfg).start_thread() as sim:
        root = Path(tmp)
        rng = random.Random(f"bench9-{scenario}")
        batch = root / f"{scenario}.jsonl"
        batch.write_text("".join(json.dumps(_job(i, rng, scenario)) + "\n" for i in range(jobs)))
        config = root / "anvil.yaml"
        settings = {
            "provider": {"base_url": sim.base_url},
            "scaling": {
                "workers": 2,
                "max_agents": AGENTS[scenario],
                "max_concurrent_jobs": AGENTS[scenario],
            },
            "rate_limits": {"default": LIMITS[scenario]},
            "state_dir": str(root / ".anvil"),
        }
        config.write_text(yaml.safe_dump(settings))
        plan_args = ("plan", str(batch), "--config", str(config), "--json")
        ruled = json.loads(_anvil(*plan_args, cwd=root).stdout)
        sampled = json.loads(_anvil(*plan_args, "--sample", str(sample), cwd=root).stdout)
        auto_args = ("--sample", "auto", "--precision", str(precision))
        auto = json.loads(_anvil(*plan_args, *auto_args, cwd=root).stdout)
        _anvil("run", str(batch), "--config", str(config), "-q", cwd=root)
        with Journal.open(root / ".anvil") as journal:
            run = journal.latest_run()
            assert run is not None
            rows = [r for r in journal.iter_results(run.id) if r.get("attempts")]
            every = [r.id for r in journal.list_runs(limit=1000)]
            cost = sum(journal.totals(run_id)["cost_usd"] for run_id in every)
    duration = max(r["finished_at"] for r in rows) - min(r["started_at"] for r in rows)
    return {"ruled": ruled, "sampled": sampled, "auto": auto, "cost": cost, "duration": duration}


def _off(planned: float, measured: float) -> float:
    return (planned - measured) / measured * 100 if measured else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--jobs", type=int, default=1500)
    parser.add_argument("--sample", type=int, default=20)
    parser.add_argument("--precision", type=float, default=0.10)
    parser.add_argument("--only", choices=["short", "long", "mixed"])
    args = parser.parse_args()
    print(f"{'batch':7} {'method':8} {'cost planned':>13} {'p10-p90':>19} {'measured':>9} {'off':>7}"
          f" {'duration planned':>17} {'measured':>9} {'off':>7}")  # fmt: skip
    for scenario in [args.only] if args.only else ["short", "long", "mixed"]:
        got = measure(scenario, args.jobs, args.sample, args.precision)
        for method in ("ruled", "sampled", "auto"):
            plan = got[method]
            c, usd, secs = plan["cost_range_usd"], plan["expected_usd"], plan["duration_s"]
            d = plan["duration_range_s"]
            name = "auto" if method == "auto" else plan["method"]
            print(
                f"{scenario:7} {name:8} ${usd:12.4f} ${c['p10']:8.4f}-${c['p90']:8.4f}"
                f" ${got['cost']:8.4f} {_off(usd, got['cost']):+6.1f}%"
                f" {secs:16.1f}s {got['duration']:8.1f}s {_off(secs, got['duration']):+6.1f}%"
                f" (p10-p90 {d['p10']:.1f}-{d['p90']:.1f}s)"
            )
        for method in ("sampled", "auto"):
            s = got[method]["sample"]
            share = s["spent_usd"] / got["cost"] * 100 if got["cost"] else float("nan")
            extra = ""
            if method == "auto":
                p = s["precision"]
                trail = " -> ".join(f"{r['answers']} (+/-{r['precision']:.1%})" for r in s["rounds"])
                extra = (
                    f"; rounds: {trail}; precision +/-{p['reached']:.1%} (target"
                    f" +/-{p['target']:.0%}, {'met' if p['met'] else 'not met: ' + s['stop_reason']})"
                )
            print(
                f"{'':7} {method:8} sample: {s['answers']} answers, ${s['spent_usd']:.4f} = {share:.2f}%"
                f" of the batch's ${got['cost']:.4f}{extra}"
            )


if __name__ == "__main__":
    main()
