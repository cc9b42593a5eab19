"""`model: auto` routing, its heuristic, and fallbacks (open breaker, repeated 529s) end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from anvil_cli.config.settings import Routing
from anvil_cli.exitcodes import ExitCode
from anvil_cli.policy.routing import fallbacks, guess_complexity, route
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import read_results, run_inprocess, write_config, write_jobs

OPUS, SONNET, HAIKU = "claude-opus-4-8", "claude-sonnet-4-6", "claude-haiku-4-5"


def _req(text: str, **extra: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": text}], **extra}


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (_req("What is 2+2?"), "simple"),
        (_req("x " * 2000), "moderate"),
        (_req("Please refactor this module"), "complex"),
        (_req("Prove that the sum is finite"), "complex"),
        (_req("y " * 10_001), "complex"),
        (_req("short", tools=[{"name": "t"}]), "moderate"),
        (_req("z " * 4001, tools=[{"name": "t"}]), "complex"),
    ],
)
def test_heuristic(request_: dict[str, object], expected: str) -> None:
    assert guess_complexity(request_) == expected


def test_routing_table_by_complexity_and_by_heuristic() -> None:
    routing = Routing(simple="a", moderate="b", complex="c", fallbacks={"c": ["b", "a"]})
    assert route("simple", _req("anything"), routing) == "a"
    assert route("complex", _req("hi"), routing) == "c"
    assert route(None, _req("hi"), routing) == "a"
    assert route(None, _req("design a cache"), routing) == "c"
    assert fallbacks("c", routing) == ["b", "a"] and fallbacks("a", routing) == []


def test_auto_jobs_run_on_the_routed_model_and_record_it(tmp_path: Path) -> None:
    jobs = [
        {"id": "s", "prompt": "hi", "model": "auto", "complexity": "simple"},
        {"id": "c", "prompt": "hi", "model": "auto", "complexity": "complex"},
        {"id": "g", "prompt": "debug this", "model": "auto"},
    ]
    with SimServer(SimConfig(seed=1)).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", jobs)
        config = write_config(tmp_path / "anvil.yaml", sim.base_url)
        assert run_inprocess(config, batch, tmp_path / "out.jsonl").exit_code == ExitCode.OK
        by_model = sim.stats()["by_model"]
    got = {r["id"]: r["model"] for r in read_results(tmp_path / "out.jsonl")}
    assert got == {"s": HAIKU, "c": OPUS, "g": OPUS}
    assert set(by_model) == {HAIKU, OPUS}


def _fallback_run(tmp_path: Path, **routing: object) -> list[dict[str, object]]:
    jobs = [
        {"id": f"j{i}", "prompt": f"@sim{{status=529, for_model={OPUS}}} q{i}", "model": OPUS}
        for i in range(4)
    ]
    with SimServer(SimConfig(seed=1)).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", jobs)
        config = write_config(
            tmp_path / "anvil.yaml",
            sim.base_url,
            scaling={"workers": 1, "max_agents": 1, "max_concurrent_jobs": 1},
            retries={"max_attempts": 8, "backoff_base_s": 0.01, "backoff_max_s": 0.02},
            circuit_breaker={"failure_threshold": 2, "recovery_timeout_s": 30},
            routing={"fallbacks": {OPUS: [SONNET]}, **routing},
        )
        out = tmp_path / "out.jsonl"
        assert run_inprocess(config, batch, out).exit_code == ExitCode.OK
        stats = sim.stats()
    assert stats["by_model"][OPUS]["successes"] == 0
    return read_results(out)


def test_open_breaker_switches_jobs_to_the_fallback(tmp_path: Path) -> None:
    results = _fallback_run(tmp_path, fallback_after_529=50)  # only the breaker can switch
    assert all(r["status"] == "succeeded" and r["model"] == SONNET for r in results)
    assert results[0]["attempts"] >= 3  # two 529s on Opus opened the breaker, then Sonnet answered
    # once the breaker is open, later jobs go straight to the fallback
    assert all(r["attempts"] == 1 for r in results[1:])


def test_repeated_529s_switch_a_job_to_the_fallback_before_the_breaker_opens(tmp_path: Path) -> None:
    jobs = [{"id": "a", "prompt": f"@sim{{status=529, for_model={OPUS}}} q", "model": OPUS}]
    with SimServer(SimConfig(seed=1)).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", jobs)
        config = write_config(
            tmp_path / "anvil.yaml",
            sim.base_url,
            circuit_breaker={"failure_threshold": 100},
            routing={"fallbacks": {OPUS: [SONNET]}, "fallback_after_529": 2},
        )
        out = tmp_path / "out.jsonl"
        assert run_inprocess(config, batch, out).exit_code == ExitCode.OK
    (r,) = read_results(out)
    assert r["model"] == SONNET and r["attempts"] == 3
