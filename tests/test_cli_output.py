"""What `anvil` prints, as users see it: off a terminal (CI logs, pipes) a line is never cut
into pieces, and only high and medium ALERT lines (low ones with `--verbose`); on an 80-column
terminal `anvil status` keeps run ids whole and the start time in ISO 8601."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pexpect
import pytest

from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.timefmt import local_iso
from tests.engine_support import anvil_cmd, cli_env, run_cli, run_inprocess, write_config, write_jobs

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
RUN_ID = r"\d{8}-\d{6}-[0-9a-f]{6}"
ISO_LOCAL = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"
LONG = "a-directory-whose-name-alone-is-longer-than-a-terminal-is-wide-" + "x" * 40


def _busy_batch(path: Path) -> Path:
    """Six jobs of a second each: two agents are busy (the low `agent_utilisation` alert) for ~3 s."""
    return write_jobs(path, [{"id": f"job-{i}", "prompt": f"@sim{{latency_ms=1000}} q{i}"} for i in range(6)])


def _run(tmp_path: Path, name: str, *extra: str) -> tuple[Any, Path]:
    work = tmp_path / name
    (work / LONG).mkdir(parents=True)
    batch = _busy_batch(work / "b.jsonl")
    output = work / LONG / "results.jsonl"
    args = ["run", str(batch), "--simulate", "--agents", "2", "-o", str(output), "--state-dir", "st"]
    return run_cli(*args, *extra, cwd=work, timeout=120), output


@pytest.mark.slow
def test_off_a_terminal_lines_stay_whole_and_low_alerts_need_verbose(tmp_path: Path) -> None:
    quiet, output = _run(tmp_path, "plain")
    assert quiet.returncode == 0, quiet.stderr
    assert f"  results: {output}" in quiet.stdout.splitlines()  # ~200 characters, one line
    assert len(max(quiet.stdout.splitlines(), key=len)) > 80
    assert "ALERT [low]" not in quiet.stderr and "alert cleared [low]" not in quiet.stderr
    verbose, _ = _run(tmp_path, "verbose", "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    raised = [line for line in verbose.stderr.splitlines() if " ALERT [low] agent_utilisation: " in line]
    line = rf"\[{ISO_LOCAL}\] ALERT \[low\] agent_utilisation: .+\)"
    assert raised and all(re.fullmatch(line, r) for r in raised), raised
    progress = [line for line in verbose.stderr.splitlines() if " done (" in line]
    assert all(re.match(rf"\[{ISO_LOCAL}\] \d+/6 done \(.* \| \$", line) for line in progress), progress


def test_status_on_an_80_column_terminal_keeps_run_ids_whole(tmp_path: Path) -> None:
    with SimServer(SimConfig(seed=5)).start_thread() as sim:
        config = write_config(tmp_path / "anvil.yaml", sim.base_url)
        for name in (LONG, "short"):
            run_inprocess(config, _busy_batch(tmp_path / f"{name}.jsonl"))
    env = {**cli_env(), "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "50"}
    cmd, *args = anvil_cmd("status", "--config", str(config))
    child = pexpect.spawn(
        cmd, args, env=env, cwd=str(tmp_path), dimensions=(50, 80), timeout=60, encoding="utf-8"
    )
    child.expect(pexpect.EOF)
    child.close()
    lines = ANSI.sub("", child.before or "").replace("\r\n", "\n").splitlines()
    assert child.exitstatus == 0, lines
    assert [line for line in lines if len(line.rstrip()) > 80] == []
    piped = run_cli("status", "--config", str(config), "--json", cwd=tmp_path)
    runs = json.loads(piped.stdout)["runs"]
    assert len(runs) == 2 and all(re.fullmatch(RUN_ID, r["run_id"]) for r in runs)
    table = [line for line in lines if re.match(RUN_ID, line)]
    assert [line.split()[0] for line in table] == [r["run_id"] for r in runs]  # whole, newest first
    assert any(line.rstrip().endswith("…") for line in table)  # the long batch name is what gives
    assert f"started {local_iso(runs[0]['created_at'])} · took " in "\n".join(lines)
