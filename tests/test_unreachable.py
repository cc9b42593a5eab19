"""A run that cannot reach the API stops (exit 3, resumable) and says which host to check
(policy/unreachable.py: the rule, on a fake clock; the real `anvil run` against a closed port)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.exitcodes import ExitCode
from anvil_cli.policy.unreachable import Reachability
from anvil_cli.sim import SimServer
from tests.engine_support import anvil_cmd, cli_env, journal_query, write_jsonl_batch
from tests.sim_fixtures import fixture_sim, fixture_sim_factory  # noqa: F401
from tests.test_endpoint import closed_port

WHERE = "http://127.0.0.1:9 (from ANTHROPIC_BASE_URL)"
REFUSED: dict[str, Any] = {
    "status_code": None,
    "error_type": "connection_error",
    "message": "cannot connect to 127.0.0.1:9: Connection refused",
    "host": "127.0.0.1:9",
    "unreachable": True,
}


def test_the_rule_stops_after_the_limit_of_failures_to_connect() -> None:
    rule = Reachability(after_s=120.0, where=WHERE)
    assert rule.verdict(now=1000.0) is None  # nothing tried yet
    rule.attempt(REFUSED, now=1000.0)
    rule.attempt(REFUSED, now=1060.0)
    assert rule.never_reached()
    assert rule.verdict(now=1119.9) is None
    message = rule.verdict(now=1120.0)
    assert message is not None
    assert "127.0.0.1:9" in message and "Connection refused" in message and "2 attempts" in message
    assert "ANTHROPIC_BASE_URL" in message and "proxy" in message and "resumes" in message


def test_any_answer_turns_the_rule_off_for_the_rest_of_the_run() -> None:
    rule = Reachability(after_s=10.0, where=WHERE)
    rule.attempt(REFUSED, now=0.0)
    rule.attempt({"status_code": 529, "error_type": "overloaded_error"}, now=5.0)  # a server answered
    rule.attempt(REFUSED, now=6.0)
    assert rule.verdict(now=1000.0) is None and not rule.never_reached()

    paid = Reachability(after_s=10.0, where=WHERE)
    paid.answered()  # a call succeeded (CallSettled)
    paid.attempt(REFUSED, now=0.0)
    assert paid.verdict(now=1000.0) is None


def test_a_read_timeout_is_not_unreachable() -> None:
    """It connected: the host is there (slow), which retries and the breaker handle."""
    rule = Reachability(after_s=1.0, where=WHERE)
    rule.attempt({"status_code": None, "error_type": "timeout", "host": "127.0.0.1:9"}, now=0.0)
    rule.attempt(REFUSED, now=1.0)
    assert rule.verdict(now=100.0) is None


def _run(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        anvil_cmd("run", str(tmp_path / "b.jsonl"), "--json", "-q", *args),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _states(tmp_path: Path) -> dict[str, int]:
    rows = journal_query(tmp_path / ".anvil", "SELECT state, COUNT(*) FROM jobs GROUP BY state")
    return {str(state): int(str(n)) for state, n in rows}


def _attempt_messages(tmp_path: Path) -> list[str]:
    rows = journal_query(tmp_path / ".anvil", "SELECT data_json FROM events WHERE kind = 'run_stopping'")
    return [json.loads(str(r[0]))["message"] for r in rows]


@pytest.mark.slow  # a whole run or several: the slow tier (CI runs it after the default suite)
def test_a_closed_port_stops_the_run_resumably_naming_the_host(tmp_path: Path, sim: SimServer) -> None:
    """ANTHROPIC_BASE_URL at a closed port, no config file: exit 3 within run.unreachable_after_s
    (from ANVIL_RUN__UNREACHABLE_AFTER_S), the host named, no job failed; once the address is
    right, the same command resumes the run and finishes it."""
    port = closed_port()
    write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(10)])
    env = {
        **cli_env(),
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}",
        "ANVIL_RUN__UNREACHABLE_AFTER_S": "1",
    }
    stopped = _run(tmp_path, env)
    assert stopped.returncode == ExitCode.STOPPED, stopped.stderr
    summary = json.loads(stopped.stdout)
    assert summary["stop_reason"] == "unreachable" and summary["counts"]["failed"] == 0
    assert f"cannot reach the API at 127.0.0.1:{port}" in stopped.stderr
    assert "ANTHROPIC_BASE_URL" in stopped.stderr
    assert _states(tmp_path) == {"pending": 10}
    (message,) = _attempt_messages(tmp_path)
    assert f"cannot connect to 127.0.0.1:{port}: Connection refused" in message
    assert "test-key" not in stopped.stderr + stopped.stdout + message

    resumed = _run(tmp_path, {**env, "ANTHROPIC_BASE_URL": sim.base_url})
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    after = json.loads(resumed.stdout)
    assert after["run_id"] == summary["run_id"] and after["counts"]["succeeded"] == 10
    assert sim.stats()["requests"] == 10


@pytest.mark.slow  # a whole run or several: the slow tier (CI runs it after the default suite)
def test_batches_mode_stops_too_and_resumes(tmp_path: Path, sim: SimServer) -> None:
    """The Message Batches driver follows the same rule: every create or list call refused for
    run.unreachable_after_s stops the run (exit 3, nothing failed), and the same command against
    a reachable API resumes and finishes it."""
    port = closed_port()
    write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(6)])
    env = {
        **cli_env(),
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}",
        "ANVIL_RUN__UNREACHABLE_AFTER_S": "1",
        "ANVIL_BATCHES__POLL_INTERVAL_S": "0.2",
    }
    stopped = _run(tmp_path, env, "--mode", "batches")
    assert stopped.returncode == ExitCode.STOPPED, stopped.stderr
    summary = json.loads(stopped.stdout)
    assert summary["stop_reason"] == "unreachable" and summary["counts"]["failed"] == 0
    assert f"cannot reach the API at 127.0.0.1:{port}" in stopped.stderr
    assert "test-key" not in stopped.stderr + stopped.stdout
    resumed = _run(tmp_path, {**env, "ANTHROPIC_BASE_URL": sim.base_url}, "--mode", "batches")
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    after = json.loads(resumed.stdout)
    assert after["run_id"] == summary["run_id"] and after["counts"]["succeeded"] == 6


def test_jobs_out_of_retries_while_unreachable_are_not_failed(tmp_path: Path) -> None:
    """One attempt per job: each job gives up at its first refusal, long before the rule's limit;
    none is failed (they go back to pending and run again) until the run stops as unreachable."""
    port = closed_port()
    write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(5)])
    config = tmp_path / "anvil.yaml"
    config.write_text(
        json.dumps(
            {
                "retries": {"max_attempts": 1},
                "run": {"unreachable_after_s": 2, "grace_period_s": 5},
                "scaling": {"workers": 1},
                "state_dir": str(tmp_path / ".anvil"),
            }
        )
    )
    env = {**cli_env(), "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}"}
    stopped = _run(tmp_path, env, "--config", str(config))
    assert stopped.returncode == ExitCode.STOPPED, stopped.stderr
    assert json.loads(stopped.stdout)["stop_reason"] == "unreachable"
    assert _states(tmp_path) == {"pending": 5}
    rows = journal_query(tmp_path / ".anvil", "SELECT SUM(attempts) FROM jobs")
    assert int(str(rows[0][0])) >= 5  # every job was tried, and its attempts are counted


def test_the_setting_is_validated_where_it_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from anvil_cli.config.load import load_settings

    monkeypatch.chdir(tmp_path)  # no anvil.yaml
    from anvil_cli.errors import ConfigError

    assert load_settings(None, env={"ANVIL_RUN__UNREACHABLE_AFTER_S": "30"}).run.unreachable_after_s == 30
    for bad in ("0", "-5", "soon", ".inf"):
        try:
            load_settings(None, env={"ANVIL_RUN__UNREACHABLE_AFTER_S": bad})
        except ConfigError as exc:
            assert "ANVIL_RUN__UNREACHABLE_AFTER_S" in str(exc) and "unreachable_after_s" in str(exc)
        else:
            raise AssertionError(f"{bad!r} was accepted")
