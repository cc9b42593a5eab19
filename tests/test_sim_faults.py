"""Random faults at their configured rates (statistically), with the async SDK.

No test here reads a clock: the simulator's delays go through `sim_sleeps`, which records them,
and slowed answers are counted by the simulator itself (`slowed` in its stats).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import anthropic
import pytest

from tests.sim_fixtures import (  # noqa: F401
    HAIKU,
    SimFactory,
    SimSleeps,
    fixture_sim_factory,
    fixture_sim_sleeps,
    user,
)

N = 300
HANG_GUARD_S = 60.0  # only against a hang, never a measure of speed


async def _outcomes(base_url: str, n: int, **kwargs: Any) -> Counter[str]:
    """Outcome names of `n` distinct concurrent requests."""
    async with anthropic.AsyncAnthropic(base_url=base_url, api_key="k", max_retries=0) as client:

        async def one(i: int) -> str:
            try:
                await client.messages.create(model=HAIKU, max_tokens=50, messages=user(f"job {i}"), **kwargs)
            except anthropic.APIStatusError as exc:
                return str(exc.status_code)
            except anthropic.APIConnectionError:
                return "dropped"
            return "ok"

        names = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), HANG_GUARD_S)
    return Counter(names)


@pytest.mark.parametrize(
    ("setting", "outcome"), [("overloaded_rate", "529"), ("error_rate", "500"), ("drop_rate", "dropped")]
)
def test_fault_rate(sim_factory: SimFactory, setting: str, outcome: str) -> None:
    server = sim_factory(**{setting: 0.3}, seed=1)
    counts = asyncio.run(_outcomes(server.base_url, N))
    assert 0.3 * N - 35 <= counts[outcome] <= 0.3 * N + 35
    assert counts[outcome] + counts["ok"] == N
    assert server.stats()["by_status"].get(outcome, 0) == counts[outcome]


def test_slow_rate(sim_factory: SimFactory, sim_sleeps: SimSleeps) -> None:
    server = sim_factory(slow_rate=0.3, slow_ms=400, seed=2)
    counts = asyncio.run(_outcomes(server.base_url, 100))
    assert counts["ok"] == 100
    slowed = server.stats()["slowed"]
    assert 15 <= slowed <= 45
    # each slowed answer was held slow_ms, the others not at all (no base latency configured)
    assert sorted(sim_sleeps.delays) == [0.4] * slowed


def test_faults_are_reproducible(sim_factory: SimFactory) -> None:
    first = asyncio.run(_outcomes(sim_factory(overloaded_rate=0.5, seed=3).base_url, 40))
    second = asyncio.run(_outcomes(sim_factory(overloaded_rate=0.5, seed=3).base_url, 40))
    assert first == second


def test_peak_concurrency_and_latency(sim_factory: SimFactory, sim_sleeps: SimSleeps) -> None:
    server = sim_factory(latency_ms=200)
    sim_sleeps.hold(12)  # every answer waits until all 12 requests are in, however slow the sending
    counts = asyncio.run(_outcomes(server.base_url, 12))
    assert counts["ok"] == 12 and sim_sleeps.delays == [0.2] * 12
    stats = server.stats()
    assert stats["peak_concurrent"] == 12 and stats["in_flight"] == 0 and stats["slowed"] == 0
