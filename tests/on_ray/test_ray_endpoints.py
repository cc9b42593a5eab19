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

import pytest

from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.sim.config import EndpointSim
from tests.engine_support import anvil_cmd, cli_env, journal_query, read_results, write_jsonl_batch

from .conftest import LocalCluster

pytestmark = pytest.mark.ray

HANG_GUARD_S = 180.0


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
        env = cli_env()
        del env["ANTHROPIC_API_KEY"]
        env.update(
            {
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                "KEY_A": "sk-ant-ray",
                "KEY_B": "bedrock-api-key-ray",
                "ANVIL_STATE_DIR": str(tmp_path / ".anvil"),
                "ANVIL_SCALING__WORKERS": "2",
                "ANVIL_RAY__WORKER_CPUS": "1",
                "ANVIL_RETRIES__BACKOFF_BASE_S": "0.01",
                "ANVIL_RETRIES__BACKOFF_MAX_S": "0.2",
                "ANVIL_ENDPOINTS__0__NAME": "a",
                "ANVIL_ENDPOINTS__0__API_KEY_ENV": "KEY_A",
                "ANVIL_ENDPOINTS__0__BASE_URL": sim.endpoint_url("a"),
                "ANVIL_ENDPOINTS__0__RATE_LIMITS__DEFAULT__REQUESTS_PER_MINUTE": "60",
                "ANVIL_ENDPOINTS__0__RATE_LIMITS__DEFAULT__BURST_SIZE": "3",
                "ANVIL_ENDPOINTS__1__NAME": "b",
                "ANVIL_ENDPOINTS__1__PROVIDER": "bedrock",
                "ANVIL_ENDPOINTS__1__REGION": "us-east-1",
                "ANVIL_ENDPOINTS__1__API_KEY_ENV": "KEY_B",
                "ANVIL_ENDPOINTS__1__BASE_URL": sim.endpoint_url("b"),
                "ANVIL_ENDPOINTS__1__RATE_LIMITS__DEFAULT__REQUESTS_PER_MINUTE": "60000",
                "ANVIL_ENDPOINTS__1__RATE_LIMITS__DEFAULT__BURST_SIZE": "100",
            }
        )
        argv = anvil_cmd(
            *("run", "b.jsonl", "-o", "results.jsonl", "-q", "--json", "--agents", str(n)),
            *("--backend", "ray", "--ray-address", ray_cluster.address),
        )
        done = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S, check=False
        )
        stats = sim.stats()["endpoints"]
    assert done.returncode == ExitCode.OK, done.stderr[-3000:]
    assert json.loads(done.stdout)["counts"]["succeeded"] == n
    results = read_results(tmp_path / "results.jsonl")
    by_endpoint = Counter(r["endpoint"] for r in results)
    assert len(results) == n and set(by_endpoint) == {"a", "b"}, by_endpoint
    answered: Counter[str] = Counter()
    for (log,) in journal_query(tmp_path / ".anvil", "SELECT attempts_json FROM jobs"):
        answered.update(a["endpoint"] for a in json.loads(str(log)) if a["status_code"] == 200)
    assert answered == by_endpoint  # one call a job, on the endpoint its result names
    assert {name: s["successes"] for name, s in stats.items()} == dict(answered)
