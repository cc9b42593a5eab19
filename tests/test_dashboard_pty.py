"""`anvil run` on a real pseudo-terminal shows the live dashboard; off a terminal, plain lines.

NOTE: these drive the final `anvil run` behaviour: they need `RunMonitor`/`make_reporter`
(views.dashboard) wired into `anvil run` (the tick of engine/ticker.py) and its `--no-dashboard` flag.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import anvil_cmd, cli_env, run_cli, write_config, write_jsonl_batch

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def slow_sim() -> Iterator[SimServer]:
    """Answers take ~150 ms: with start-up, a 24-job run on 4 agents lasts a few ticks (1 s each)."""
    with SimServer(SimConfig(seed=3, latency_ms=150.0)).start_thread() as server:
        yield server


def _setup(tmp_path: Path, sim: SimServer, jobs: int = 24) -> tuple[Path, Path]:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(jobs)])
    config = write_config(
        tmp_path / "anvil.yaml",
        sim.base_url,
        scaling={"workers": 1, "max_agents": 4, "max_concurrent_jobs": 4, "min_agents": 1},
        run={"grace_period_s": 5, "progress_interval_s": 0.5},
    )
    return batch, config


def test_run_on_a_terminal_shows_the_live_dashboard(tmp_path: Path, slow_sim: SimServer) -> None:
    batch, config = _setup(tmp_path, slow_sim)
    env = {**cli_env(), "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "40"}
    cmd, *args = anvil_cmd("run", str(batch), "--config", str(config))
    child = pexpect.spawn(
        cmd, args, env=env, cwd=str(tmp_path), dimensions=(40, 80), timeout=60, encoding="utf-8"
    )
    try:
        child.expect(r"\d+/4 in flight \(")  # the live frame, while the run is going
        child.expect(r"\d+\.\d%\s+\d+/24\s+ETA")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    screen = ANSI.sub("", child.before or "")
    assert child.exitstatus == 0, screen
    assert "24 succeeded, 0 failed" in screen  # the summary follows the last frame


def test_run_off_a_terminal_prints_plain_lines_and_the_summary(tmp_path: Path, slow_sim: SimServer) -> None:
    batch, config = _setup(tmp_path, slow_sim)
    proc = run_cli("run", str(batch), "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stderr and "in flight" not in proc.stderr  # no live frame
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"  # anvil_cli.timefmt.local_iso
    assert re.search(rf"^\[{stamp}\] \d+/24 done \(", proc.stderr, re.M), proc.stderr
    assert "24 succeeded, 0 failed" in proc.stdout
