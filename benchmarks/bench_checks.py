"""Benchmark 11 (issue 22): answers that are checked.

1,000 jobs with an output schema (a ticket's triage as a JSON object); the simulator's first
answer is invalid for the schema for exactly 20% of them (`@sim{invalid=1}` in every fifth
prompt); every answer is graded by a judge on Haiku.

* **Messages mode**: the share of valid answers at the end (target 100%), the share of jobs
  re-asked and what the re-asks cost (from the journal's check records), the judges' cost
  against what `anvil plan` said beforehand (target within 10%; the plan is made as users make
  it, `anvil plan batch.yaml --json`, and with `--simulate`, which reads the judges' answers'
  lengths off the simulator).
* **Batches mode**: the same batch with `--mode batches`: the invalid rows go into a follow-up
  batch; the valid set at the end against Messages mode's.

The baseline, measured in the same run, is what users write today: a pool of 32 threads over the
SDK with the same schema as `output_config`, answers parsed and validated afterwards, no re-ask.

    python benchmarks/bench_checks.py        # --jobs N (default 1,000); --help
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
from pathlib import Path
from typing import Any

import anthropic
import yaml

from anvil_cli.policy.checks.schema import check_answer
from anvil_cli.sim import SimConfig, SimServer

MODEL = "claude-haiku-4-5"
RPM = 6000.0
LATENCY_MS = 100.0
SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["billing", "bug", "feature", "account", "other"]},
        "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
        "summary": {"type": "string", "minLength": 10, "maxLength": 200},
        "needs_human": {"type": "boolean"},
    },
    "required": ["category", "urgency", "summary", "needs_human"],
    "additionalProperties": False,
}
RUBRIC = "The summary is faithful to the ticket and the urgency fits what the customer reports."


def _prompt(i: int) -> str:
    invalid = " @sim{invalid=1}" if i % 5 == 0 else ""
    return (
        f"Triage support ticket #{i}: the customer says their invoice for March was charged twice and"
        f" they need a refund before their card limit is reached.{invalid}"
    )


def _batch(path: Path, n: int) -> Path:
    batch = {
        "defaults": {
            "model": MODEL,
            "max_tokens": 300,
            "output_schema": SCHEMA,
            "checks": [{"judge": {"rubric": RUBRIC, "scale": [1, 5]}}],
        },
        "jobs": [{"id": f"t{i:05d}", "prompt": _prompt(i)} for i in range(n)],
    }
    path.write_text(yaml.safe_dump(batch, sort_keys=False))
    return path


def _config(sim: SimServer, workdir: Path) -> Path:
    cfg = {
        "provider": {"base_url": sim.base_url},
        "rate_limits": {"default": {"requests_per_minute": RPM, "burst_size": 50}},
        "scaling": {"max_agents": 100, "max_concurrent_jobs": 100, "min_agents": 1},
        "batches": {"poll_interval_s": 0.2},
        "cache": {"enabled": False},
        "run": {"progress_interval_s": 3600},
        "state_dir": str(workdir / ".anvil"),
    }
    path = workdir / "anvil.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-bench-checks", "NO_COLOR": "1"}


def _anvil(args: list[str], config: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "anvil_cli", *args, "--config", str(config)]
    return subprocess.run(argv, capture_output=True, text=True, env=_env(), check=False)


PLANS = {"max_tokens rule": [], "--sample 20": ["--sample", "20"], "--simulate": ["--simulate"]}


def plan_judges(batch: Path, config: Path, how: list[str]) -> float:
    proc = _anvil(["plan", str(batch), "--json", *how], config)
    if proc.returncode != 0:
        raise SystemExit(f"anvil plan failed ({proc.returncode}): {proc.stderr[-2000:]}")
    plan = json.loads(proc.stdout)
    return float(sum(j["expected_usd"] for j in plan["checks"]["judges"]))


def run_anvil(mode: str, jobs: int, workdir: Path) -> dict[str, Any]:
    sim_cfg = SimConfig(rpm=RPM, burst=50, latency_ms=LATENCY_MS, seed=11, batch_seconds_per_request=0.001)
    with SimServer(sim_cfg).start_process() as sim:
        config = _config(sim, workdir)
        batch = _batch(workdir / "tickets.yaml", jobs)
        planned = (
            {name: plan_judges(batch, config, how) for name, how in PLANS.items()}
            if mode == "messages"
            else {}
        )
        t0 = time.monotonic()
        proc = _anvil(["run", str(batch), "--json", "--quiet", "--fresh", "--mode", mode], config)
        wall = time.monotonic() - t0
        stats = sim.stats()
    if proc.returncode != 0:
        raise SystemExit(f"anvil run --mode {mode} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    valid: set[str] = set()
    reasked = reasks = 0
    reask_usd = judge_usd = total_usd = 0.0
    with sqlite3.connect(workdir / ".anvil" / "journal.sqlite") as db:
        (run_id,) = db.execute(  # the run, not `anvil plan --sample`'s run
            "SELECT id FROM runs WHERE kind = 'run' ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
        rows = db.execute(
            "SELECT id, state, output, cost_usd, checks_json FROM jobs WHERE run_id = ?", (run_id,)
        ).fetchall()
    for job_id, state, output, cost, checks_json in rows:
        total_usd += cost or 0.0
        record = json.loads(checks_json) if checks_json else {}
        reasks += record.get("reasks", 0)
        reasked += 1 if record.get("reasks", 0) else 0
        reask_usd += record.get("reask_cost_usd", 0.0)
        judge_usd += record.get("judge_cost_usd", 0.0)
        if state == "succeeded" and check_answer(SCHEMA, output).valid:
            valid.add(job_id)
    return {
        "mode": mode,
        "wall_s": wall,
        "jobs": len(rows),
        "valid": valid,
        "reasked_jobs": reasked,
        "reasks": reasks,
        "reask_usd": reask_usd,
        "judge_usd": judge_usd,
        "total_usd": total_usd,
        "planned_judge_usd": planned,
        "sim_invalid": stats.get("invalid_answers"),
    }


def run_baseline(jobs: int) -> dict[str, Any]:
    sim_cfg = SimConfig(rpm=RPM, burst=50, latency_ms=LATENCY_MS, seed=11)
    with SimServer(sim_cfg).start_process() as sim:
        client = anthropic.Anthropic(api_key="sk-ant-bench-checks", base_url=sim.base_url)
        valid = [0]
        lock = threading.Lock()
        native = {"format": {"type": "json_schema", "schema": anthropic.transform_schema(SCHEMA)}}

        def one(i: int) -> None:
            try:
                message = client.messages.create(
                    model=MODEL,
                    max_tokens=300,
                    messages=[{"role": "user", "content": _prompt(i)}],
                    output_config=native,  # type: ignore[typeddict-item]
                )
            except anthropic.APIError:
                return
            text = "".join(b.text for b in message.content if b.type == "text")
            if check_answer(SCHEMA, text).valid:
                with lock:
                    valid[0] += 1

        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=32) as pool:
            list(pool.map(one, range(jobs)))
        wall = time.monotonic() - t0
        client.close()
    return {"wall_s": wall, "valid": valid[0]}


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    n = args.jobs
    results = {}
    for mode in ("messages", "batches"):
        with tempfile.TemporaryDirectory(prefix=f"bench-checks-{mode}-") as tmp:
            results[mode] = run_anvil(mode, n, Path(tmp))
    base = run_baseline(n)
    m, b = results["messages"], results["batches"]
    print(f"benchmark 11: {n:,} jobs with an output schema, 20% first answers invalid, a Haiku judge on each")
    valid = base["valid"]
    print(f"  baseline (32 threads, native format, no re-ask): {valid / n:.1%} valid ({valid:,})")
    for r in (m, b):
        print(
            f"  {r['mode']:<8}: {len(r['valid']) / n:.1%} valid ({len(r['valid']):,}/{r['jobs']:,}) in"
            f" {r['wall_s']:.1f} s; re-asked {r['reasked_jobs'] / n:.1%} of jobs ({r['reasks']:,} re-asks),"
            f" ${r['reask_usd']:.4f} = {r['reask_usd'] / max(r['total_usd'], 1e-12):.1%}"
            f" of ${r['total_usd']:.4f};"
            f" judges ${r['judge_usd']:.4f}"
        )
        for how, planned in r["planned_judge_usd"].items():
            off = (r["judge_usd"] - planned) / planned if planned else float("nan")
            print(f"    judges planned by `anvil plan` ({how}): ${planned:.4f}; actual {off:+.1%} off that")
    same = m["valid"] == b["valid"]
    print(
        f"  same valid set in both modes: {same} (messages {len(m['valid']):,}, batches {len(b['valid']):,})",
    )


if __name__ == "__main__":
    main()
