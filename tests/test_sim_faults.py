"""Random faults at their configured rates (statistically), with the async SDK."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import anthropic
import pytest

from tests.sim_fixtures import HAIKU, SimFactory, fixture_sim_factory, user  # noqa: F401

N = 300


async def _outcomes(base_url: str, n: int, **kwargs: Any) -> tuple[Counter[str], list[float]]:
    """Outcome names and durations of `n` distinct concurrent requests."""
    async with anthropic.AsyncAnthropic(base_url=base_url, api_key="k", max_retries=0) as client:

        async def one(i: int) -> tuple[str, float]:
            started = time.perf_counter()
            try:
                await client.messages.create(model=HAIKU, max_tokens=50, messages=user(f"job {i}"), **kwargs)
                name = "ok"
            except anthropic.APIStatusError as exc:
                name = str(exc.status_code)
            except anthropic.APIConnectionError:
                name = "dropped"
            return name, time.perf_counter() - started

        results = await asyncio.gather(*(one(i) for i in range(n)))
    return Counter(name for name, _ in results), [d for _, d in results]


@pytest.mark.parametrize(
    ("setting", "outcome"), [("overloaded_rate", "529"), ("error_rate", "500"), ("drop_rate", "dropped")]
)
def test_fault_rate(sim_factory: SimFactory, setting: str, outcome: str) -> None:
    server = sim_factory(**{setting: 0.3}, seed=1)
    counts, _ = asyncio.run(_outcomes(server.base_url, N))
    assert 0.3 * N - 35 <= counts[outcome] <= 0.3 * N + 35
    assert counts[outcome] + counts["ok"] == N
    assert server.stats()["by_status"].get(outcome, 0) == counts[outcome]


def test_slow_rate(sim_factory: SimFactory) -> None:
    server = sim_factory(slow_rate=0.3, slow_ms=400, seed=2)
    _, durations = asyncio.run(_outcomes(server.base_url, 100))
    slow = sum(d >= 0.35 for d in durations)
    assert 15 <= slow <= 45


def test_faults_are_reproducible(sim_factory: SimFactory) -> None:
    first = asyncio.run(_outcomes(sim_factory(overloaded_rate=0.5, seed=3).base_url, 40))[0]
    second = asyncio.run(_outcomes(sim_factory(overloaded_rate=0.5, seed=3).base_url, 40))[0]
    assert first == second


def test_peak_concurrency_and_latency(sim_factory: SimFactory) -> None:
    server = sim_factory(latency_ms=200)
    counts, durations = asyncio.run(_outcomes(server.base_url, 12))
    assert counts["ok"] == 12 and min(durations) >= 0.2
    stats = server.stats()
    assert stats["peak_concurrent"] == 12 and stats["in_flight"] == 0
