"""Benchmark 10 (issue 21): one pool from three endpoints.

Three simulated endpoints of 600, 600 and 300 requests a minute (burst 20 each; two Anthropic
organisations and a Bedrock region), 2,000 jobs:

* **pooled**: the span (first dispatch to last result, from the journal) against the bound for
  1,500 a minute; 429s; each endpoint's share of the answers against its share of the capacity.
* **one endpoint off**: the simulator turns `org-b` off mid-run (every connection to it
  dropped, calls in flight to it cut): how soon it stops being sent calls (apart from the
  breaker's probes), whether every job still succeeds, how many calls were paid twice (at most
  the calls it had in flight), and the span against the bound of 1,500 a minute until the
  switch and 900 after.

The baseline, measured in the same run, is what users write today: a pool of 32 threads
dealing the jobs round-robin over three SDK clients (one per key), the SDK's default retries.
Each scenario runs on the local backend, and with `--ray` on Ray too (a Ray started locally).

    python benchmarks/bench_endpoints.py    # --quick: 500 jobs; --ray: on Ray too; --only a|b; --help
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

from anvil_cli.config.provider_models import provider_model_id
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.sim.config import EndpointSim

MODEL = "claude-haiku-4-5"
LATENCY_MS = 200.0
BURST = 20
# name, simulated endpoint's provider, rpm
ENDPOINTS = (("org-a", "anthropic", 600.0), ("org-b", "anthropic", 600.0), ("bedrock-east", "bedrock", 300.0))
OFF = "org-b"
SAMPLE_S = 0.25  # the simulator's counters are read this often (when did calls to OFF stop?)


@dataclass(frozen=True)
class Run:
    backend: str  # local | ray
    off_after_s: float | None  # None: every endpoint stays on


def _sim_config(off_after_s: float | None) -> SimConfig:
    endpoints = {
        name: EndpointSim(
            rpm=rpm, burst=BURST, provider=provider, off_after_s=off_after_s if name == OFF else None
        )
        for name, provider, rpm in ENDPOINTS
    }
    return SimConfig(latency_ms=LATENCY_MS, seed=10, endpoints=endpoints)


def _batch(path: Path, n: int) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            job = {"id": f"j{i:05d}", "prompt": f"bench {i}", "model": MODEL, "max_tokens": 64}
            fh.write(json.dumps(job) + "\n")
    return path


def _anvil_config(sim: SimServer, workdir: Path, backend: str) -> tuple[Path, dict[str, str]]:
    endpoints, env = [], {}
    for name, provider, rpm in ENDPOINTS:
        var = f"BENCH_KEY_{name.upper().replace('-', '_')}"
        env[var] = f"bench-key-{name}"
        entry: dict[str, Any] = {
            "name": name,
            "provider": provider,
            "api_key_env": var,
            "base_url": sim.endpoint_url(name),
            "rate_limits": {"default": {"requests_per_minute": rpm, "burst_size": BURST}},
        }
        if provider == "bedrock":
            entry["region"] = "us-east-1"
        endpoints.append(entry)
    cfg = {
        "endpoints": endpoints,
        "scaling": {"max_agents": 100, "max_concurrent_jobs": 100, "min_agents": 1},
        "retries": {"max_attempts": 10},
        "circuit_breaker": {"failure_threshold": 5, "recovery_timeout_s": 30.0},
        "run": {"progress_interval_s": 3600, "backend": backend},
        "state_dir": str(workdir / ".anvil"),
    }
    config = workdir / "anvil.yaml"
    config.write_text(yaml.safe_dump(cfg))
    return config, env


def _ray_actors() -> set[int]:
    """Pids of the processes Ray runs actors in (their command line starts `ray::`)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if fh.read(5) == b"ray::":
                        found.add(int(entry))
            except OSError:
                continue
    return found


