"""Agent jobs with tools: Claude calls a tool, the worker runs its command, the answer follows."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.engine.outcomes import Usage
from anvil_cli.engine.worker.tools.toolbox import command_argv, split_tools
from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import invoke_cli, read_results, run_inprocess, write_config, write_jobs

SCHEMA = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
ECHO = [
    sys.executable,
    "-c",
    "import json,sys; d=json.load(sys.stdin); print('order', d['order_id'], 'shipped')",
]


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(seed=2)).start_thread() as server:
        yield server


def tool(command: Any = ECHO) -> dict[str, Any]:
    return {
        "name": "lookup_order",
        "description": "find an order",
        "input_schema": SCHEMA,
        "anvil_command": command,
    }


def test_the_command_is_never_sent_and_only_runnable_tools_are_kept() -> None:
    request = {"model": "m", "tools": [tool(), {"name": "plain", "input_schema": SCHEMA}]}
    cleaned, runnable = split_tools(request)
    assert all("anvil_command" not in t for t in cleaned["tools"])
    assert runnable == {"lookup_order": ECHO}
    assert command_argv("python tools/x.py --fast") == ["python", "tools/x.py", "--fast"]
    assert command_argv([]) is None and command_argv(3) is None


def test_usage_of_turns_adds_up() -> None:
    total = Usage(input_tokens=10, output_tokens=5) + Usage(input_tokens=7, output_tokens=1)
    assert total.to_json() == {"input_tokens": 17, "output_tokens": 6}


def test_an_agent_job_runs_its_tool_and_finishes(tmp_path: Path, sim: SimServer) -> None:
    jobs = [{"id": "agent", "prompt": "Where is my order?", "tools": [tool()]}]
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    out = tmp_path / "out.jsonl"
    assert run_inprocess(config, batch, out).exit_code == ExitCode.OK
    (r,) = read_results(out)
    assert r["status"] == "succeeded" and r["stop_reason"] == "end_turn"
    assert r["attempts"] == 2  # the tool call, then the answer
    assert r["usage"]["input_tokens"] > 0 and r["cost_usd"] > 0
    assert sim.stats()["requests"] == 2


def test_a_tool_without_a_command_ends_the_job_at_tool_use(tmp_path: Path, sim: SimServer) -> None:
    jobs = [{"id": "agent", "prompt": "Where is my order?", "tools": [{"name": "t", "input_schema": SCHEMA}]}]
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    out = tmp_path / "out.jsonl"
    assert run_inprocess(config, batch, out).exit_code == ExitCode.OK
    assert read_results(out)[0]["stop_reason"] == "tool_use"


def test_a_bad_command_is_a_validation_error(tmp_path: Path) -> None:
    batch = write_jobs(tmp_path / "b.jsonl", [{"id": "a", "prompt": "x", "tools": [tool(command=[])]}])
    proc = invoke_cli("validate", str(batch), cwd=tmp_path)
    assert proc.returncode == ExitCode.BAD_INPUT
    assert "b.jsonl:1" in proc.stderr and "tools[0].anvil_command" in proc.stderr
    assert not (tmp_path / ".anvil").exists()
