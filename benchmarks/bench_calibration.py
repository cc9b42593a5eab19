"""Benchmark 12: is the p10-p90 cost range of `anvil plan --sample 20` calibrated?
`python benchmarks/bench_calibration.py` (54 batches; `--batches N`, `--family NAME`).

A calibrated p10-p90 range holds the measured cost in about 80% of batches: 10% below it, 10%
above. Each seed makes one batch of 100-600 jobs on the simulator, from one of six families
(seed modulo 6), each job's answer length set by a directive drawn from the family's
distribution (the plan cannot read it: `@sim{...}` is just prompt text):

  short        haiku, lognormal answers, mean 60-200 tokens, sigma 0.3-0.6
  long         sonnet, lognormal answers, mean 800-2,500 tokens, sigma 0.2-0.5, under
               max_tokens 4,096 (the longest are cut there)
  heavy        lognormal with sigma 1.0-1.6 or Pareto with alpha 1.6-2.6 (mean 150-500),
               under max_tokens 8,192: a few answers make much of the total
  exponential  exponential answers, mean 150-800 tokens
  mixed        haiku, sonnet and opus in random shares (opus 5-20%), each its own distribution
  prompts      prompts of 20-500 words; on every other seed of the family the answer grows
               with the prompt (0.5-2 tokens a word, +/-15-40%), on the others it does not

For each batch: `anvil plan --sample 20 --json` (in this process, as the CLI runs it), then the
batch's run (in this process, through `execute_run`) against the simulator with no latency and
no binding limit. Measured cost = the run's cost + the sample's (the run takes the sampled jobs'
answers from the cache). The table gives, per family, how many measured costs fell inside the
plan's p10-p90, below it and above it; the median |error| of the plan's expected cost; and how
far the misses were outside the range. Overall coverage comes with its binomial standard error.
With `--auto`, `anvil plan --sample auto --precision 0.10` is measured as well, in a state dir
of its own (the batch's cost is set by its directives, whichever way it was planned).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from anvil_cli.config.load import load_settings
from anvil_cli.engine.journal.store import Journal
from anvil_cli.session.runner import RunOptions, execute_run
from anvil_cli.sim import SimConfig, SimServer

MODELS = {"haiku": "claude-haiku-4-5", "sonnet": "claude-sonnet-4-6", "opus": "claude-opus-4-8"}
FAMILIES = ("short", "long", "heavy", "exponential", "mixed", "prompts")
KEY = "bench-key"
Draw = Callable[[random.Random, int], float]  # (rng, prompt words) -> output tokens


@dataclass(frozen=True)
class Spec:
    """One batch: what the seed drew."""

    seed: int
    family: str
    jobs: int
    describe: str
    models: dict[str, tuple[float, int, Draw]]  # model -> (share, max_tokens, draw)
    words: tuple[int, int] = (20, 200)  # prompt lengths, uniform


def _lognormal(mean: float, sigma: float) -> Draw:
    mu = math.log(mean) - sigma * sigma / 2
    return lambda rng, _words: rng.lognormvariate(mu, sigma)


def _pareto(mean: float, alpha: float) -> Draw:
    scale = mean * (alpha - 1) / alpha  # the mean of scale x Pareto(alpha) is scale x alpha / (alpha - 1)
    return lambda rng, _words: scale * rng.paretovariate(alpha)


def _exponential(mean: float) -> Draw:
    return lambda rng, _words: rng.expovariate(1 / mean)


def _per_word(tokens: float, sigma: float) -> Draw:
    mu = -sigma * sigma / 2  # a lognormal factor of mean 1
    return lambda rng, words: tokens * words * rng.lognormvariate(mu, sigma)


def _any_distribution(rng: random.Random, low: float, high: float) -> tuple[str, Draw]:
    """A random answer distribution of mean in [low, high]: lognormal, exponential or heavy."""
    mean = rng.uniform(low, high)
    kind = rng.choice(["lognormal", "exponential", "heavy"])
    if kind == "lognormal":
        sigma = rng.uniform(0.2, 0.7)
        return f"lognormal({mean:.0f}, {sigma:.2f})", _lognormal(mean, sigma)
    if kind == "exponential":
        return f"exponential({mean:.0f})", _exponential(mean)
    sigma = rng.uniform(1.0, 1.4)
    return f"lognormal({mean:.0f}, {sigma:.2f})", _lognormal(mean, sigma)


def spec_for(seed: int) -> Spec:
    """The batch of `seed`: its family is `seed % 6`, the rest drawn from the seed."""
    family = FAMILIES[seed % len(FAMILIES)]
    rng = random.Random(f"bench12-{seed}")
    jobs = rng.randint(100, 600)
    if family == "short":
        mean, sigma = rng.uniform(60, 200), rng.uniform(0.3, 0.6)
        models = {MODELS["haiku"]: (1.0, 1024, _lognormal(mean, sigma))}
        text = f"lognormal({mean:.0f}, {sigma:.2f})"
    elif family == "long":
        mean, sigma = rng.uniform(800, 2500), rng.uniform(0.2, 0.5)
        models = {MODELS["sonnet"]: (1.0, 4096, _lognormal(mean, sigma))}
        text = f"lognormal({mean:.0f}, {sigma:.2f})"
    elif family == "heavy":
        mean = rng.uniform(150, 500)
        if seed % 4 < 2:
            sigma = rng.uniform(1.0, 1.6)
            draw, text = _lognormal(mean, sigma), f"lognormal({mean:.0f}, {sigma:.2f})"
        else:
            alpha = rng.uniform(1.6, 2.6)
            draw, text = _pareto(mean, alpha), f"pareto({mean:.0f}, alpha {alpha:.2f})"
        models = {MODELS["sonnet"]: (1.0, 8192, draw)}
    elif family == "exponential":
        mean = rng.uniform(150, 800)
        models = {MODELS["haiku"]: (1.0, 4096, _exponential(mean))}
        text = f"exponential({mean:.0f})"
    elif family == "mixed":
        opus = rng.uniform(0.05, 0.2)
        haiku = rng.uniform(0.4, 0.7) * (1 - opus)
        parts = {
            "haiku": (haiku, 1024, *_any_distribution(rng, 50, 250)),
            "sonnet": (1 - opus - haiku, 4096, *_any_distribution(rng, 200, 900)),
            "opus": (opus, 8192, *_any_distribution(rng, 500, 2000)),
        }
        models = {MODELS[k]: (share, cap, draw) for k, (share, cap, _, draw) in parts.items()}
        text = ", ".join(f"{k} {share:.0%} {name}" for k, (share, _, name, _) in parts.items())
    else:
        sigma = rng.uniform(0.15, 0.4)
        if (seed // len(FAMILIES)) % 2:
            per = rng.uniform(0.5, 2.0)
            draw, text = _per_word(per, sigma), f"{per:.2f} x words, +/-{sigma:.2f}"
        else:
            mean = rng.uniform(150, 800)
            draw, text = _lognormal(mean, sigma), f"lognormal({mean:.0f}, {sigma:.2f}), not the prompt"
        models = {MODELS["sonnet"]: (1.0, 4096, draw)}
        return Spec(seed, family, jobs, text, models, words=(20, 500))
    return Spec(seed, family, jobs, text, models)


def batch_lines(spec: Spec) -> Iterator[str]:
    """The batch's JSONL: each job's answer length drawn from its model's distribution."""
    rng = random.Random(f"bench12-jobs-{spec.seed}")
    names = list(spec.models)
    weights = [spec.models[m][0] for m in names]
    for i in range(spec.jobs):
        model = rng.choices(names, weights)[0]
        _, max_tokens, draw = spec.models[model]
        words = rng.randint(*spec.words)
        out = max(1, round(draw(rng, words)))
        prompt = f"@sim{{output_tokens={out}}} task {i}: " + " ".join(["word"] * words)
        yield json.dumps({"id": f"job-{i:05d}", "prompt": prompt, "model": model, "max_tokens": max_tokens})