class Sampler:
    """The simulator's per-endpoint counters over time, from its stats endpoint."""

    def __init__(self, sim: SimServer) -> None:
        self.sim = sim
        self.samples: list[tuple[float, dict[str, Any]]] = []
        self.ray_actors: set[int] = set()  # pids of Ray actor processes seen (the workers, on Ray)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.samples.append((time.time(), self.sim.stats()))
            self.ray_actors |= _ray_actors()

    def went_off_at(self, name: str) -> float | None:
        """When the simulator first reported `name` off."""
        return next((t for t, s in self.samples if s["endpoints"][name]["off"]), None)

    def last_growth(self, name: str, since: float, ignore_step: int = 1) -> float | None:
        """When `name`'s refused connections last grew by more than `ignore_step` between two
        samples (a breaker's probe is one): when calls stopped being sent to it."""
        last, prev = None, None
        for t, s in self.samples:
            refused = s["endpoints"][name]["refused"]
            if t >= since and prev is not None and refused - prev > ignore_step:
                last = t
            prev = refused
        return last

    def in_flight_at_off(self, name: str) -> int:
        """Calls cut by the switch (dropped while in flight), as the simulator counted them."""
        return int(self.samples[-1][1]["endpoints"][name].get("dropped", 0)) if self.samples else 0


def run_anvil(run: Run, jobs: int, workdir: Path) -> dict[str, Any]:
    with SimServer(_sim_config(run.off_after_s)).start_process() as sim:
        config, keys = _anvil_config(sim, workdir, run.backend)
        batch = _batch(workdir / "batch.jsonl", jobs)
        env = {**os.environ, **keys, "NO_COLOR": "1"}
        argv = [sys.executable, "-m", "anvil_cli", "run", str(batch), "--config", str(config)]
        with Sampler(sim) as sampler:
            proc = subprocess.run(
                [*argv, "--json", "--quiet", "--fresh"], capture_output=True, text=True, env=env, check=False
            )
        stats = sim.stats()
    if proc.returncode != 0:
        raise SystemExit(f"anvil run failed ({proc.returncode}): {proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout)
    with sqlite3.connect(workdir / ".anvil" / "journal.sqlite") as db:
        first, last = db.execute("SELECT MIN(started_at), MAX(finished_at) FROM jobs").fetchone()
    out: dict[str, Any] = {
        "span_s": last - first,
        "first": first,
        "succeeded": summary["counts"]["succeeded"],
        "requests": stats["requests"],
        "rate_limited": stats["rate_limited"],
        "paid_duplicates": stats.get("paid_duplicates", 0),
        "successes": {n: stats["endpoints"][n]["successes"] for n, _, _ in ENDPOINTS},
        "refused": {n: stats["endpoints"][n]["refused"] for n, _, _ in ENDPOINTS},
        "ray_actors": len(sampler.ray_actors),
    }
    if run.off_after_s is not None:
        off_at = sampler.went_off_at(OFF)
        out["off_at"] = off_at
        out["stopped_at"] = sampler.last_growth(OFF, off_at) if off_at else None
        out["cut_in_flight"] = sampler.in_flight_at_off(OFF)
        # answers before the switch: the pooled rate's work up to then
        before = [s for t, s in sampler.samples if off_at is not None and t <= off_at]
        out["done_at_off"] = before[-1]["successes"] if before else 0
    return out


def run_baseline(jobs: int, off_after_s: float | None) -> dict[str, Any]:
    with SimServer(_sim_config(off_after_s)).start_process() as sim:
        clients, models = [], []
        for name, provider, _ in ENDPOINTS:
            models.append(provider_model_id(provider, MODEL, "us-east-1") or MODEL)
            if provider == "bedrock":
                clients.append(
                    anthropic.AnthropicBedrock(
                        api_key=f"bench-key-{name}", aws_region="us-east-1", base_url=sim.endpoint_url(name)
                    )
                )
            else:
                clients.append(
                    anthropic.Anthropic(api_key=f"bench-key-{name}", base_url=sim.endpoint_url(name))
                )
        ok = [0]
        lock = threading.Lock()

        def one(i: int) -> None:
            client, model = clients[i % len(clients)], models[i % len(clients)]  # round-robin over the keys
            try:
                client.messages.create(
                    model=model, max_tokens=64, messages=[{"role": "user", "content": f"bench {i}"}]
                )
            except anthropic.APIError:
                return
            with lock:
                ok[0] += 1

        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=32) as pool:
            list(pool.map(one, range(jobs)))
        wall = time.monotonic() - t0
        stats = sim.stats()
        for client in clients:
            client.close()
    return {
        "span_s": wall,
        "succeeded": ok[0],
        "requests": stats["requests"],
        "rate_limited": stats["rate_limited"],
        "paid_duplicates": stats.get("paid_duplicates", 0),
        "successes": {n: stats["endpoints"][n]["successes"] for n, _, _ in ENDPOINTS},
    }


