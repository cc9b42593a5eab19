"""`GET /metrics` of a real run (`anvil run --serve` in a subprocess against the simulator), parsed
with prometheus_client's own parser and checked against `GET /status` of the same run. Every
wait polls real progress, bounded; nothing sleeps for pacing."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.snapshot.metrics import PROM_BOUNDS_S
from tests.engine_support import (
    MODEL,
    anvil_cmd,
    cli_env,
    invoke_cli,
    write_config,
    write_jsonl_batch,
)
from tests.test_api_e2e import TOKEN, Api, free_port, wait_for

N_JOBS = 30
SERIES = {  # what the issue asks /metrics to export, by family name
    "anvil_jobs": "gauge",  # jobs by state
    "anvil_api_calls": "counter",
    "anvil_api_call_errors": "counter",  # by error type
    "anvil_retries": "counter",  # by error type
    "anvil_rate_limited": "counter",  # 429s
    "anvil_call_latency_seconds": "histogram",  # per model
    "anvil_job_duration_seconds": "histogram",
    "anvil_tokens": "counter",
    "anvil_cost_usd": "counter",
    "anvil_agents_in_flight": "gauge",
    "anvil_agents_limit": "gauge",
    "anvil_workers_alive": "gauge",
    "anvil_worker_restarts": "counter",
    "anvil_queue_depth": "gauge",
    "anvil_limiter_in_use_percent": "gauge",  # per pool and dimension
    "anvil_breaker_state": "gauge",  # per model
    "anvil_alerts_active": "gauge",  # by severity
}


@pytest.fixture
def run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Api, Path]]:
    """A 30-job run on 3 agents with its API, answers taking ~100 ms."""
    with SimServer(SimConfig(latency_ms=100, seed=5)).start_thread() as sim:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(N_JOBS)])
        config = write_config(
            tmp_path / "anvil.yaml",
            sim.base_url,
            scaling={"workers": 1, "max_agents": 3, "max_concurrent_jobs": 3, "min_agents": 1},
        )
        port = free_port()
        with (tmp_path / "run.stderr").open("w") as stderr:
            proc = subprocess.Popen(
                anvil_cmd("run", str(batch), "--config", str(config), "--serve", f"127.0.0.1:{port}"),
                cwd=tmp_path,
                env={**cli_env(), "ANVIL_API_TOKEN": TOKEN},
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                text=True,
            )
        try:
            yield proc, Api(f"http://127.0.0.1:{port}"), config
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _families(api: Api) -> dict[str, Any]:
    code, text = api.get("/metrics")
    assert code == 200
    return {f.name: f for f in text_string_to_metric_families(text)}


def _value(families: dict[str, Any], sample: str, **labels: str) -> float:
    family = sample.removesuffix("_total").removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
    for s in families[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {sample} {labels}")


def test_metrics_of_a_real_run_parse_and_agree_with_its_status(
    run: tuple[subprocess.Popen[str], Api, Path],
) -> None:
    proc, api, config = run
    wait_for(lambda: api.up() or proc.poll() is not None, what="the API answering")
    wait_for(lambda: api.status()["counts"]["succeeded"] >= 6, what="some jobs done")
    assert api.post("/pause")[0] == 200
    wait_for(lambda: (s := api.status())["paused"] and s["agents"]["in_flight"] == 0, what="paused, idle")
    status, families = api.status(), _families(api)  # nothing moves while paused: one picture

    assert {name: families[name].type for name in SERIES} == SERIES
    for state in ("succeeded", "failed", "pending", "running"):
        assert _value(families, "anvil_jobs", state=state) == status["counts"][state], state
    assert _value(families, "anvil_api_calls_total") == status["errors"]["api_calls"] > 0
    calls = status["call_latency_by_model_s"][MODEL]["count"]
    assert _value(families, "anvil_call_latency_seconds_count", model=MODEL) == calls
    assert (
        _value(families, "anvil_call_latency_seconds_bucket", model=MODEL, le="0.05") == 0
    )  # ~100 ms answers
    assert (
        _value(families, "anvil_call_latency_seconds_bucket", model=MODEL, le=repr(PROM_BOUNDS_S[-1]))
        == calls
    )
    jobs = _value(families, "anvil_job_duration_seconds_count", model=MODEL)
    assert jobs == status["counts"]["succeeded"] == status["job_time_s"]["count"]
    assert _value(families, "anvil_workers_alive") == status["workers"]["alive"] == 1
    assert _value(families, "anvil_worker_restarts_total") == 0
    assert _value(families, "anvil_agents_limit") == status["agents"]["limit"]
    assert _value(families, "anvil_breaker_state", model=MODEL, state="closed") == 1
    pools = {s.labels["pool"] for s in families["anvil_limiter_in_use_percent"].samples}
    assert pools == set(status["limits"]) and pools
    severities = {s.labels["severity"] for s in families["anvil_alerts_active"].samples}
    assert severities == {"high", "medium", "low"}

    assert api.post("/resume")[0] == 200
    assert proc.wait(timeout=60) == ExitCode.OK
    done = invoke_cli("status", "--json", "--config", str(config), cwd=config.parent)
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout)  # the run's last snapshot, as `anvil status --json` keeps it
    assert final["state"] == "finished" and final["job_time_s"]["count"] == N_JOBS
    assert final["call_latency_s"]["count"] == final["errors"]["api_calls"] >= N_JOBS
