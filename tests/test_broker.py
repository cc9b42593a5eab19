"""The worker's broker to the governor: grants in priority order, outcomes settled in batches,
a grant for an agent that gave up goes back, a lost governor is waited for until its replacement
comes (and fails the waiting agents if none does). The governor behind it is the real policy on
a clock the test moves."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from anvil_cli.engine.worker import broker as broker_module
from anvil_cli.engine.worker.broker import ASKS_AFTER_WAIT, GovernorBroker, GovernorLost
from anvil_cli.policy.governor import (
    BreakerPolicy,
    CallAsk,
    Governor,
    GovernorSeed,
    GovernorView,
    Grant,
    Granted,
    Limits,
    Outcome,
)

LIMITS = Limits(requests_per_minute=60, burst_size=1)  # one request now, one more a second
ASK = CallAsk(est_input_tokens=10, max_tokens=10, worst_cost_usd=0.0)
MODEL = "claude-haiku-4-5"


class FakeClockGovernor:
    """The real Governor as a GovernorClient, on a clock the test sets; counts round trips."""

    def __init__(self, seed: GovernorSeed | None = None) -> None:
        self.now = 0.0
        pools = lambda _model: ("default:haiku", LIMITS)  # noqa: E731
        self.gov = Governor(pools, BreakerPolicy(), max_usd=None, warn_usd=None, now=0.0, seed=seed)
        self.rounds: list[str] = []
        self.settled: list[int] = []
        self.released: list[int] = []
        self.lost = False

    def acquire_many(self, model: str, asks: list[CallAsk], priority: int, owner: int) -> Granted:
        if self.lost:
            raise EOFError("the governor's process is gone")
        self.rounds.append(f"acquire {len(asks)} p{priority}")
        return self.gov.acquire_many(model, asks, self.now, priority=priority, asker=owner)

    def settle_many(self, settled: list[tuple[int, Outcome]], released: list[int]) -> list[str]:
        if self.lost:
            raise EOFError("the governor's process is gone")
        self.rounds.append(f"settle {len(settled)}+{len(released)}")
        for ticket, outcome in settled:
            self.gov.settle(ticket, outcome, self.now)
            self.settled.append(ticket)
        for ticket in released:
            self.gov.release(ticket, self.now)
            self.released.append(ticket)
        return []

    def view(self) -> GovernorView:
        return self.gov.view(self.now)


async def _until(predicate: Any) -> None:
    while not predicate():  # the broker's thread answers through the loop: yield to it
        await asyncio.sleep(0)


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=30))  # a hang guard only


async def _grant_in_turn(priorities: list[int]) -> tuple[list[int], FakeClockGovernor]:
    """Agents of these priorities, all waiting before the broker starts, granted one a second
    (the bucket's refill) by the real governor on the test's clock: the priorities in the order
    they were granted, and the governor (its round trips)."""
    gov = FakeClockGovernor()
    broker = GovernorBroker(gov, 0, asyncio.get_running_loop())  # type: ignore[arg-type]
    order: list[int] = []

    async def agent(priority: int) -> None:
        grant = await broker.acquire(MODEL, ASK, priority)
        assert isinstance(grant, Grant)
        order.append(priority)
        broker.settle(grant.ticket, Outcome(ok=True, input_tokens=10, output_tokens=10))

    tasks = [asyncio.create_task(agent(p)) for p in priorities]
    await asyncio.sleep(0)
    broker.start()
    for step in range(1, len(priorities) + 1):
        await _until(lambda: len(order) >= step)  # noqa: B023
        gov.now += 1.0
    await asyncio.gather(*tasks)
    broker.close()
    assert len(gov.settled) == len(priorities)
    return order, gov


def test_waiting_agents_are_granted_most_urgent_first() -> None:
    order, _ = _run(_grant_in_turn([3, 2, 0, 1]))
    assert order == [0, 1, 2, 3]


def test_after_a_wait_only_the_most_urgent_few_are_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rate-bound: 40 agents wait on a bucket of one request a second. The first round asks for
    all 40; once told to wait, a round asks for the most urgent few only, not every waiting
    call again; grants still go most urgent first."""
    monkeypatch.setattr(broker_module, "MAX_WAIT_SLICE_S", 0.005)  # the test's clock is not the broker's
    order, gov = _run(_grant_in_turn([i % 4 for i in range(40)]))
    asked = [int(r.split()[1]) for r in gov.rounds if r.startswith("acquire")]
    assert order == sorted(order)  # most urgent first, throughout
    assert asked[0] == 40 and max(asked[1:]) <= ASKS_AFTER_WAIT  # not every waiting call again


def test_a_grant_for_an_agent_that_gave_up_goes_back() -> None:
    async def scenario() -> FakeClockGovernor:
        gov = FakeClockGovernor()
        loop = asyncio.get_running_loop()
        broker = GovernorBroker(gov, 0, loop)  # type: ignore[arg-type]
        first = await asyncio.wait_for(broker.start().acquire(MODEL, ASK, 2), timeout=30)
        assert isinstance(first, Grant)
        waiting = asyncio.create_task(broker.acquire(MODEL, ASK, 2))
        await _until(lambda: any(r.startswith("acquire") for r in gov.rounds[1:]))  # told to wait
        waiting.cancel()  # the run is stopping
        gov.now += 5.0  # capacity back: a grant may be drawn for the cancelled waiter...
        broker.release(first.ticket)
        await _until(lambda: gov.released)
        broker.close()
        return gov

    gov = _run(scenario())
    assert gov.gov.view(gov.now).in_flight == 0  # ...and none stays out


def test_a_lost_governor_is_waited_for_and_its_calls_settle_with_the_next() -> None:
    async def scenario() -> tuple[Grant, Grant, FakeClockGovernor]:
        lost = FakeClockGovernor()
        broker = GovernorBroker(lost, 0, asyncio.get_running_loop()).start()  # type: ignore[arg-type]
        first = await broker.acquire(MODEL, ASK, 2)
        assert isinstance(first, Grant)
        lost.lost = True
        broker.settle(first.ticket, Outcome(ok=True, input_tokens=10, output_tokens=10, cost_usd=0.25))
        waiting = asyncio.create_task(broker.acquire(MODEL, ASK, 2))
        await _until(lambda: broker._gov is None)  # noticed: the agent keeps waiting, nothing fails
        assert not waiting.done()
        new = FakeClockGovernor(GovernorSeed(generation=1))
        new.now = 60.0  # its buckets start empty: let them refill
        broker.replace(new)  # type: ignore[arg-type]
        second = await waiting
        assert isinstance(second, Grant)
        broker.close()
        return first, second, new

    first, second, new = _run(scenario())
    assert second.probe  # the new governor's breaker starts half-open: one probe first
    assert second.ticket > first.ticket  # numbered apart from the lost governor's grants
    assert new.gov.spent_usd == 0.25  # the call granted by the lost one still counts


def test_a_lost_governor_not_replaced_in_time_fails_the_waiting_agents() -> None:
    async def scenario() -> None:
        gov = FakeClockGovernor()
        gov.lost = True
        loop = asyncio.get_running_loop()
        broker = GovernorBroker(gov, 0, loop, lost_wait_s=0.0).start()  # type: ignore[arg-type]
        with pytest.raises(GovernorLost, match="lost the shared rate-limit governor"):
            await broker.acquire(MODEL, ASK, 2)
        with pytest.raises(GovernorLost, match="lost the shared rate-limit governor"):
            await broker.acquire(MODEL, ASK, 2)  # and every later ask, at once
        broker.close()

    _run(scenario())
