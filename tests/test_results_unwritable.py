"""A results file that cannot be written when the run ends (its directory gone, its path taken):
a clear message with the `anvil export` command that writes it from the journal, exit 3, never a
traceback; the printed command then writes every result."""

from __future__ import annotations

import errno
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.output import unwritten_message
from anvil_cli.exitcodes import ExitCode
from anvil_cli.jobs.loader import load_batch
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import (
    anvil_cmd,
    cli_env,
    invoke_cli,
    journal_query,
    read_results,
    succeeded_jobs,
    write_config,
    write_jsonl_batch,
)
from tests.test_api_e2e import wait_for

N_JOBS = 80
COMMAND = re.compile(r"`(anvil export [^`]+)`")


def _dir_replaced_by_a_file(out: Path) -> None:
    shutil.rmtree(out.parent)
    out.parent.write_text("not a directory any more\n")


def _path_taken_by_a_directory(out: Path) -> None:
    out.mkdir()
    (out / "something").write_text("x")


def _undo(out: Path) -> None:
    if out.parent.is_file():
        out.parent.unlink()
        out.parent.mkdir()
    elif out.is_dir():
        shutil.rmtree(out)


@pytest.mark.slow
@pytest.mark.parametrize("breakage", [_dir_replaced_by_a_file, _path_taken_by_a_directory])
def test_unwritable_results_say_how_to_export_them_and_the_command_works(
    tmp_path: Path, breakage: Callable[[Path], None]
) -> None:
    with SimServer(SimConfig(latency_ms=100, seed=11)).start_thread() as sim:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(N_JOBS)])
        scaling = {"workers": 1, "max_agents": 2, "max_concurrent_jobs": 2, "min_agents": 1}
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, scaling=scaling)
        out = tmp_path / "out" / "results.jsonl"
        out.parent.mkdir()
        proc = subprocess.Popen(
            anvil_cmd("run", str(batch), "--config", str(config), "-o", str(out)),
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: succeeded_jobs(tmp_path / ".anvil") >= 10 or proc.poll() is not None, 60)
            assert proc.poll() is None, "the run ended before its output path could be broken"
            breakage(out)
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == ExitCode.STOPPED, stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout
    assert f"the results could not be written to {out}" in stderr
    found = COMMAND.search(stderr)  # on one line: copied whole
    assert found, stderr
    assert f"{N_JOBS} succeeded" in stdout  # every job did succeed: the summary says so
    ((summary_json,),) = journal_query(tmp_path / ".anvil", "SELECT summary_json FROM runs")
    summary = json.loads(str(summary_json))
    assert summary["exit_code"] == ExitCode.STOPPED and found.group(1) in summary["output_error"]
    _undo(out)  # the user fixes what broke, then runs the command printed
    argv = shlex.split(found.group(1))
    cmd = anvil_cmd(*argv[1:])
    done = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    results = read_results(out)
    assert [r["id"] for r in results] == [f"job-{i:04d}" for i in range(N_JOBS)]
    assert all(r["status"] == "succeeded" and r["output"] for r in results)
    assert out.stat().st_mode & 0o777 == 0o600


def test_the_message_names_the_reason_and_a_command_that_survives_the_shell() -> None:
    exc = OSError(errno.EMFILE, "Too many open files")
    message = unwritten_message(exc, "20260101-000000-abc123", Path("my results/o ut.jsonl"), Path(".anvil"))
    assert "(Too many open files)" in message
    found = COMMAND.search(message)
    assert found
    assert shlex.split(found.group(1)) == [
        "anvil",
        "export",
        "20260101-000000-abc123",
        "-o",
        "my results/o ut.jsonl",
        "--state-dir",
        ".anvil",
    ]


def test_export_to_a_path_it_cannot_write_is_a_clear_error(tmp_path: Path) -> None:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a"])
    with Journal.open(tmp_path / ".anvil") as journal:
        journal.create_run(str(batch), "sha", load_batch(batch))
    (tmp_path / "taken").write_text("a file, not a directory\n")
    state = str(tmp_path / ".anvil")
    done = invoke_cli(
        "export", "-o", str(tmp_path / "taken" / "out.jsonl"), "--state-dir", state, cwd=tmp_path
    )
    assert done.returncode == ExitCode.BAD_INPUT
    assert "Traceback" not in done.stderr
    assert f"-o {tmp_path / 'taken' / 'out.jsonl'}: " in done.stderr  # the path, and why (checked first)
