"""Checked answers end to end: a real batch file with `output_schema:` and `checks:`, run by the
real engine (worker processes, the governor, the journal) against the simulator over HTTP. The
results file carries `output_json` and `checks`; every re-ask and judge is a paid call whose
cost reaches the journal as it is settled (the job's cost, and on a named endpoint its spend),
and the record tells the re-asks' and judges' costs apart."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from anvil_cli.config.load import load_settings
from anvil_cli.exitcodes import ExitCode
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.sim.config import EndpointSim
from tests.engine_support import (
    anvil_cmd,
    cli_env,
    journal_query,
    read_results,
    run_cli,
    run_inprocess,
    succeeded_jobs,
    write_config,
)
from tests.sim_fixtures import SimFactory, fixture_sim_factory  # noqa: F401

HAIKU = "claude-haiku-4-5"
SONNET = "claude-sonnet-4-6"
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer", "minimum": 0}},
    "required": ["city", "population"],
}
JOBS = [
    {"id": "fine", "prompt": "@sim{score=5} Which city?"},
    {"id": "reasked", "prompt": "@sim{invalid=1, score=5} Which city?"},
    {"id": "never", "prompt": "@sim{invalid=always} Which city?"},
    {"id": "graded-low", "prompt": "@sim{score=2} Which city?"},
    {  # its judge on Sonnet, which fails for good: the check fails, the job succeeds
        "id": "judge-down",
        "prompt": f"@sim{{score=5, status=500, for_model={SONNET}}} Which city?",
        "checks": [{"name": "strict", "judge": {"rubric": "Right?", "model": SONNET}}],
    },
]


def write_batch(path: Path) -> Path:
    batch = {
        "defaults": {
            "model": HAIKU,
            "max_tokens": 200,
            "output_schema": SCHEMA,
            "checks": [
                {"name": "mentions-city", "contains": "city"},
                {"name": "right", "judge": {"rubric": "Is the city right?"}},
            ],
        },
        "jobs": JOBS,
    }
    path.write_text(yaml.safe_dump(batch, sort_keys=False))
    return path


def journal_jobs(state: Path) -> dict[str, dict[str, Any]]:
    rows = journal_query(
        state, "SELECT job_json, cost_usd, usage_json, attempts_json, checks_json, seq FROM jobs"
    )
    return {
        json.loads(job)["id"]: {
            "cost_usd": cost,
            "usage": json.loads(usage) if usage else None,
            "log": json.loads(log) if log else [],
            "checks": json.loads(checks) if checks else None,
            "seq": seq,
        }
        for job, cost, usage, log, checks, seq in rows
    }


def run_checked(tmp_path: Path, sim: SimServer, **config: Any) -> tuple[Any, dict[str, dict[str, Any]], Path]:
    cfg = write_config(
        tmp_path / "anvil.yaml",
        sim.base_url,
        retries={"max_attempts": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.01},
        **config,
    )
    out = tmp_path / "out.jsonl"
    report = run_inprocess(cfg, write_batch(tmp_path / "batch.yaml"), out)
    results = {r["id"]: r for r in read_results(out)}
    return report, results, cfg


@pytest.mark.slow
def test_results_carry_parsed_answers_and_checks_and_the_journal_every_cost(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    sim = sim_factory()
    report, results, cfg = run_checked(tmp_path, sim)
    assert report.exit_code == ExitCode.JOBS_FAILED  # "never" failed; failed checks fail no job
    assert {k: r["status"] for k, r in results.items()} == {
        "fine": "succeeded",
        "reasked": "succeeded",
        "never": "failed",
        "graded-low": "succeeded",
        "judge-down": "succeeded",
    }
    fine = results["fine"]
    assert fine["output_json"] == json.loads(fine["output"]) and set(fine["output_json"]) >= {
        "city",
        "population",
    }
    assert fine["checks"]["passed"] is True and fine["checks"]["reasks"] == 0
    assert [c["name"] for c in fine["checks"]["results"]] == ["schema", "mentions-city", "right"]

    reasked = results["reasked"]["checks"]
    assert reasked["passed"] and reasked["reasks"] == 1 and reasked["reask_cost_usd"] > 0

    never = results["never"]
    assert never["error"]["type"] == "invalid_output" and never["output"]  # kept, to be seen
    assert never["checks"]["reasks"] == 2 and never["checks"]["judge_cost_usd"] == 0
    assert [c["name"] for c in never["checks"]["results"]] == ["schema"]
    assert never["error"]["message"] == never["checks"]["results"][0]["detail"]

    low = results["graded-low"]["checks"]
    assert not low["passed"] and [c["passed"] for c in low["results"]] == [True, True, False]
    assert low["results"][2]["value"] == 2

    down = results["judge-down"]["checks"]
    assert [c["name"] for c in down["results"]] == ["schema", "strict"]  # its own checks, not the defaults'
    assert not down["results"][1]["passed"] and "judge's call failed" in down["results"][1]["detail"]
    assert down["judge_cost_usd"] == 0  # its judge's calls failed: nothing paid

    # Every call's cost reached the journal as it was settled: the answer's own (its re-asks'
    # turns are in its usage) plus its judges'; the results file says the same.
    pricer = Pricer.from_settings(load_settings(cfg, env={}))
    journal = journal_jobs(tmp_path / ".anvil")
    for name, row in journal.items():
        record = row["checks"]
        answer_usd = pricer.cost_usd(HAIKU, row["usage"])
        assert row["cost_usd"] == pytest.approx(answer_usd + record["judge_cost_usd"]), name
        assert results[name]["cost_usd"] == pytest.approx(row["cost_usd"], abs=1e-8)
        assert record == results[name]["checks"]
        purposes = [(a.get("purpose"), a["status_code"]) for a in row["log"]]
        assert purposes.count(("reask", 200)) == record["reasks"]
        assert results[name]["attempts"] == len(row["log"])
    assert [(a.get("purpose"), a["model"]) for a in journal["fine"]["log"]] == [
        (None, HAIKU),
        ("judge", HAIKU),
    ]
    assert [(a.get("purpose"), a["model"], a["status_code"]) for a in journal["judge-down"]["log"]] == [
        (None, HAIKU, 200),
        ("judge", SONNET, 500),
        ("judge", SONNET, 500),
    ]


@pytest.mark.slow
def test_re_asks_and_judges_are_spent_on_their_named_endpoint(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    sim = sim_factory(endpoints={"a": EndpointSim(provider="anthropic")})
    endpoints = [
        {"name": "a", "provider": "anthropic", "api_key_env": "KEY_A", "base_url": sim.endpoint_url("a")}
    ]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KEY_A", "sk-a")
        _, results, _ = run_checked(tmp_path, sim, endpoints=endpoints)
    spend = journal_query(
        tmp_path / ".anvil", "SELECT seq, cost_usd, calls FROM endpoint_spend WHERE endpoint = 'a'"
    )
    by_seq = {seq: (cost, calls) for seq, cost, calls in spend}
    journal = journal_jobs(tmp_path / ".anvil")
    for name, row in journal.items():
        paid = [a for a in row["log"] if a["status_code"] == 200]
        cost, calls = by_seq[row["seq"]]
        assert calls == len(paid) and cost == pytest.approx(row["cost_usd"]), name
        assert all(a.get("endpoint") == "a" for a in row["log"]), name
    assert results["reasked"]["endpoint"] == "a" and results["reasked"]["checks"]["reasks"] == 1


def _wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Poll a condition on real progress (bounded), never a fixed sleep."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)  # sleep-ok: polling for real progress, bounded by a deadline


@pytest.mark.slow
def test_ctrl_c_amid_re_asks_and_judges_then_resume_checks_each_job_once(tmp_path: Path) -> None:
    """Stopped while jobs are being re-asked and judged, then resumed: each job has one result
    with its checks, and every call paid in either run is in the journal once (a job given up
    mid-check runs again from its start: its earlier calls stay paid and journaled)."""
    n_jobs = 24
    jobs = [
        {"id": f"j{i:02d}", "prompt": f"@sim{{invalid={i % 2}, score=5}} Which city? {i}"}
        for i in range(n_jobs)
    ]
    batch = tmp_path / "batch.yaml"
    batch.write_text(
        yaml.safe_dump(
            {
                "defaults": {
                    "model": HAIKU,
                    "max_tokens": 100,
                    "output_schema": SCHEMA,
                    "checks": [{"name": "right", "judge": {"rubric": "Is the city right?"}}],
                },
                "jobs": jobs,
            },
            sort_keys=False,
        )
    )
    with SimServer(SimConfig(latency_ms=120, seed=9)).start_thread() as sim:
        cfg = write_config(
            tmp_path / "anvil.yaml",
            sim.base_url,
            scaling={"workers": 2, "max_agents": 8, "max_concurrent_jobs": 8},
        )
        state = tmp_path / ".anvil"
        proc = subprocess.Popen(
            anvil_cmd("run", str(batch), "--config", str(cfg)),
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_for(lambda: succeeded_jobs(state) >= 8)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == ExitCode.INTERRUPTED, err
        assert succeeded_jobs(state) < n_jobs
        out = tmp_path / "out.jsonl"
        resumed = run_cli("run", str(batch), "--config", str(cfg), "-o", str(out), cwd=tmp_path, timeout=120)
        assert resumed.returncode == ExitCode.OK, resumed.stderr
        stats = sim.stats()
    results = read_results(out)
    assert sorted(r["id"] for r in results) == [j["id"] for j in jobs]
    assert all(r["status"] == "succeeded" and r["checks"]["passed"] for r in results)
    assert all(r["checks"]["reasks"] == int(r["id"][1:]) % 2 for r in results)
    # every call the simulator answered, in either run, was journaled once: the same money
    pricer = Pricer.from_settings(load_settings(cfg, env={}))
    billed = sum(
        pricer.cost_usd(model, {"input_tokens": m["input_tokens"], "output_tokens": m["output_tokens"]})
        for model, m in stats["by_model"].items()
    )
    journaled = journal_query(state, "SELECT SUM(cost_usd) FROM jobs")[0][0]
    assert journaled == pytest.approx(billed, rel=1e-6)
    assert sum(r["cost_usd"] for r in results) == pytest.approx(billed, rel=1e-6)
