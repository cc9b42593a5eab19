"""SIGTERM to the whole process group (what `timeout`, systemd, `docker stop` and CI runners
send) stops a run as cleanly as SIGTERM to the conductor alone: exit 130, everything saved, no
"lost" process reported, no traceback, nothing left running; the same command then finishes
every job, each called once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import (
    anvil_cmd,
    cli_env,
    journal_query,
    read_results,
    run_cli,
    succeeded_jobs,
    write_config,
    write_jsonl_batch,
)
from tests.test_api_e2e import wait_for

N_JOBS = 60


def _group_alive(pgid: int) -> list[str]:
    """Processes of group `pgid` still running (zombies waiting for a reaper do not run)."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        state, group = fields[0], int(fields[2])  # fields 3 and 5 of /proc/PID/stat
        if group == pgid and state not in ("Z", "X"):
            alive.append(f"{entry} {stat[: stat.rfind(')') + 1]}")
    return alive


@pytest.mark.slow
def test_sigterm_to_the_process_group_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    with SimServer(SimConfig(latency_ms=200, seed=7)).start_thread() as sim:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(N_JOBS)])
        scaling = {"workers": 2, "max_agents": 4, "max_concurrent_jobs": 4, "min_agents": 1}
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, scaling=scaling)
        out = tmp_path / "out.jsonl"
        args = ("run", str(batch), "--config", str(config), "-o", str(out))
        err_path = tmp_path / "run.stderr"
        with err_path.open("w") as err:
            proc = subprocess.Popen(
                anvil_cmd(*args),
                cwd=tmp_path,
                env=cli_env(),
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,  # its own process group, as under `timeout` or systemd
            )
        pgid = proc.pid
        try:
            wait_for(lambda: succeeded_jobs(tmp_path / ".anvil") >= 5 or proc.poll() is not None, 60)
            assert proc.poll() is None, "the run ended before it could be stopped"
            os.killpg(pgid, signal.SIGTERM)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(pgid, signal.SIGKILL)
                proc.wait()
        stderr = err_path.read_text()
        assert code == ExitCode.INTERRUPTED, stderr
        assert "SIGTERM: stopping" in stderr
        assert "lost" not in stderr and "Traceback" not in stderr, stderr
        wait_for(lambda: not _group_alive(pgid), 20, "every process of the group to exit")

        state = tmp_path / ".anvil"
        assert journal_query(state, "SELECT state FROM runs") == [("interrupted",)]
        by_state = dict(journal_query(state, "SELECT state, COUNT(*) FROM jobs GROUP BY state"))
        assert by_state.get("running", 0) == 0
        assert by_state["succeeded"] + by_state["pending"] == N_JOBS and by_state["pending"] > 0
        assert len(read_results(out)) == N_JOBS  # written on the way out, pending ones included

        again = run_cli(*args, cwd=tmp_path)
        assert again.returncode == ExitCode.OK, again.stderr
        results = read_results(out)
        assert [r["id"] for r in results] == [f"job-{i:04d}" for i in range(N_JOBS)]
        assert all(r["status"] == "succeeded" and r["attempts"] == 1 for r in results)
        assert sim.stats()["requests"] == N_JOBS  # each job called once: none lost, none twice


CHILD = """
import subprocess, sys
from anvil_cli.engine.process.signals import leave_stop_to_conductor, stop_signals_blocked
with stop_signals_blocked():  # as the fork server hands them on to a worker
    leave_stop_to_conductor()
    cmd = ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]
    tool = subprocess.run(cmd, capture_output=True, text=True)
print(tool.stdout, end="")
"""


def test_a_command_a_worker_runs_gets_sigint_and_sigterm_back() -> None:
    """Workers leave the stop signals to the conductor, but a tool they start must stop on them."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=30, env=cli_env(), check=True
    )
    masks = dict(line.split(":\t") for line in done.stdout.splitlines())
    stop_bits = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
    assert int(masks["SigBlk"], 16) & stop_bits == 0, masks  # not blocked
    assert int(masks["SigIgn"], 16) & stop_bits == 0, masks  # not ignored: the default again
