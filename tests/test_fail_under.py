"""`anvil run --fail-under RATE` (`checks.fail_under`, `ANVIL_CHECKS__FAIL_UNDER`): once the run
has finished, exit 1 when the pass rate of its answers' checks is lower (a CI gate)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml

from anvil_cli.engine.journal.store import JobResult, Journal
from anvil_cli.exitcodes import ExitCode
from anvil_cli.jobs.loader import load_batch
from anvil_cli.policy.checks.record import CheckRecord, CheckResult
from anvil_cli.session.finish import pass_rate_gate
from tests.engine_support import MODEL, anvil_cmd, cli_env, run_cli, write_jsonl_batch


def _record(passed: bool) -> CheckRecord:
    return CheckRecord((CheckResult("has-paris", "contains", passed, 1.0 if passed else 0.0),))


def _journal_with(tmp_path: Path, outcomes: list[tuple[bool, CheckRecord | None]]) -> tuple[Journal, str]:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(len(outcomes))])
    journal = Journal.open(tmp_path / ".anvil")
    run_id = journal.create_run(str(batch), "sha", load_batch(batch))
    for seq, (succeeded, record) in enumerate(outcomes):
        journal.record_result(run_id, JobResult(seq, succeeded, MODEL, 1, output="x", checks=record))
    return journal, run_id


def test_the_gate_reads_the_pass_rate_from_the_journal(tmp_path: Path) -> None:
    # 3 of 4 checked jobs pass; a failed job with a record does not; a job without one is not counted
    outcomes = [(True, _record(True)), (True, _record(True)), (True, _record(False)), (False, _record(True))]
    journal, run_id = _journal_with(tmp_path, [*outcomes, (True, None), (True, _record(True))])
    with journal:
        gate = pass_rate_gate(journal, run_id, 0.8)
        assert (gate["checked"], gate["passed"], gate["pass_rate"], gate["below"]) == (5, 3, 0.6, True)
        assert gate["message"] == "pass rate 60.0% < 80.0%: exit 1"
        at = pass_rate_gate(journal, run_id, 0.6)
        assert not at["below"] and at["message"] == "pass rate 60.0% >= 60.0%"


def test_no_checked_answer_leaves_the_gate_unapplied(tmp_path: Path) -> None:
    journal, run_id = _journal_with(tmp_path, [(True, None), (False, None)])
    with journal:
        gate = pass_rate_gate(journal, run_id, 0.95)
    assert gate["pass_rate"] is None and not gate["below"]
    assert gate["message"] == "no answer was checked: --fail-under 95.0% not applied"


def test_exit_1_is_documented_for_the_gate() -> None:
    assert ExitCode.CHECKS_BELOW == 1 == ExitCode.JOBS_FAILED
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "or the pass rate of their checks is under `--fail-under`" in readme


def test_a_run_without_checks_is_not_gated_and_says_so(tmp_path: Path) -> None:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["one", "two"])
    done = run_cli("run", str(batch), "--simulate", "--fail-under", "0.95", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["fail_under"]["message"] == "no answer was checked: --fail-under 95.0% not applied"
    assert summary["exit_code"] == 0


def test_a_rate_out_of_range_is_bad_input(tmp_path: Path) -> None:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["one"])
    done = run_cli("run", str(batch), "--simulate", "--fail-under", "95", cwd=tmp_path)
    assert done.returncode == 2 and "checks.fail_under" in done.stderr, done.stderr
    assert not (tmp_path / ".anvil" / "journal.sqlite").exists()
    env = {**cli_env(), "ANVIL_CHECKS__FAIL_UNDER": "1.5"}
    done = subprocess.run(
        anvil_cmd("run", str(batch), "--simulate"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "checks.fail_under" in done.stderr, done.stderr


def _checked_batch(path: Path, n: int = 20) -> Path:
    data = {
        "defaults": {
            "model": MODEL,
            "max_tokens": 64,
            "checks": [{"contains": "sim:"}, {"regex": "^sim:[0-7]"}],
        },
        "jobs": [{"id": f"q{i}", "prompt": f"question {i}"} for i in range(n)],
    }
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_a_run_under_its_gate_exits_1_and_says_so(tmp_path: Path) -> None:
    batch = _checked_batch(tmp_path / "b.yaml")
    done = run_cli("run", str(batch), "--simulate", "--fail-under", "0.99", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    with sqlite3.connect(tmp_path / ".anvil" / "journal.sqlite") as db:
        records = [json.loads(c) for (c,) in db.execute("SELECT checks_json FROM jobs")]
        (summary,) = db.execute("SELECT summary_json FROM runs").fetchone()
    passed = sum(r["passed"] for r in records)
    assert 0 < passed < 20
    assert f"pass rate {passed / 20:.1%} < 99.0%: exit 1" in done.stdout
    gate = json.loads(summary)["fail_under"]
    assert (gate["checked"], gate["passed"], gate["below"]) == (20, passed, True)
    assert json.loads(summary)["exit_code"] == 1
    # the same run resumed with a gate it meets (from the environment): exit 0
    env = {**cli_env(), "ANVIL_CHECKS__FAIL_UNDER": str(passed / 20)}
    again = subprocess.run(
        anvil_cmd("run", str(batch), "--simulate", "--json"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert (
        json.loads(again.stdout)["fail_under"]["message"]
        == f"pass rate {passed / 20:.1%} >= {passed / 20:.1%}"
    )
