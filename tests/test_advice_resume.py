"""The advice `anvil run` closes with is literally right: the printed command, run as printed,
resumes the same run (after `--fresh`, after a budget stop with raises), pays no job twice, and
is the string `anvil status` gives; budget messages carry the whole run's spend and the cap in
force, as the journal has them."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import (
    anvil_cmd,
    cli_env,
    invoke_cli,
    journal_query,
    run_cli,
    succeeded_jobs,
    write_config,
    write_jsonl_batch,
)
from tests.test_api_e2e import wait_for

RESUME_LINE = re.compile(r"^resume with: (.+)$", re.MULTILINE)
BUDGET_MESSAGE = re.compile(r"the run has spent \$([0-9.]+) of its \$([0-9.]+) cap")


def _one_agent(tmp_path: Path, base_url: str) -> Path:
    return write_config(
        tmp_path / "anvil.yaml",
        base_url,
        scaling={"workers": 1, "max_agents": 1, "max_concurrent_jobs": 1, "min_agents": 1},
        cache={"enabled": False},
    )


def _printed_command(stderr: str) -> str:
    found = RESUME_LINE.findall(stderr)
    assert len(found) == 1, stderr
    return str(found[0])


def _run_printed(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The printed command as the user would paste it (no `cd`: it was started here)."""
    argv = shlex.split(command)
    assert argv[0] == "anvil", command
    return subprocess.run(
        anvil_cmd(*argv[1:]), cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=120, check=False
    )


def _status(cwd: Path) -> dict[str, object]:
    done = invoke_cli("status", "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    status: dict[str, object] = json.loads(done.stdout)
    return status


def _runs(state_dir: Path) -> list[str]:
    return [str(r[0]) for r in journal_query(state_dir, "SELECT id FROM runs")]


def _spent(state_dir: Path) -> float:
    [(spent,)] = journal_query(state_dir, "SELECT COALESCE(SUM(cost_usd), 0) FROM jobs")
    assert isinstance(spent, float | int)
    return float(spent)


@pytest.mark.slow
def test_a_fresh_run_interrupted_resumes_with_the_printed_command(tmp_path: Path) -> None:
    state = tmp_path / ".anvil"
    with SimServer(SimConfig(seed=3, latency_ms=100)).start_thread() as sim:
        write_jsonl_batch(tmp_path / "b.jsonl", [f"question {i}" for i in range(30)])
        _one_agent(tmp_path, sim.base_url)
        proc = subprocess.Popen(
            anvil_cmd("run", "b.jsonl", "--fresh", "-c", "anvil.yaml", "-q"),
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: succeeded_jobs(state) >= 3, timeout_s=60, what="three jobs done")
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == ExitCode.INTERRUPTED, stderr
        command = _printed_command(stderr)
        assert "--fresh" not in shlex.split(command)
        assert _status(tmp_path)["resume_command"] == command  # one function, one string
        [run_id] = _runs(state)

        again = _run_printed(command, tmp_path)
        assert again.returncode == ExitCode.OK, again.stderr
        assert _runs(state) == [run_id]  # the same run, resumed: no new one
        assert _status(tmp_path)["counts"] == {
            "total": 30, "done": 30, "succeeded": 30, "failed": 0, "pending": 0, "running": 0,
        }  # fmt: skip
        assert sim.stats()["paid_duplicates"] == 0  # no job paid twice


def _stopped_for_budget(done: subprocess.CompletedProcess[str], state: Path, cap_usd: float) -> None:
    """Exit 3, and the message says the whole run's spend (the journal's) and the cap in force."""
    assert done.returncode == ExitCode.STOPPED, done.stderr
    spent, cap = BUDGET_MESSAGE.search(done.stderr).groups()  # type: ignore[union-attr]
    assert float(cap) == cap_usd
    assert spent == f"{_spent(state):.4f}"


@pytest.mark.slow
def test_after_budget_stops_and_raises_the_message_is_the_whole_runs_and_the_command_resumes(
    tmp_path: Path,
) -> None:
    state = tmp_path / ".anvil"
    # fixed answers (60 tokens): the forecast of the jobs left is what they will cost
    with SimServer(
        SimConfig(seed=4, latency_ms=5, output_tokens=60, output_tokens_spread=0.0)
    ).start_thread() as sim:
        write_jsonl_batch(tmp_path / "b.jsonl", [f"question {i}" for i in range(30)])
        _one_agent(tmp_path, sim.base_url)
        first = run_cli("run", "b.jsonl", "-c", "anvil.yaml", "-q", "--budget", "0.002", cwd=tmp_path)
        _stopped_for_budget(first, state, 0.002)
        [run_id] = _runs(state)
        done_first = succeeded_jobs(state)

        raised = run_cli("run", "b.jsonl", "-c", "anvil.yaml", "-q", "--budget", "0.004", cwd=tmp_path)
        _stopped_for_budget(raised, state, 0.004)  # the whole run's spend, not this session's
        assert _spent(state) > 0.002 and succeeded_jobs(state) > done_first
        command = _printed_command(raised.stderr)
        assert _status(tmp_path)["resume_command"] == command
        argv = shlex.split(command)
        assert argv.count("--budget") == 1
        new_cap = float(argv[argv.index("--budget") + 1])
        assert new_cap > _spent(state) and new_cap > 0.004

        again = _run_printed(command, tmp_path)
        assert again.returncode == ExitCode.OK, again.stderr
        assert _runs(state) == [run_id] and succeeded_jobs(state) == 30
        assert _spent(state) <= new_cap
        assert sim.stats()["paid_duplicates"] == 0


@pytest.mark.slow
def test_the_summary_counts_every_api_call_the_journal_has(tmp_path: Path) -> None:
    """One job refused (401: the run stops), one from the result cache, one answered (if it was
    sent before the stop): every call the journal counts, the refused one included."""
    with SimServer(SimConfig(seed=5, latency_ms=5)).start_thread() as sim:
        config = write_config(tmp_path / "anvil.yaml", sim.base_url)
        write_jsonl_batch(tmp_path / "first.jsonl", ["cached answer"])
        assert run_cli("run", "first.jsonl", "-c", str(config), "-q", cwd=tmp_path).returncode == 0
        write_jsonl_batch(tmp_path / "b.jsonl", ["a new one", "cached answer", "@sim{status=401} no"])
        done = run_cli("run", "b.jsonl", "-c", str(config), cwd=tmp_path)
        assert done.returncode == ExitCode.STOPPED, done.stderr
        run_id = _status(tmp_path)["run_id"]
        [(attempts,)] = journal_query(
            tmp_path / ".anvil", f"SELECT SUM(attempts) FROM jobs WHERE run_id = '{run_id}'"
        )
        assert isinstance(attempts, int) and attempts >= 1  # the refused call at least
        assert f"API calls {attempts}," in done.stdout, done.stdout
