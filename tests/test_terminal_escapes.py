"""What a batch, a tool, a server or an old journal says reaches a terminal as text: an escape
sequence in a batch file's name, a tool's stderr or a metadata value can no longer retitle the
terminal (OSC), clear it or recolour it. `--json` keeps the strings as they were (escaped by JSON)."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest

from anvil_cli.input_limits import plain_tree
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import anvil_cmd, cli_env, invoke_cli, run_cli, write_config, write_jobs

HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b31m"  # retitle, clear the screen, a C1 CSI
SCHEMA = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
TOOL = [sys.executable, "-c", f"import sys; sys.stderr.write({HOSTILE!r}); sys.exit(1)"]


def _batch(tmp_path: Path) -> Path:
    tool = {"name": "lookup_order", "description": "d", "input_schema": SCHEMA, "anvil_command": TOOL}
    jobs = [{"id": f"j{i}", "prompt": f"Where is order {i}?", "tools": [tool]} for i in range(3)]
    return write_jobs(tmp_path / "b\x1b[31mred.jsonl", jobs)  # the file's name is hostile too


def _raw_escapes(text: str) -> list[str]:
    """Escape sequences in `text` that are not Rich's own styling (none is: NO_COLOR, no tty)."""
    return [c for c in ("\x1b", "\x9b", "\x07") if c in text]


@pytest.fixture(name="sim")
def fixture_sim() -> Any:
    with SimServer(SimConfig(seed=4, latency_ms=100)).start_thread() as server:
        yield server


def test_status_and_the_summary_escape_what_tools_and_file_names_said(tmp_path: Path, sim: SimServer) -> None:
    batch = _batch(tmp_path)
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    done = run_cli("run", str(batch), "--config", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _raw_escapes(done.stdout + done.stderr) == []
    status = invoke_cli("status", "--config", str(config), cwd=tmp_path)
    assert status.returncode == 0
    assert "pwned\\x07\\x1b[2J" in status.stdout  # shown, as text
    assert _raw_escapes(status.stdout + status.stderr) == []
    as_json = invoke_cli("status", "--json", "--config", str(config), cwd=tmp_path)
    assert json.loads(as_json.stdout)["batch_path"].endswith("b\x1b[31mred.jsonl")  # kept as it was


def test_by_metadata_escapes_what_an_older_journal_holds(tmp_path: Path, sim: SimServer) -> None:
    """Metadata with control characters is refused at validation now; a journal written before
    that (or edited) may still hold some: `--by metadata.team` shows it as text."""
    batch = write_jobs(tmp_path / "b.jsonl", [{"id": "a", "prompt": "x", "metadata": {"team": "ok"}}])
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    assert run_cli("run", str(batch), "--config", str(config), cwd=tmp_path).returncode == 0
    with sqlite3.connect(tmp_path / ".anvil" / "journal.sqlite") as db:
        (job_json,) = db.execute("SELECT job_json FROM jobs").fetchone()
        job = json.loads(job_json)
        job["metadata"] = {"team": HOSTILE}
        db.execute("UPDATE jobs SET job_json = ?", (json.dumps(job),))
    shown = invoke_cli("status", "--by", "metadata.team", "--config", str(config), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "pwned" in shown.stdout and _raw_escapes(shown.stdout) == []


def test_the_live_dashboard_escapes_them_on_a_real_terminal(tmp_path: Path, sim: SimServer) -> None:
    batch = _batch(tmp_path)
    config = write_config(tmp_path / "anvil.yaml", sim.base_url, scaling={"max_agents": 1})
    env = {**cli_env(), "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    cmd, *args = anvil_cmd("run", str(batch), "--config", str(config))
    child = pexpect.spawn(cmd, args, env=env, cwd=str(tmp_path), dimensions=(40, 120), timeout=90)
    try:
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    screen = child.before or b""
    assert child.exitstatus == 0, screen[-2000:]
    assert b"\x1b]0;pwned" not in screen and b"\x1b[2J" not in screen and b"\x9b31m" not in screen
    assert b"pwned" in screen  # the tool error is on the dashboard, as text


def test_plain_tree_escapes_keys_values_and_nested_text_only() -> None:
    value = {"k\x1b": ["a\x07", ("b", 1, None)], "n": 2.5, "s": {"t": "\u202eabc"}}
    assert plain_tree(value) == {"k\\x1b": ["a\\x07", ("b", 1, None)], "n": 2.5, "s": {"t": "\\u202eabc"}}
