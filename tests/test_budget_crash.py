"""Spend is journaled call by call: a multi-turn tool job killed between its turns, then resumed,
never takes the run's total spend past the cap (the resumed governor starts from what the
journal says was already spent, including the turns of jobs that never finished)."""

from __future__ import annotations

import contextlib
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
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import MODEL, anvil_cmd, cli_env, run_cli, write_config, write_jobs

MAX_TOKENS = 2000
# The tool: the first time it runs it records its pid and hangs (the run is killed meanwhile);
# on the resumed run it answers at once.
TOOL = """
import os, sys, time
marker = sys.argv[1]
if os.path.exists(marker):
    print("done")
    sys.exit(0)
with open(marker, "w") as fh:
    fh.write(str(os.getpid()))
time.sleep(60)  # sleep-ok: a tool that hangs until the test kills the run and then it
"""


def _wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)  # sleep-ok: polling for real progress, bounded by a deadline


@pytest.mark.slow
def test_a_tool_job_killed_between_turns_then_resumed_stays_under_the_cap(tmp_path: Path) -> None:
    marker = tmp_path / "tool-started"
    tool = {
        "name": "work",
        "description": "does some work",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        "anvil_command": [sys.executable, "-c", TOOL, str(marker)],
    }
    prompt = f"Use the tool. @sim{{output_tokens={MAX_TOKENS}}}"
    job = {"id": "agent", "prompt": prompt, "tools": [tool], "max_tokens": MAX_TOKENS}
    batch = write_jobs(tmp_path / "b.jsonl", [job])
    pricer = Pricer.from_overrides({})
    worst = pricer.worst_case_usd(MODEL, 400, MAX_TOKENS)  # about one call's worst case
    cap = 2.5 * worst  # two calls fit, a third does not
    with SimServer(SimConfig(seed=3)).start_thread() as sim:
        config = write_config(
            tmp_path / "anvil.yaml",
            sim.base_url,
            budget={"max_usd": cap},
            cache={"enabled": False},
            run={"tool_sandbox": "none"},  # the tool writes its host pid where anvil runs, to be killed
        )
        cmd = [*anvil_cmd("run", str(batch), "--config", str(config)), "--no-dashboard"]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), **quiet)
        try:
            _wait_for(lambda: marker.exists() and marker.read_text().strip() != "")
            os.kill(proc.pid, signal.SIGKILL)  # between the tool call's two turns
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(marker.read_text()), signal.SIGKILL)
        assert sim.stats()["requests"] == 1  # the first turn was paid for

        resumed = run_cli("run", str(batch), "--config", str(config), "--json", cwd=tmp_path)
        summary = json.loads(resumed.stdout)
        stats = sim.stats()
        paid = pricer.cost_usd(
            MODEL, {"input_tokens": stats["input_tokens"], "output_tokens": stats["output_tokens"]}
        )
        assert paid <= cap, (paid, cap, stats)  # never past the cap across the crash
        # the resumed run knew of the first run's turn: it stopped on the budget rather than pay
        assert resumed.returncode == ExitCode.STOPPED, resumed.stderr
        assert summary["stop_reason"] == "budget"
        assert abs(summary["run_cost_usd"] - paid) < 1e-9  # the journal holds every paid call
