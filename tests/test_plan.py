"""`anvil plan`: tokens, cost and duration; within 15% of what `anvil run` then costs and of the
run's schedule (its governor at a fake clock)."""

from __future__ import annotations

import heapq
import json
import math
from itertools import count
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from anvil_cli.config.load import load_settings
from anvil_cli.config.settings import Settings
from anvil_cli.engine.governor_host.manager import limits_resolver
from anvil_cli.exitcodes import ExitCode
from anvil_cli.jobs.job import Job
from anvil_cli.plan.estimate import (
    OutputModel,
    api_counter,
    count_request,
    make_plan,
    truncated_lognormal_mean,
)
from anvil_cli.policy.governor import BreakerPolicy, Governor, Grant, Outcome, Wait
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import MODEL, run_cli, run_inprocess, write_config, write_jsonl_batch


def _jobs(n: int, model: str = "claude-haiku-4-5", max_tokens: int = 100) -> list[Job]:
    msgs = [{"role": "user", "content": "x" * 396}]  # 99 + 4 + 8 = 111 estimated tokens
    return [Job(id=f"j{i}", seq=i, messages=msgs, model=model, max_tokens=max_tokens) for i in range(n)]


def test_cost_and_binding_limit_from_the_configured_limits() -> None:
    settings = Settings.model_validate(
        {
            "rate_limits": {
                "default": {"requests_per_minute": 600, "burst_size": 10, "output_tokens_per_minute": 6000}
            },
            "scaling": {"max_agents": 50, "max_concurrent_jobs": 50},
        }
    )
    plan = make_plan(_jobs(100), settings, None, OutputModel(latency_s=2.0, mean_tokens=50))
    assert plan.token_source == "estimate"
    (m,) = plan.models
    assert (m.input_tokens, m.expected_output_tokens, m.max_output_tokens) == (11_100, 5000, 10_000)
    assert plan.expected_usd == pytest.approx((11_100 * 1 + 5000 * 5) / 1e6)
    assert plan.worst_usd == pytest.approx((11_100 * 2 + 10_000 * 5) / 1e6)
    (pool,) = plan.pools
    # requests: (100 - 10) / 10 per s = 9 s; output: 5000 fits in a minute's bucket
    assert pool.seconds_by_limit == {"requests": 9.0, "output tokens": 0.0}
    assert plan.binding_limit == "requests" and plan.duration_s == pytest.approx(11.0)
    assert pool.concurrency_needed == pytest.approx(100 / 9 * 2.0, rel=0.01)


def test_output_tokens_can_bind_and_concurrency_can_bind() -> None:
    settings = Settings.model_validate(
        {"rate_limits": {"default": {"requests_per_minute": 60000, "output_tokens_per_minute": 600}}}
    )
    plan = make_plan(_jobs(20), settings, None, OutputModel(latency_s=1.0, mean_tokens=60))
    assert plan.binding_limit == "output tokens"  # 1,200 tokens, 600 in the bucket, 10/s after
    assert plan.duration_s == pytest.approx(61.0)
    few_agents = Settings.model_validate(
        {"scaling": {"min_agents": 1, "max_agents": 2, "max_concurrent_jobs": 2}}
    )
    plan = make_plan(_jobs(20), few_agents, None, OutputModel(latency_s=1.0, ratio=0.5))
    assert plan.binding_limit == "concurrency (agents)" and plan.duration_s == pytest.approx(10.0)
    assert plan.models[0].expected_output_tokens == 1000


def test_count_tokens_never_sees_anvil_command() -> None:
    tool = {"name": "lookup", "description": "d", "input_schema": {"type": "object"}}
    job = Job(
        id="t",
        seq=0,
        messages=[{"role": "user", "content": "hi"}],
        model="claude-haiku-4-5",
        max_tokens=5,
        params={"tools": [{**tool, "anvil_command": "python lookup.py"}], "tool_choice": {"type": "auto"}},
    )
    sent: list[dict[str, Any]] = []

    def count_tokens(**kwargs: Any) -> SimpleNamespace:
        sent.append(kwargs)
        return SimpleNamespace(input_tokens=42)

    client = SimpleNamespace(messages=SimpleNamespace(count_tokens=count_tokens))
    plan = make_plan([job], Settings(), api_counter(client), OutputModel(latency_s=1.0, mean_tokens=5))
    assert plan.models[0].input_tokens == 42
    assert sent == [
        {
            "model": "claude-haiku-4-5",
            "messages": job.messages,
            "tools": [tool],
            "tool_choice": {"type": "auto"},
        }
    ]
    assert count_request(job.request())["tools"] == [tool]  # on its own too


