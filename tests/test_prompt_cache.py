"""Automatic cache_control marking, and its effect on cost end to end on the simulator."""

from __future__ import annotations

from pathlib import Path

from anvil_cli.exitcodes import ExitCode
from anvil_cli.policy.prompt_caching import EPHEMERAL, mark_prompt_cache
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import read_results, run_inprocess, write_config, write_jobs

LONG = "You are a careful assistant. " * 200  # ~5,800 characters


def _req(**extra: object) -> dict[str, object]:
    return {
        "model": "claude-haiku-4-5",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }


def test_long_system_prompt_is_marked() -> None:
    marked = mark_prompt_cache(_req(system=LONG), 4096)
    assert marked["system"] == [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}]


def test_short_prompts_and_requests_with_own_breakpoints_are_left_alone() -> None:
    short = _req(system="be brief")
    assert mark_prompt_cache(short, 4096) is short
    own = _req(system=[{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral", "ttl": "1h"}}])
    assert mark_prompt_cache(own, 4096) is own
    in_message = _req(
        system=LONG,
        messages=[{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": EPHEMERAL}]}],
    )
    assert mark_prompt_cache(in_message, 4096) is in_message


def test_long_tool_list_is_marked_on_its_last_tool_without_mutating_the_job() -> None:
    tools = [
        {"name": f"t{i}", "description": "d" * 1000, "input_schema": {"type": "object"}} for i in range(5)
    ]
    req = _req(tools=tools)
    marked = mark_prompt_cache(req, 4096)
    assert marked["tools"][-1]["cache_control"] == EPHEMERAL
    assert all("cache_control" not in t for t in marked["tools"][:-1])
    assert "cache_control" not in tools[-1]


def _run(tmp_path: Path, sim: SimServer, marking: bool) -> tuple[list[dict[str, object]], float]:
    jobs = [{"id": f"j{i}", "prompt": f"question {i}", "system": LONG} for i in range(6)]
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    config = write_config(
        tmp_path / "anvil.yaml",
        sim.base_url,
        scaling={"workers": 1, "max_agents": 1, "max_concurrent_jobs": 1},
        cache={"enabled": False, "prompt_caching": marking},
        state_dir=str(tmp_path / f".anvil-{marking}"),
    )
    out = tmp_path / "out.jsonl"
    report = run_inprocess(config, batch, out, fresh=True)
    assert report.exit_code == ExitCode.OK
    return read_results(out), report.summary["run_cost_usd"]


def test_shared_system_prompt_is_written_once_then_read_and_costs_less(tmp_path: Path) -> None:
    with SimServer(SimConfig(seed=1)).start_thread() as sim:
        marked, cost_marked = _run(tmp_path, sim, marking=True)
        sim.reset()
        plain, cost_plain = _run(tmp_path, sim, marking=False)
    usages = [r["usage"] for r in marked]
    assert usages[0]["cache_creation_input_tokens"] > 1000 and usages[0]["cache_read_input_tokens"] == 0
    for u in usages[1:]:
        assert u["cache_read_input_tokens"] == usages[0]["cache_creation_input_tokens"]
        assert u["cache_creation_input_tokens"] == 0
    assert all(r["usage"]["cache_read_input_tokens"] == 0 for r in plain)
    assert cost_marked < 0.5 * cost_plain
