"""OpenTelemetry on the Ray backend (docs/telemetry.md): `anvil run --backend ray` on the two-node
test cluster with `OTEL_EXPORTER_OTLP_ENDPOINT` set only in the `anvil` process (the cluster was
started without it), pointing at the real OTLP/HTTP receiver of tests/otel_support.py. The
worker actors make the spans: every job's arrive, one trace per job, linked to the driver's run
span, its tokens and cost the journal's."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import anvil_cmd, cli_env, journal_query, write_config, write_jsonl_batch
from tests.otel_support import Receiver, by_job, need_otel

from .conftest import LocalCluster

pytestmark = pytest.mark.ray

HANG_GUARD_S = 180.0
JOBS = 16


def test_each_job_on_ray_actors_is_one_trace_with_the_journals_figures(
    tmp_path: Path, ray_cluster: LocalCluster
) -> None:
    need_otel()
    assert not any(k.startswith("OTEL_") for k in os.environ)  # the cluster's environment has none
    receiver = Receiver()
    batch = write_jsonl_batch(
        tmp_path / "b.jsonl", [f"@sim{{fail=500x1}} t{i}" if i % 2 else f"t{i}" for i in range(JOBS)]
    )
    env = {
        **cli_env(),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    try:
        with SimServer(SimConfig(seed=8)).start_thread() as sim:
            config = write_config(
                tmp_path / "anvil.yaml",
                sim.base_url,
                run={"backend": "ray"},
                ray={"address": ray_cluster.address, "worker_cpus": 1},
            )
            argv = anvil_cmd("run", str(batch), "--config", str(config), "-q", "--json")
            done = subprocess.run(
                argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S, check=False
            )
        assert done.returncode == ExitCode.OK, done.stderr[-2000:]
    finally:
        receiver.close()
    rows = journal_query(
        tmp_path / ".anvil", "SELECT job_json, cost_usd, usage_json, attempts_json FROM jobs"
    )
    journal: dict[str, dict[str, Any]] = {
        json.loads(str(job))["id"]: {
            "cost_usd": cost,
            "usage": json.loads(str(usage)),
            "calls": len(json.loads(str(log))),
        }
        for job, cost, usage, log in rows
    }
    hosts = journal_query(tmp_path / ".anvil", "SELECT data_json FROM events WHERE kind = 'worker_started'")
    assert len(hosts) >= 2  # more than one actor made spans

    (run,) = [s for s in receiver.spans if s["name"] == "anvil run b.jsonl"]
    jobs = by_job(receiver.spans)
    assert set(jobs) == set(journal) and len(journal) == JOBS
    assert len({spans[0]["trace_id"] for spans in jobs.values()}) == JOBS  # one trace each
    for job_id, spans in jobs.items():
        (root,) = [s for s in spans if s["name"] == f"invoke_agent {job_id}"]
        assert root["parent"] == "" and root["links"] == [(run["trace_id"], run["span_id"])]
        assert all(s["parent"] == root["span_id"] for s in spans if s is not root)
        chats = [s["attributes"] for s in spans if s["name"].startswith("chat ")]
        assert len(chats) == journal[job_id]["calls"]  # the failed call too
        answered = [a for a in chats if "error.type" not in a]
        usage = journal[job_id]["usage"]
        assert sum(a["gen_ai.usage.input_tokens"] for a in answered) == usage["input_tokens"]
        assert sum(a["gen_ai.usage.output_tokens"] for a in answered) == usage["output_tokens"]
        cost = sum(a.get("gen_ai.usage.cost.amount", 0.0) for a in chats)
        assert cost == pytest.approx(journal[job_id]["cost_usd"])
        assert root["attributes"]["gen_ai.usage.cost.amount"] == pytest.approx(journal[job_id]["cost_usd"])
