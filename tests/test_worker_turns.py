"""A worker pays for its traffic once per turn of its loop, not once per call: the events its
agents report during a turn leave as one message (in order, and the conductor's backend reads
them back one by one), and the broker's thread is woken once for everything the agents asked,
settled and released during the turn. The garbage collector is set for the run and put back."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
from types import SimpleNamespace
from typing import Any

from anvil_cli.engine import garbage
from anvil_cli.engine.attempts import Attempt
from anvil_cli.engine.backends.local import LocalBackend
from anvil_cli.engine.events import CallFailed, CallSettled, Heartbeat, WorkerEvent
from anvil_cli.engine.worker.broker import GovernorBroker
from anvil_cli.engine.worker.loop import _Outbox
from anvil_cli.policy.governor import Grant, Outcome
from tests.test_broker import ASK, MODEL, FakeClockGovernor, _run, _until


def test_the_events_of_one_turn_leave_as_one_message_and_arrive_in_order() -> None:
    receiver, sender = multiprocessing.Pipe(duplex=False)
    sent: list[WorkerEvent] = [
        CallSettled(0, 7, 0.25, ""),
        CallFailed(0, 8, Attempt(1, MODEL, 529, latency_s=0.1, error_type="overloaded_error")),
        Heartbeat(0),
    ]

    async def scenario() -> None:
        outbox = _Outbox(sender, asyncio.get_running_loop())
        for event in sent:  # one turn of the loop: no await between them
            outbox.put(event)
        await _until(receiver.poll)
        outbox.put(Heartbeat(0))  # a later turn: a message of its own
        await asyncio.sleep(0)
        outbox.close()

    _run(scenario())
    first = receiver.recv()
    assert first == sent  # one message: the turn's events, in the order reported
    assert receiver.recv() == [Heartbeat(0)]
    receiver2, sender2 = multiprocessing.Pipe(duplex=False)
    sender2.send(first)
    sender2.send(Heartbeat(1))  # one event alone is read as before
    proc: Any = SimpleNamespace(events=receiver2, closed=False)
    assert LocalBackend._receive(proc, 100) == [*sent, Heartbeat(1)]


def test_the_broker_thread_is_woken_once_for_a_turn_of_settled_calls() -> None:
    async def scenario() -> FakeClockGovernor:
        gov = FakeClockGovernor()
        broker = GovernorBroker(gov, 0, asyncio.get_running_loop()).start()  # type: ignore[arg-type]
        grants: list[Grant] = []
        for _ in range(3):  # one request a second: three calls under way
            grant = await broker.acquire(MODEL, ASK, 2)
            assert isinstance(grant, Grant)
            grants.append(grant)
            gov.now += 1.0
        for grant in grants:  # their three agents settle in the same turn
            broker.settle(grant.ticket, Outcome(ok=True, input_tokens=10, output_tokens=10))
        await _until(lambda: len(gov.settled) == 3)
        broker.close()
        return gov

    gov = _run(scenario())
    settles = [r for r in gov.rounds if r.startswith("settle")]
    assert settles == ["settle 3+0"]  # one round trip for the turn's three outcomes


def test_the_collector_is_set_for_the_run_and_put_back() -> None:
    before = gc.get_threshold()
    saved = garbage.for_the_run()
    try:
        assert saved == before
        assert gc.get_threshold() == (garbage.YOUNG, garbage.MIDDLE, garbage.OLD)
        assert gc.get_freeze_count() > 0  # what existed is out of the collector's sight
    finally:
        garbage.restore(saved)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
