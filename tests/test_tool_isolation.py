"""Tool calls end to end: each agent job runs its tools in its own directory, with no secret in
reach (its environment, or its parent's through /proc), and no tool outlives a worker killed
under it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import anvil_cmd, cli_env, run_cli, write_config, write_jobs

SECRET = "sk-ant-tool-isolation-secret-0123456789"

# Writes what it sees into the report directory (argv[1], writable in the sandbox by the run's
# settings): where it runs, that directory's mode, and whether the API key is in its own
# environment or its parent's.
LOOK = """
import json, os, sys
parent = open(f"/proc/{os.getppid()}/environ", "rb").read()
seen = {"cwd": os.getcwd(), "mode": oct(os.stat(".").st_mode & 0o777),
        "own": "ANTHROPIC_API_KEY" in os.environ,
        "parent": b"ANTHROPIC_API_KEY" in parent or SECRET.encode() in parent}
open(os.path.join(sys.argv[1], os.path.basename(os.getcwd()) + ".json"), "w").write(json.dumps(seen))
open("seen.json", "w").write("in the job's own directory")
print("looked")
""".replace("SECRET", repr(SECRET))

# Starts a child in its own process group (the group of the tool call), records both pids,
# then hangs until killed.
HANG = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])  # sleep-ok: killed
open(sys.argv[1], "w").write(f"{os.getpid()} {child.pid}")
time.sleep(300)  # sleep-ok: a tool that hangs until its group is killed
"""


def _tool(name: str, argv: list[str]) -> dict[str, object]:
    return {"name": name, "description": "d", "input_schema": {"type": "object"}, "anvil_command": argv}


def _wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)  # sleep-ok: polling for real progress, bounded by a deadline


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is gone too (its parent has not reaped it)
        return fh.read().split(") ")[1].startswith("Z")


def test_each_job_runs_its_tools_in_its_own_directory_with_no_secret_in_reach(tmp_path: Path) -> None:
    report = tmp_path / "report"
    report.mkdir()
    look = _tool("look", [sys.executable, "-c", LOOK, str(report)])
    jobs = [{"id": f"agent/{i}", "prompt": "look around", "tools": [look]} for i in range(2)]
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    with SimServer(SimConfig(seed=4)).start_thread() as sim:
        run = {"tool_write_paths": [str(report)]}
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, run=run)
        done = run_cli("run", str(batch), "--config", str(config), "--json", cwd=tmp_path, secret=SECRET)
    assert done.returncode == ExitCode.OK, done.stderr
    seen = {p.stem: json.loads(p.read_text()) for p in report.iterdir()}
    assert sorted(seen) == ["000000-agent_0", "000001-agent_1"]
    roots = {str(Path(s["cwd"]).parent) for s in seen.values()}
    assert len(roots) <= 2 and all(Path(r).name.startswith("anvil-tools-") for r in roots)  # one per worker
    for name, s in seen.items():
        assert Path(s["cwd"]).name == name and not Path(s["cwd"]).is_relative_to(tmp_path)
        assert (s["mode"], s["own"], s["parent"]) == ("0o700", False, False)
    assert not any(Path(r).exists() for r in roots)  # removed when the run ended
    assert not (tmp_path / "seen.json").exists()  # nothing written where anvil was started


@pytest.mark.slow  # a whole run or several: the slow tier (CI runs it after the default suite)
def test_a_tool_dies_with_the_worker_killed_under_it(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    hang = _tool("hang", [sys.executable, "-c", HANG, str(pids)])
    batch = write_jobs(tmp_path / "b.jsonl", [{"id": "agent", "prompt": "wait", "tools": [hang]}])
    with SimServer(SimConfig(seed=4)).start_thread() as sim:
        # unsandboxed: the test finds the tool's processes by the pids it writes where anvil runs
        # (tests/test_sandbox_hostile.py kills a worker under a sandboxed tool)
        run = {"tool_timeout_s": 600, "grace_period_s": 1, "tool_sandbox": "none"}
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, run=run)
        cmd = anvil_cmd("run", str(batch), "--config", str(config), "--no-dashboard")
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2)
            tool_pid, child_pid = map(int, pids.read_text().split())
            worker = _parent_of(tool_pid)  # the worker running the tool call
            os.kill(worker, signal.SIGKILL)
            _wait_for(lambda: _gone(tool_pid) and _gone(child_pid))  # the conductor killed the group
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in map(int, pids.read_text().split()):
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"process {pid} of a tool outlived the run")


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().split(") ")[1].split()[1])