def _pooled_rpm(on: bool = True) -> float:
    return sum(rpm for name, _, rpm in ENDPOINTS if on or name != OFF)


def bound_s(jobs: int, done_at_off: int | None = None, off_s: float | None = None) -> float:
    """The least time the limits allow: every endpoint's burst at once, then the pooled rate
    (1,500 a minute; 900 after the switch)."""
    burst = BURST * len(ENDPOINTS)
    if off_s is None or done_at_off is None:
        return (jobs - burst) / _pooled_rpm() * 60 + LATENCY_MS / 1000
    return off_s + (jobs - done_at_off) / _pooled_rpm(on=False) * 60 + LATENCY_MS / 1000


def _shares(successes: dict[str, int]) -> str:
    total = sum(successes.values()) or 1
    capacity = _pooled_rpm()
    return ", ".join(
        f"{n} {100 * successes[n] / total:.1f}% (capacity {100 * rpm / capacity:.0f}%)"
        for n, _, rpm in ENDPOINTS
    )


def report(label: str, jobs: int, r: dict[str, Any], bound: float) -> None:
    pct = 100.0 * r["rate_limited"] / max(1, r["requests"])
    print(
        f"  {label:16s} span {r['span_s']:6.1f}s = {r['span_s'] / bound:.3f}x the bound ({bound:.1f}s); "
        f"ok {r['succeeded']}/{jobs}; requests {r['requests']}, 429s {r['rate_limited']} ({pct:.2f}%); "
        f"paid twice {r['paid_duplicates']}"
    )
    print(f"  {'':16s} answers by endpoint: {_shares(r['successes'])}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="500 jobs instead of 2,000")
    parser.add_argument("--ray", action="store_true", help="also on Ray (the `ray` extra)")
    parser.add_argument("--off-after", type=float, default=30.0, help="seconds until org-b goes off")
    parser.add_argument("--only", choices=["a", "b"], help="10a (pooled) or 10b (one endpoint off) alone")
    parser.add_argument("--no-baseline", action="store_true", help="Anvil's runs only")
    parser.add_argument(
        "--ray-only", action="store_true", help="Anvil on Ray alone (not on the local backend)"
    )
    args = parser.parse_args()
    jobs = 500 if args.quick else 2000
    off_after = args.off_after / 4 if args.quick else args.off_after
    backends = ["ray"] if args.ray_only else ["local", "ray"] if args.ray else ["local"]
    if args.only != "b":
        pooled(jobs, backends, not args.no_baseline)
    if args.only != "a":
        one_off(jobs, backends, off_after, not args.no_baseline)


def pooled(jobs: int, backends: list[str], baseline: bool) -> None:
    print(f"\n[10a] pooled: {jobs} jobs over 600 + 600 + 300 requests/min, burst {BURST} each")
    bound = bound_s(jobs)
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            r = run_anvil(Run(backend, None), jobs, Path(tmp))
        report(f"anvil ({backend})", jobs, r, bound)
        if backend == "ray":
            print(f"  {'':16s} Ray actor processes seen during the run: {r['ray_actors']}")
    if baseline:
        report("round-robin", jobs, run_baseline(jobs, None), bound)


def one_off(jobs: int, backends: list[str], off_after: float, baseline: bool) -> None:
    print(f"\n[10b] {OFF} turned off about {off_after:.0f}s after the simulator starts")
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            r = run_anvil(Run(backend, off_after), jobs, Path(tmp))
        off_at, stopped = r.get("off_at"), r.get("stopped_at")
        off_s = off_at - r["first"] if off_at else None
        report(f"anvil ({backend})", jobs, r, bound_s(jobs, r.get("done_at_off"), off_s))
        if backend == "ray":
            print(f"  {'':16s} Ray actor processes seen during the run: {r['ray_actors']}")
        moved = (
            f"{stopped - off_at:.1f}s" if off_at and stopped else "at once (no refused call after the switch)"
        )
        print(
            f"  {'':16s} calls to {OFF} stopped {moved} after it went off (apart from probes); "
            f"refused {r['refused'][OFF]}; cut in flight {r['cut_in_flight']}; "
            f"paid twice {r['paid_duplicates']} (target: <= the calls cut in flight)"
        )
    if baseline:
        report("round-robin", jobs, run_baseline(jobs, off_after), bound_s(jobs))


if __name__ == "__main__":
    main()
