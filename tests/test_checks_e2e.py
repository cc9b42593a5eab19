"""Checked answers end to end: a real batch file with `output_schema:` and `checks:`, run by the
real engine (worker processes, the governor, the journal) against the simulator over HTTP. The
results file carries `output_json` and `checks`; every re-ask and judge is a paid call whose
cost reaches the journal as it is settled (the job's cost, and on a named endpoint its spend),
and the record tells the re-asks' and judges' costs apart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from anvil_cli.config.load import load_settings
from anvil_cli.exitcodes import ExitCode
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.sim import SimServer
from anvil_cli.sim.config import EndpointSim
from tests.engine_support import journal_query, read_results, run_inprocess, write_config
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
