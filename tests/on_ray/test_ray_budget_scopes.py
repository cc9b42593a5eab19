"""Budgets by scope on the Ray backend (docs/cost.md): `anvil run --backend ray` on the two-node
test cluster, the worker actors' calls held by the shared governor actor's scopes. The research
scope runs out and only its jobs stop (journaled, exit 3, `budget_scope`); support's all finish;
the scope's spend in the journal never passes its cap."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from anvil_cli.exitcodes import ExitCode
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import MODEL, anvil_cmd, cli_env, journal_query, write_config, write_jobs

from .conftest import LocalCluster

pytestmark = pytest.mark.ray

HANG_GUARD_S = 180.0
RESEARCH = "metadata.team=research"


def test_a_scope_runs_out_on_ray_and_stops_only_its_jobs(tmp_path: Path, ray_cluster: LocalCluster) -> None:
    cap = 5.5 * Pricer.from_overrides({}).worst_case_usd(MODEL, 30, 64)
    jobs = [
        {"id": f"{team}-{i}", "prompt": f"q {i}", "metadata": {"team": team}}
        for team in ("research", "support")
        for i in range(12)
    ]
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    env = {**cli_env(), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    with SimServer(SimConfig(seed=9)).start_thread() as sim:
        config = write_config(
            tmp_path / "anvil.yaml",
            sim.base_url,
            run={"backend": "ray"},
            ray={"address": ray_cluster.address, "worker_cpus": 1},
            budget={"scopes": {"metadata.team": {"research": cap}}},
            cache={"enabled": False},
        )
        argv = anvil_cmd("run", str(batch), "--config", str(config), "-q", "--json")
        done = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S, check=False
        )
    assert done.returncode == ExitCode.STOPPED, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["stop_reason"] == "budget_scope"
    state = tmp_path / ".anvil"
    rows = journal_query(state, "SELECT job_json, state, cost_usd FROM jobs")
    by_team: dict[str, list[tuple[str, float]]] = {"research": [], "support": []}
    for job, st, cost in rows:
        by_team[json.loads(str(job))["metadata"]["team"]].append((str(st), float(str(cost))))
    assert [s for s, _ in by_team["support"]] == ["succeeded"] * 12
    research = [s for s, _ in by_team["research"]]
    assert 0 < research.count("succeeded") < 12 and set(research) <= {"succeeded", "pending"}
    assert sum(c for _, c in by_team["research"]) <= cap
    events = journal_query(state, "SELECT data_json FROM events WHERE kind = 'budget_scope_exhausted'")
    assert events and json.loads(str(events[0][0]))["scope"] == RESEARCH
