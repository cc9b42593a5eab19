"""Several endpoints on the Ray backend, the way users run it: `anvil run --backend ray` with an
Anthropic and a Bedrock endpoint configured by environment variables alone, against the
simulator's `/e/{name}` endpoints (the SDK's real clients in the Ray actors, over HTTP on
127.0.0.1). The credentials reach the actors from the `anvil` process; the governor's grants
name the endpoint each call goes to."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.sim.config import EndpointSim
from tests.engine_support import anvil_cmd, cli_env, journal_query, read_results, write_jsonl_batch

from .conftest import LocalCluster

pytestmark = pytest.mark.ray

HANG_GUARD_S = 180.0


def _env(tmp_path: Path, sim: SimServer, b_provider: str, a_burst: int) -> dict[str, str]:
    """`a` (Anthropic, listed first, refilling one call a second) and `b` (`b_provider`, room to
    spare), from variables only, each with its credential in the variable it names."""
    env = cli_env()
    del env["ANTHROPIC_API_KEY"]
    env.update(
        {
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "KEY_A": "sk-ant-ray",
            "KEY_B": "bedrock-api-key-ray" if b_provider == "bedrock" else "sk-ant-ray-b",
            "ANVIL_STATE_DIR": str(tmp_path / ".anvil"),
            "ANVIL_SCALING__WORKERS": "2",
            "ANVIL_RAY__WORKER_CPUS": "1",
            "ANVIL_RETRIES__MAX_ATTEMPTS": "8",
            "ANVIL_RETRIES__BACKOFF_BASE_S": "0.01",
            "ANVIL_RETRIES__BACKOFF_MAX_S": "0.2",
            "ANVIL_CIRCUIT_BREAKER__RECOVERY_TIMEOUT_S": "3600",  # no probe of an endpoint gone off
            "ANVIL_ENDPOINTS__0__NAME": "a",
            "ANVIL_ENDPOINTS__0__API_KEY_ENV": "KEY_A",
            "ANVIL_ENDPOINTS__0__BASE_URL": sim.endpoint_url("a"),
            "ANVIL_ENDPOINTS__0__RATE_LIMITS__DEFAULT__REQUESTS_PER_MINUTE": "60",
            "ANVIL_ENDPOINTS__0__RATE_LIMITS__DEFAULT__BURST_SIZE": str(a_burst),
            "ANVIL_ENDPOINTS__1__NAME": "b",
            "ANVIL_ENDPOINTS__1__PROVIDER": b_provider,
            "ANVIL_ENDPOINTS__1__API_KEY_ENV": "KEY_B",
            "ANVIL_ENDPOINTS__1__BASE_URL": sim.endpoint_url("b"),
            "ANVIL_ENDPOINTS__1__RATE_LIMITS__DEFAULT__REQUESTS_PER_MINUTE": "60000",
            "ANVIL_ENDPOINTS__1__RATE_LIMITS__DEFAULT__BURST_SIZE": "100",
        }
    )
    if b_provider == "bedrock":
        env["ANVIL_ENDPOINTS__1__REGION"] = "us-east-1"
    return env


def _run(
    tmp_path: Path, env: dict[str, str], cluster: LocalCluster, agents: int
) -> subprocess.CompletedProcess[str]:
    argv = anvil_cmd(
        *("run", "b.jsonl", "-o", "results.jsonl", "-q", "--json", "--agents", str(agents)),
        *("--backend", "ray", "--ray-address", cluster.address),
    )
    return subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S, check=False
    )


def _logs(tmp_path: Path) -> list[list[dict[str, Any]]]:
    return [
        json.loads(str(log))
        for (log,) in journal_query(tmp_path / ".anvil", "SELECT attempts_json FROM jobs")
    ]


def test_two_endpoints_from_variables_on_ray(tmp_path: Path, ray_cluster: LocalCluster) -> None:
    """20 jobs at once; the Anthropic endpoint `a` (listed first) has a burst of 3 and refills
    one call a second, so the Bedrock endpoint `b` takes the rest: every job done, both used,
    each result names its endpoint, and each simulated endpoint answered what the journal says."""
    n = 20
    write_jsonl_batch(tmp_path / "b.jsonl", [f"ray question {i}" for i in range(n)])
    config = SimConfig(
        seed=29,
        latency_ms=30,
        endpoints={"a": EndpointSim(provider="anthropic"), "b": EndpointSim(provider="bedrock")},
    )
    with SimServer(config).start_thread() as sim:
        done = _run(tmp_path, _env(tmp_path, sim, "bedrock", a_burst=3), ray_cluster, agents=n)
        stats = sim.stats()["endpoints"]
    assert done.returncode == ExitCode.OK, done.stderr[-3000:]
    assert json.loads(done.stdout)["counts"]["succeeded"] == n
    results = read_results(tmp_path / "results.jsonl")
    by_endpoint = Counter(r["endpoint"] for r in results)
    assert len(results) == n and set(by_endpoint) == {"a", "b"}, by_endpoint
    answered: Counter[str] = Counter()
    for log in _logs(tmp_path):
        answered.update(a["endpoint"] for a in log if a["status_code"] == 200)
    assert answered == by_endpoint  # one call a job, on the endpoint its result names
    assert {name: s["successes"] for name, s in stats.items()} == dict(answered)


def test_an_endpoint_turned_off_on_ray_fails_over(tmp_path: Path, ray_cluster: LocalCluster) -> None:
    """Two Anthropic accounts; the 9th job's prompt turns `a` off mid-run: every job succeeds,
    answered once; `a`'s breaker opened (journal); the simulator's paid duplicates are no more
    than the calls `a` had cut in flight."""
    n, off_at = 30, 8
    prompts = [f"ray question {i}" for i in range(n)]
    prompts[off_at] = "ray question @sim{endpoint_off=a}"
    write_jsonl_batch(tmp_path / "b.jsonl", prompts)
    config = SimConfig(seed=30, latency_ms=40, endpoints={"a": EndpointSim(), "b": EndpointSim()})
    with SimServer(config).start_thread() as sim:
        done = _run(tmp_path, _env(tmp_path, sim, "anthropic", a_burst=100), ray_cluster, agents=4)
        stats = sim.stats()
    assert done.returncode == ExitCode.OK, done.stderr[-3000:]
    assert json.loads(done.stdout)["counts"]["succeeded"] == n
    logs = _logs(tmp_path)
    assert len(logs) == n and all(sum(a["status_code"] == 200 for a in log) == 1 for log in logs)
    events = journal_query(tmp_path / ".anvil", "SELECT data_json FROM events WHERE kind = 'breaker'")
    opened = [e for e in (json.loads(str(r[0])) for r in events) if e.get("endpoint") == "a"]
    assert any(e["state"] == "open" for e in opened), opened
    a_stats = stats["endpoints"]["a"]
    assert a_stats["off"] and stats["endpoints"]["b"]["successes"] > 0
    assert stats["paid_duplicates"] <= a_stats["dropped"]