@dataclass
class Outcome:
    """One batch: the plan's range and what the run cost."""

    spec: Spec
    measured: float = 0.0
    ranges: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> p10/expected/p90
    sample_usd: dict[str, float] = field(default_factory=dict)
    failed: int = 0  # jobs the run failed (their cost is missing from the measured)

    def where(self, method: str) -> str:
        r = self.ranges[method]
        return "below" if self.measured < r["p10"] else ("above" if self.measured > r["p90"] else "inside")

    def error(self, method: str) -> float:
        """The expected cost's error, as a share of the measured."""
        return (self.ranges[method]["expected"] - self.measured) / self.measured

    def outside(self, method: str) -> float:
        """How far outside the range the measured cost fell, as a share of it (0 inside)."""
        r = self.ranges[method]
        return max(r["p10"] - self.measured, self.measured - r["p90"], 0.0) / self.measured


def _cli(*args: str, cwd: Path) -> str:
    """`anvil ARGS` in this process (typer's runner, as the CLI runs it); its stdout."""
    from typer.testing import CliRunner

    from anvil_cli.cli import app

    with contextlib.chdir(cwd):
        result = CliRunner().invoke(app, list(args), env={"ANTHROPIC_API_KEY": KEY, "NO_COLOR": "1"})
    if result.exit_code != 0:
        raise RuntimeError(f"anvil {' '.join(args)}: exit {result.exit_code}\n{result.stderr}")
    return result.stdout


def _config(root: Path, base_url: str, state: str) -> Path:
    config = root / f"{state}.yaml"
    settings = {
        "provider": {"base_url": base_url},
        "scaling": {"workers": 1, "max_agents": 64, "max_concurrent_jobs": 64},
        "rate_limits": {"default": {"requests_per_minute": 600_000, "burst_size": 5000}},
        "run": {"progress_interval_s": 600},
        "state_dir": str(root / state),
    }
    config.write_text(yaml.safe_dump(settings))
    return config