def test_truncated_lognormal_mean() -> None:
    assert truncated_lognormal_mean(120, 0.5, 10**9) == pytest.approx(120)
    assert truncated_lognormal_mean(120, 0.5, 64) < 64


def _schedule_s(settings: Settings, jobs: int, latency_s: float, output_tokens: int) -> float:
    """First call to last answer of `jobs` calls of `latency_s` each, at a fake clock: the run's
    own governor (its pool limits and pacing margins) fed by the run's agents, each asking again
    as soon as it is told to. What the plan models; the real run adds only the machine's delays
    (`python benchmarks/bench_plan.py` measures those)."""
    gov = Governor(limits_resolver(settings), BreakerPolicy(), max_usd=None, warn_usd=None, now=0.0)
    tie = count()
    queue: list[tuple[float, int, Grant | None]] = []
    for _ in range(min(jobs, settings.scaling.agent_limit())):
        heapq.heappush(queue, (0.0, next(tie), None))
    left, first, last = jobs, math.inf, 0.0
    while queue:
        now, _, answered = heapq.heappop(queue)
        if answered is not None:
            gov.settle(answered.ticket, Outcome(ok=True, input_tokens=100, output_tokens=output_tokens), now)
            last = now
        if not left:
            continue  # this agent has nothing left to do
        decision = gov.acquire(MODEL, 100, 64, 0.0, now)
        if isinstance(decision, Grant):
            left -= 1
            first = min(first, now)
            heapq.heappush(queue, (now + latency_s, next(tie), decision))
        else:
            assert isinstance(decision, Wait)
            heapq.heappush(queue, (now + decision.seconds, next(tie), None))
    return last - first


@pytest.mark.slow  # a whole run or several: the slow tier (CI runs it after the default suite)
def test_plan_is_within_15_percent_of_the_run(tmp_path: Path) -> None:
    limits = {"requests_per_minute": 1200, "burst_size": 5}
    # The server has no limits of its own here: Anvil's configured limits bind. (With the same
    # limits on both sides the client and server buckets race, and each 429's retry-after of at
    # least 1 s pauses the pool: something the plan does not model.)
    sim_cfg = SimConfig(seed=4, latency_ms=100, output_tokens=40)
    with SimServer(sim_cfg).start_thread() as sim:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"plan question {i} " * 20 for i in range(70)])
        config = write_config(
            tmp_path / "anvil.yaml",
            sim.base_url,
            rate_limits={"default": limits},
            plan={"expected_output_tokens": 40, "assumed_latency_s": 0.1},
            cache={"enabled": False},
        )
        proc = run_cli("plan", str(batch), "--config", str(config), "--json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        plan = json.loads(proc.stdout)
        assert plan["token_source"] == "count_tokens" and sim.stats()["requests"] == 0
        assert plan["binding_limit"] == "requests"
        report = run_inprocess(config, batch)
        assert sim.stats()["requests"] == 70  # each job called once
    assert report.exit_code == ExitCode.OK
    cost = report.summary["run_cost_usd"]
    assert abs(plan["expected_usd"] - cost) / cost < 0.15, (plan["expected_usd"], cost)
    # the duration against the run's schedule at a fake clock: a loaded machine cannot move it
    scheduled_s = _schedule_s(load_settings(config, env={}), 70, plan["assumed_latency_s"], 40)
    gap = abs(plan["duration_s"] - scheduled_s) / scheduled_s
    assert gap < 0.15, (plan["duration_s"], scheduled_s)  # clock-ok: both on a fake clock


def test_plan_without_a_key_says_it_estimated(tmp_path: Path) -> None:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a", "b"])
    proc = run_cli("plan", str(batch), cwd=tmp_path, secret="")
    assert proc.returncode == 0, proc.stderr
    assert "local estimate" in proc.stdout and "worst case" in proc.stdout and "binding" in proc.stdout
