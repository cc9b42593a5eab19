"""`anvil check RUN [--batch FILE] [--json] [--fail-under RATE]`: a run's stored answers checked
again without asking the model; the new records written back to the journal."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from anvil_cli.jobs.job import Job
from anvil_cli.policy.checks.judge import read_judgement
from anvil_cli.policy.checks.record import CheckRecord
from anvil_cli.policy.checks.spec import CheckSpec
from anvil_cli.session.recheck import NOT_JUDGED, recheck_record
from tests.engine_support import MODEL, invoke_cli, run_cli

HAIKU = "claude-haiku-4-5"
JUDGE: dict[str, Any] = {
    "name": "quality",
    "kind": "judge",
    "rubric": "Is it right?",
    "model": None,
    "scale": [1, 5],
    "pass_at": 4,
}
HAS_SIM: dict[str, Any] = {"name": "has-sim", "kind": "contains", "values": ["sim:"], "ignore_case": False}


def _job(*checks: dict[str, Any], schema: dict[str, Any] | None = None) -> Job:
    return Job(
        id="a",
        seq=0,
        messages=[{"role": "user", "content": "q"}],
        model=MODEL,
        max_tokens=50,
        output_schema=schema,
        checks=checks,
    )


def _graded(score: int) -> CheckRecord:
    """What a worker records for a job graded `score` by its judge (the real reader of replies)."""
    judged = read_judgement(CheckSpec.from_json(JUDGE), HAIKU, json.dumps({"score": score, "reason": "ok"}))
    return CheckRecord((judged,), judge_cost_usd=0.0003)


def test_an_unchanged_judge_keeps_its_grade_and_a_new_pass_at_applies_to_it() -> None:
    then = _job(JUDGE)
    record, not_judged = recheck_record(then, then, "sim: an answer", _graded(4), HAIKU)
    assert not_judged == 0 and record is not None
    assert record == _graded(4)  # its grade, its cost
    stricter = _job({**JUDGE, "pass_at": 5})
    record, not_judged = recheck_record(then, stricter, "sim: an answer", _graded(4), HAIKU)
    assert record is not None and not_judged == 0
    (result,) = record.results
    assert (result.passed, result.value, result.score) == (False, 4.0, 0.75)
    assert record.judge_cost_usd == 0.0003


def test_a_changed_or_new_judge_is_not_judged() -> None:
    then = _job(JUDGE)
    for changed in (
        {**JUDGE, "rubric": "Is it short?"},
        {**JUDGE, "model": "claude-sonnet-4-6"},
        {**JUDGE, "scale": [0, 10], "pass_at": 7},
        {**JUDGE, "name": "another"},
    ):
        record, not_judged = recheck_record(then, _job(HAS_SIM, changed), "sim: x", _graded(5), HAIKU)
        assert not_judged == 1 and record is not None
        kept, judged = record.results
        assert kept.passed and kept.name == "has-sim"
        assert (judged.kind, judged.passed, judged.detail) == ("judge", False, NOT_JUDGED)
    # the default judge model changed since the run: the judge is not the same one
    _, not_judged = recheck_record(then, then, "x", _graded(5), "claude-sonnet-4-6")
    assert not_judged == 1


def test_an_answer_off_its_new_schema_is_checked_no_further() -> None:
    schema = {"type": "object", "required": ["answer"]}
    record, _ = recheck_record(_job(HAS_SIM), _job(HAS_SIM, schema=schema), "sim: not json", None, HAIKU)
    assert record is not None
    (only,) = record.results
    assert (only.name, only.passed) == ("schema", False)
    record, _ = recheck_record(_job(HAS_SIM), _job(HAS_SIM, schema=schema), '{"answer": "sim:"}', None, HAIKU)
    assert record is not None and [r.name for r in record.results] == ["schema", "has-sim"] and record.passed
    none, _ = recheck_record(_job(HAS_SIM), _job(), "x", None, HAIKU)
    assert none is None  # no checks any more


def _batch(path: Path, checks: list[dict[str, Any]], n: int = 20) -> Path:
    data = {
        "defaults": {"model": MODEL, "max_tokens": 64, "checks": checks},
        "jobs": [{"id": f"q{i}", "prompt": f"question {i}"} for i in range(n)],
    }
    path.write_text(yaml.safe_dump(data))
    return path


def _records(tmp_path: Path) -> dict[str, Any]:
    with sqlite3.connect(tmp_path / ".anvil" / "journal.sqlite") as db:
        return {i: json.loads(c) if c else None for i, c in db.execute("SELECT id, checks_json FROM jobs")}


@pytest.mark.slow
def test_check_a_run_again_with_its_own_checks_and_with_changed_ones(tmp_path: Path) -> None:
    strict = _batch(tmp_path / "strict.yaml", [{"contains": "sim:"}, {"regex": "^sim:[0-7]"}])
    ran = run_cli("run", str(strict), "--simulate", "--json", "-q", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    before = _records(tmp_path)
    passed = sum(r["passed"] for r in before.values())
    assert 0 < passed < 20  # the digest's first hex digit decides

    again = invoke_cli("check", "--json", cwd=tmp_path)  # the latest run, its own checks
    assert again.returncode == 0, again.stderr
    out = json.loads(again.stdout)
    assert (out["run_id"], out["rechecked"], out["changed"], out["not_judged"]) == (run_id, 20, 0, 0)
    assert (out["checks"]["checked"], out["checks"]["passed"]) == (20, passed)
    assert _records(tmp_path) == before  # the same checks give the same records

    loose = _batch(tmp_path / "loose.yaml", [{"contains": "sim:"}, {"regex": "^sim:"}])
    looser = invoke_cli(
        "check", run_id[:8], "--batch", str(loose), "--json", "--fail-under", "1", cwd=tmp_path
    )
    assert looser.returncode == 0, looser.stderr
    out = json.loads(looser.stdout)
    assert out["changed"] == 20 - passed and out["checks"]["pass_rate"] == 1.0
    assert out["fail_under"]["message"] == "pass rate 100.0% >= 100.0%"
    assert all(r["passed"] for r in _records(tmp_path).values())
    assert len(out["flips"]) == 20 - passed and {f["after"] for f in out["flips"]} == {"passed"}

    gated = invoke_cli("check", run_id, "--batch", str(strict), "--fail-under", "0.99", cwd=tmp_path)
    assert gated.returncode == 1, gated.stderr
    rate = passed / 20
    assert f"pass rate {rate:.1%} ({passed} of 20 checked)" in gated.stdout
    assert f"pass rate {rate:.1%} < 99.0%: exit 1" in gated.stdout
    assert _records(tmp_path) == before

    judged = _batch(tmp_path / "judged.yaml", [{"contains": "sim:"}, {"judge": "Is it right?"}])
    out = json.loads(invoke_cli("check", "--batch", str(judged), "--json", cwd=tmp_path).stdout)
    assert out["not_judged"] == 20 and out["checks"]["passed"] == 0
    record = _records(tmp_path)["q0"]
    assert record["results"][1]["detail"] == NOT_JUDGED
    with sqlite3.connect(tmp_path / ".anvil" / "journal.sqlite") as db:
        (events,) = db.execute("SELECT COUNT(*) FROM events WHERE kind = 'rechecked'").fetchone()
        states = {s for (s,) in db.execute("SELECT DISTINCT state FROM jobs")}
    assert events == 4 and states == {"succeeded"}  # states are never changed


def test_check_refuses_what_it_cannot_check(tmp_path: Path) -> None:
    none = invoke_cli("check", cwd=tmp_path)
    assert none.returncode == 2 and "no journal" in none.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"jobs": [{"id": "a", "prompt": "p", "model": MODEL, "checks": [{"nope": 1}]}]})
    )
    done = invoke_cli("check", "--batch", str(bad), cwd=tmp_path)
    assert done.returncode == 2 and "checks[0]" in done.stderr, done.stderr