def measure(spec: Spec, base_url: str, auto: bool) -> Outcome:
    """Plan the batch each way (each in a state dir of its own: no plan sees another's sample),
    then run it where `--sample 20` planned it."""
    outcome = Outcome(spec)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        batch = root / f"batch-{spec.seed}.jsonl"
        batch.write_text("".join(line + "\n" for line in batch_lines(spec)))
        plans = {"sample 20": ("--sample", "20")}
        if auto:
            plans["auto 0.10"] = ("--sample", "auto", "--precision", "0.10")
        configs = {}
        for i, (method, extra) in enumerate(plans.items()):
            configs[method] = config = _config(root, base_url, f"state{i}")
            plan = json.loads(_cli("plan", str(batch), "--config", str(config), "--json", *extra, cwd=root))
            outcome.ranges[method] = plan["cost_range_usd"]
            outcome.sample_usd[method] = float(plan["sample"]["spent_usd"])
        settings = load_settings(configs["sample 20"], env={})
        report = execute_run(settings, RunOptions(batch=batch, api_key=KEY))
        outcome.failed = int(report.summary.get("failed") or 0)
        with Journal.open(settings.state_dir) as journal:
            run_usd = journal.totals(report.run_id)["cost_usd"]
    # the run pays for the sample's jobs once, through the cache: add back what sampling spent
    # (the answers are set by directives: the batch costs the same whichever way it was planned)
    outcome.measured = run_usd + outcome.sample_usd["sample 20"]
    return outcome


def _coverage(outcomes: list[Outcome], method: str) -> str:
    n = len(outcomes)
    counts = {w: sum(1 for o in outcomes if o.where(method) == w) for w in ("inside", "below", "above")}
    errors = [abs(o.error(method)) * 100 for o in outcomes]
    misses = [o.outside(method) * 100 for o in outcomes if o.where(method) != "inside"]
    miss = f"{statistics.median(misses):5.1f}%" if misses else "    -"
    return (
        f"{n:3d} {counts['inside']:4d} {counts['below']:4d} {counts['above']:4d}"
        f" {counts['inside'] / n:6.0%} {statistics.median(errors):7.1f}% {miss}"
    )


def report(outcomes: list[Outcome], methods: list[str]) -> None:
    for method in methods:
        print("\n--sample auto --precision 0.10" if method.startswith("auto") else "\n--sample 20")
        print(
            f"{'family':12} {'n':>3} {'in':>4} {'low':>4} {'high':>4} {'cover':>6} {'|err|':>8} {'miss':>6}"
        )
        for family in FAMILIES:
            group = [o for o in outcomes if o.spec.family == family]
            if group:
                print(f"{family:12} {_coverage(group, method)}")
        n = len(outcomes)
        inside = sum(1 for o in outcomes if o.where(method) == "inside") / n
        print(f"{'all':12} {_coverage(outcomes, method)}")
        se = math.sqrt(inside * (1 - inside) / n)
        print(f"coverage {inside:.1%} +/- {se:.1%} (binomial standard error, {n} batches; target 70-90%)")
        share = [o.sample_usd[method] / o.measured * 100 for o in outcomes]
        print(f"sample spend: median {statistics.median(share):.2f}% of the batch, max {max(share):.2f}%")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=54, help="seeds 0..N-1 (default 54: 9 per family)")
    parser.add_argument("--family", choices=FAMILIES, help="only this family's seeds")
    parser.add_argument("--auto", action="store_true", help="also plan with --sample auto --precision 0.10")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write each batch's figures here")
    parser.add_argument("-v", "--verbose", action="store_true", help="a line per batch")
    args = parser.parse_args()
    seeds = [
        s for s in range(args.batches) if args.family is None or FAMILIES[s % len(FAMILIES)] == args.family
    ]
    outcomes = []
    started, cpu = time.perf_counter(), time.process_time()
    with SimServer(SimConfig(seed=12)).start_thread() as sim:
        for seed in seeds:
            spec = spec_for(seed)
            outcome = measure(spec, sim.base_url, args.auto)
            outcomes.append(outcome)
            if args.verbose:
                for method, r in outcome.ranges.items():
                    print(
                        f"seed {seed:3d} {spec.family:11} {spec.jobs:4d} jobs {method:9}"
                        f" ${r['p10']:.4f} < ${r['expected']:.4f} < ${r['p90']:.4f}"
                        f" measured ${outcome.measured:.4f} {outcome.where(method):6} ({spec.describe})",
                        file=sys.stderr,
                        flush=True,
                    )
    methods = list(outcomes[0].ranges) if outcomes else []
    failed = [f"seed {o.spec.seed}: {o.failed}" for o in outcomes if o.failed]
    if failed:
        print(f"warning: runs with failed jobs (their cost is missing): {', '.join(failed)}")
    report(outcomes, methods)
    print(
        f"\n{len(outcomes)} batches, {sum(o.spec.jobs for o in outcomes)} jobs in"
        f" {time.perf_counter() - started:.0f} s ({time.process_time() - cpu:.0f} s of this process's CPU)"
    )
    if args.json:
        rows = [
            {
                "seed": o.spec.seed,
                "family": o.spec.family,
                "jobs": o.spec.jobs,
                "distribution": o.spec.describe,
                "measured_usd": o.measured,
                "ranges": o.ranges,
                "sample_usd": o.sample_usd,
            }
            for o in outcomes
        ]
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
