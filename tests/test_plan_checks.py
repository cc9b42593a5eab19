"""`anvil plan` prices checking: judges (the worker's judge request, estimated) and re-asks
(an assumed invalid share, or what a sample did), in the totals and in the pools' duration."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from anvil_cli.config.load import load_settings
from anvil_cli.config.settings import Settings
from anvil_cli.engine.journal.kind import SAMPLES_DIR
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.loader import load_batch
from anvil_cli.plan.checks import JUDGE_OUTPUT_TOKENS, TYPICAL_SCHEMA_ERROR, assumed_shares, measured_shares
from anvil_cli.plan.estimate import OutputModel, make_plan
from anvil_cli.plan.render import render
from anvil_cli.plan.sample import batch_line
from anvil_cli.policy.checks.judge import JUDGE_MAX_TOKENS, judge_request, question_of
from anvil_cli.policy.checks.schema import reask_message
from anvil_cli.policy.checks.spec import CheckSpec
from anvil_cli.policy.tokens import estimate_input_tokens, text_tokens
from tests.engine_support import anvil_cmd, cli_env, run_cli

HAIKU, SONNET = "claude-haiku-4-5", "claude-sonnet-4-6"
HAIKU_IN, HAIKU_OUT = 1.0, 5.0  # $/M tokens (anvil_cli/data/prices.yaml)
SONNET_IN, SONNET_OUT = 3.0, 15.0
JUDGE: dict[str, Any] = {
    "name": "quality",
    "kind": "judge",
    "rubric": "Is the answer correct and complete?",
    "model": None,
    "scale": [1, 5],
    "pass_at": 4,
}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer briefly. " * 4}]


def _jobs(n: int, *, schema: bool = False, judge: bool = True, model: str = SONNET) -> list[Job]:
    return [
        Job(
            id=f"j{i}",
            seq=i,
            messages=MESSAGES,
            model=model,
            max_tokens=400,
            system="Be terse.",
            output_schema=SCHEMA if schema else None,
            checks=(JUDGE,) if judge else (),
        )
        for i in range(n)
    ]


def _plan(jobs: list[Job], settings: Settings | None = None, **kw: Any) -> Any:
    return make_plan(jobs, settings or Settings(), None, OutputModel(latency_s=1.0, mean_tokens=120), **kw)


def test_a_judge_is_the_real_judge_request_with_an_answer_of_the_expected_length() -> None:
    plan = _plan(_jobs(1000))
    (judges,) = plan.checks["judges"]
    assert judges["model"] == HAIKU  # checks.judge_model, as the check names none
    assert judges["calls"] == 1000
    # the request a worker sends, quoting an answer of the expected 120 tokens (480 ASCII chars)
    request = judge_request(CheckSpec.from_json(JUDGE), HAIKU, question_of(MESSAGES, "Be terse."), "a" * 480)
    per_call = estimate_input_tokens(request)
    assert judges["input_tokens"] == 1000 * per_call
    assert judges["expected_output_tokens"] == 1000 * JUDGE_OUTPUT_TOKENS
    expected = 1000 * (per_call * HAIKU_IN + JUDGE_OUTPUT_TOKENS * HAIKU_OUT) / 1e6
    assert judges["expected_usd"] == pytest.approx(expected, abs=1e-6)
    # worst case: the answer quoted at max_tokens, input as 1-hour cache writes, a full reply
    empty = estimate_input_tokens(
        judge_request(CheckSpec.from_json(JUDGE), HAIKU, question_of(MESSAGES, "Be terse."), "")
    )
    worst = 1000 * ((empty + 400) * 2 * HAIKU_IN + JUDGE_MAX_TOKENS * HAIKU_OUT) / 1e6
    assert judges["worst_usd"] == pytest.approx(worst, abs=1e-6)
    # in the plan's totals, beside the jobs' own cost
    (m,) = plan.models
    assert plan.expected_usd == pytest.approx(m.expected_usd + plan.checks["expected_usd"])
    assert plan.worst_usd == pytest.approx(m.worst_usd + plan.checks["worst_usd"])
    assert plan.checks["reasks"] is None  # no output schema


def test_a_judge_naming_its_model_is_priced_on_it() -> None:
    job = _jobs(1)[0]
    own = Job(**{**_job_fields(job), "checks": ({**JUDGE, "model": SONNET},)})
    plan = _plan([own])
    (judges,) = plan.checks["judges"]
    assert judges["model"] == SONNET
    tokens = judges["input_tokens"]
    assert judges["expected_usd"] == pytest.approx((tokens * SONNET_IN + 60 * SONNET_OUT) / 1e6, abs=1e-9)


def _job_fields(job: Job) -> dict[str, Any]:
    return {f: getattr(job, f) for f in job.__dataclass_fields__}


def test_reasks_expected_from_the_assumed_share_and_worst_case_at_max_reasks() -> None:
    settings = load_settings(env={"ANVIL_PLAN__EXPECTED_REASK_RATE": "0.2", "ANVIL_CHECKS__MAX_REASKS": "2"})
    assert settings.plan.expected_reask_rate == 0.2
    plan = _plan(_jobs(100, schema=True, judge=False), settings)
    r = plan.checks["reasks"]
    assert r["source"] == "assumed" and r["invalid_share"] == 0.2
    assert r["reasked_at_least"] == pytest.approx([0.2, 0.04])
    assert r["expected_calls"] == pytest.approx(100 * 0.24)
    assert r["max_calls"] == 200
    base = estimate_input_tokens(_jobs(1)[0].request(SONNET))
    turn = text_tokens(reask_message(SCHEMA, TYPICAL_SCHEMA_ERROR)["content"]) + 8
    inp = 100 * (0.2 * (base + 120 + turn) + 0.04 * (base + 2 * (120 + turn)))
    assert r["input_tokens"] == pytest.approx(inp, abs=0.1)
    assert r["expected_output_tokens"] == pytest.approx(100 * 0.24 * 120)
    assert r["expected_usd"] == pytest.approx(
        (inp * SONNET_IN + 100 * 0.24 * 120 * SONNET_OUT) / 1e6, abs=1e-6
    )
    # worst case: both re-asks of every job, each answer max_tokens long
    worst_in = [round(base + i * (400 + turn)) for i in (1, 2)]
    worst = 100 * sum(w * 2 * SONNET_IN + 400 * SONNET_OUT for w in worst_in) / 1e6
    assert r["worst_usd"] == pytest.approx(worst, abs=1e-6)
    (m,) = plan.models
    assert plan.worst_usd == pytest.approx(m.worst_usd + worst, abs=1e-6)
    assert plan.checks["judges"] == []


def test_no_reasks_allowed_costs_nothing_extra() -> None:
    settings = Settings.model_validate({"checks": {"max_reasks": 0}})
    plan = _plan(_jobs(10, schema=True, judge=False), settings)
    r = plan.checks["reasks"]
    assert (r["expected_calls"], r["max_calls"], r["expected_usd"], r["worst_usd"]) == (0, 0, 0, 0)
    assert plan.pools[0].requests == 10


def test_a_sample_measures_the_reask_share() -> None:
    assert measured_shares([0, 1, 0, 2, 0], 2) == [0.4, 0.2]
    assert assumed_shares(0.05, 3) == pytest.approx([0.05, 0.0025, 0.000125])
    plan = _plan(_jobs(10, schema=True, judge=False), sampled_reasks=[0, 1, 0, 0, 2])
    r = plan.checks["reasks"]
    assert r["source"] == "sample" and r["sampled_jobs"] == 5 and r["invalid_share"] is None
    assert r["expected_calls"] == pytest.approx(10 * (0.4 + 0.2))
    text = "\n".join(render(plan))
    assert "as the sample's 5 schema job(s) were re-asked" in text


def test_checks_are_calls_through_the_same_limits() -> None:
    settings = Settings.model_validate(
        {"rate_limits": {"default": {"requests_per_minute": 600, "burst_size": 10}}}
    )
    plain = _plan(_jobs(100, judge=False), settings)
    judged = _plan(_jobs(100, schema=True), settings)
    assert [p.pool for p in plain.pools] == ["default:sonnet"]
    pools = {p.pool: p for p in judged.pools}
    assert pools["default:haiku"].requests == 100  # the judges
    assert pools["default:sonnet"].requests == 105  # answers and ~5% re-asked
    assert pools["default:sonnet"].input_tokens > plain.pools[0].input_tokens
    # 105 requests at 10/s after a burst of 10: 9.5 s + one call (the haiku pool needs 9 s)
    assert judged.duration_s == pytest.approx(10.5) and plain.duration_s == pytest.approx(10.0)


def test_lines_and_json_of_a_plan_with_checks_and_without() -> None:
    plain = _plan(_jobs(3, judge=False))
    assert "checks" not in plain.as_dict()  # batches without checks: the JSON as it was
    assert not any("judge" in line or "re-ask" in line for line in render(plain))
    plan = _plan(_jobs(3, schema=True))
    data = plan.as_dict()
    assert data["checks"]["judge_output"] == "assumed"
    assert "loads" not in data["checks"]
    lines = render(plan)
    assert any(
        line.startswith("  judges on claude-haiku-4-5: 3 call(s)") and "(60 per grade, assumed)" in line
        for line in lines
    )
    assert any(
        line.startswith("  re-asks: 3 job(s) with an output schema; ~0.2 re-ask(s) expected (5% of answers")
        for line in lines
    )
    cost = next(line for line in lines if line.startswith("cost:"))
    assert f"incl. checks ${data['checks']['expected_usd']:.4f}" in cost


def _batch_file(path: Path, n: int, *, schema: bool, invalid_every: int = 0) -> Path:
    """A YAML batch of `n` jobs with a judge (and an output schema); every `invalid_every`-th
    job's first answer is invalid for its schema (the simulator's `@sim{invalid=1}`)."""
    lines = [
        "defaults:",
        f"  model: {HAIKU}",
        "  max_tokens: 300",
        "  checks:",
        "    - judge: Is the answer a correct and complete answer to the question?",
    ]
    if schema:
        lines.append(f"  output_schema: {json.dumps(SCHEMA)}")
    lines.append("jobs:")
    for i in range(n):
        bad = " @sim{invalid=1}" if invalid_every and i % invalid_every == 0 else ""
        lines.append(f'  - {{id: q{i}, prompt: "Question {i}: explain item {i} in two sentences.{bad}"}}')
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(path: Path, **checks: Any) -> Path:
    cfg = {
        "rate_limits": {"default": {"requests_per_minute": 60000, "burst_size": 1000}},
        "scaling": {"workers": 2, "max_agents": 40, "max_concurrent_jobs": 40, "min_agents": 1},
        "checks": checks,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def _journal_records(state_dir: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(state_dir / "journal.sqlite") as db:
        return [
            json.loads(r[0]) for r in db.execute("SELECT checks_json FROM jobs WHERE checks_json IS NOT NULL")
        ]


JUDGE_TOLERANCE = 0.05  # the plan's judge cost against the run's (benchmark 11 allows 10%)


@pytest.mark.slow
def test_the_judges_cost_what_the_plan_said(tmp_path: Path) -> None:
    batch = _batch_file(tmp_path / "judged.yaml", 60, schema=False)
    config = _config(tmp_path / "anvil.yaml")
    planned = run_cli("plan", str(batch), "-c", str(config), "--simulate", "--json", cwd=tmp_path)
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    (judges,) = plan["checks"]["judges"]
    assert judges["calls"] == 60 and plan["checks"]["judge_output"] == "simulator"
    ran = run_cli("run", str(batch), "-c", str(config), "--simulate", "--json", "-q", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    records = _journal_records(tmp_path / ".anvil")
    assert len(records) == 60
    actual = sum(r["judge_cost_usd"] for r in records)
    assert actual > 0
    assert judges["expected_usd"] == pytest.approx(actual, rel=JUDGE_TOLERANCE)
    assert judges["worst_usd"] >= actual


REASK_TOLERANCE = 0.10


@pytest.mark.slow
def test_reasks_cost_what_the_plan_said(tmp_path: Path) -> None:
    batch = _batch_file(tmp_path / "schema.yaml", 40, schema=True, invalid_every=5)  # 8 of 40 invalid first
    config = _config(tmp_path / "anvil.yaml", max_reasks=1)
    env = {**cli_env(), "ANVIL_PLAN__EXPECTED_REASK_RATE": "0.2"}
    planned = _cli(tmp_path, env, "plan", str(batch), "-c", str(config), "--simulate", "--json")
    r = json.loads(planned)["checks"]["reasks"]
    assert (r["jobs"], r["expected_calls"], r["max_calls"]) == (40, 8.0, 40)
    _cli(tmp_path, env, "run", str(batch), "-c", str(config), "--simulate", "--json", "-q")
    records = _journal_records(tmp_path / ".anvil")
    assert sum(x["reasks"] for x in records) == 8 and all(x["results"][0]["passed"] for x in records)
    actual = sum(x["reask_cost_usd"] for x in records)
    assert r["expected_usd"] == pytest.approx(actual, rel=REASK_TOLERANCE)
    assert r["worst_usd"] >= actual


@pytest.mark.slow
def test_a_sample_measures_the_share_of_answers_reasked(tmp_path: Path) -> None:
    batch = _batch_file(tmp_path / "schema.yaml", 40, schema=True, invalid_every=5)
    config = _config(tmp_path / "anvil.yaml", max_reasks=1)
    out = _cli(
        tmp_path, cli_env(), "plan", str(batch), "-c", str(config), "--simulate", "--json", "--sample", "10"
    )
    plan = json.loads(out)
    (sample_file,) = (tmp_path / ".anvil" / SAMPLES_DIR).glob("*.jsonl")
    sampled = [json.loads(line) for line in sample_file.read_text().splitlines()]
    invalid = sum("@sim{invalid=1}" in json.dumps(s["messages"]) for s in sampled)
    r = plan["checks"]["reasks"]
    assert r["source"] == "sample" and r["sampled_jobs"] == plan["sample"]["schema_jobs"] == 10
    assert plan["sample"]["reasks"] == invalid and r["reasked_at_least"] == [invalid / 10]
    assert r["expected_calls"] == pytest.approx(40 * invalid / 10)
    # the sample's jobs kept their schema and checks: each was judged too
    records = _journal_records(tmp_path / ".anvil")
    assert len(records) == 10 and all(len(x["results"]) == 2 for x in records)
    # ... and its judges' grades were measured: the plan prices each grade at their mean length
    grades = [x["results"][1]["output_tokens"] for x in records]
    assert all(isinstance(g, int) and g > 0 for g in grades)
    (judges,) = plan["checks"]["judges"]
    assert plan["checks"]["judge_output"] == "sample"
    assert judges["expected_output_tokens"] == pytest.approx(40 * sum(grades) / len(grades), abs=0.05)


def _cli(cwd: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(anvil_cmd(*args), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_sampled_job_keeps_its_schema_and_every_form_of_check(tmp_path: Path) -> None:
    src = tmp_path / "b.yaml"
    src.write_text(
        yaml.safe_dump(
            {
                "defaults": {
                    "model": HAIKU,
                    "max_tokens": 100,
                    "output_schema": SCHEMA,
                    "checks": [
                        {"contains": "Paris"},
                        {"equals": "x", "ignore_case": True, "name": "eq"},
                        {"regex": "^P"},
                        {"json_path": "$.answer", "in": ["a", "b"]},
                        {"json_path": "$.n", "range": [1, None]},
                        {"json_path": "$.n", "equals": 3},
                        {"length": {"max": 50, "unit": "words"}},
                        {"judge": "Is it right?"},
                        {"judge": {"rubric": "good?", "model": SONNET, "scale": [0, 10], "pass_at": 7}},
                    ],
                },
                "jobs": [{"id": "a", "prompt": "capital of France?"}],
            }
        )
    )
    (job,) = load_batch(src)
    line = tmp_path / "sample.jsonl"
    line.write_text(batch_line(job) + "\n")
    (back,) = load_batch(line)
    assert back.checks == job.checks and len(back.checks) == 9
    assert back.output_schema == job.output_schema
