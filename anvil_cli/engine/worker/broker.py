"""A worker's one line to the governor: agents (asyncio tasks) ask it for a grant and hand it
their outcomes without ever blocking the event loop or paying a round trip per call.

One thread per worker talks to the governor. Each round it settles every outcome queued since
the last one (`settle_many`) and asks, per model, for grants for the calls waiting, most urgent
first (`acquire_many`): the governor sees aggregate traffic and exact spend; a call pays no IPC
on its own path. Rounds follow each other as fast as there is work (a group commit: whatever
queued during one round trip goes in the next) and idle otherwise. The loop wakes the thread at
most once per turn (what its agents asked, settled and released during the turn, together), and
the thread answers a round's grants in one callback on the loop, not one per grant.

Grants are drawn only for calls waiting, so none sits unused; a worker that dies holding some
has them released by the conductor (`release_owner`).

If the governor is lost, waiting calls keep waiting and finished calls keep their outcomes
until the conductor hands over a new governor (`replace`): those outcomes then settle there, so
what the calls cost still counts against the budget. Only if none comes within
`GOVERNOR_WAIT_S` do the waiting calls fail with `GovernorLost`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from anvil_cli.engine.governor_host.client import GovernorClient
from anvil_cli.policy.governor import BreakerView, CallAsk, Deny, Grant, Outcome, Wait

MAX_ASKS_PER_ROUND: Final = 256  # calls of one model asked for in one round trip
# after a Wait, a round asks for the most urgent few only (at least this many, or twice what the
# last round was granted): a rate-bound run would otherwise send every waiting call's ask a
# few times a second to be told to wait again
ASKS_AFTER_WAIT: Final = 8
MAX_WAIT_SLICE_S: Final = 0.25  # after a Wait, ask again at least this often (a grant may free capacity)
IDLE_WAKE_S: Final = 1.0  # an idle thread still wakes this often (breaker states, stop)
BREAKERS_EVERY_S: Final = 1.0
GOVERNOR_WAIT_S: Final = 30.0  # a lost governor not replaced within this fails the waiting calls


class GovernorLost(Exception):
    """Raised to waiting agents when the governor cannot be reached any more."""


@dataclass(order=True, slots=True)
class _Waiter:
    priority: int
    order: int
    model: str = field(compare=False)
    ask: CallAsk = field(compare=False)
    future: asyncio.Future[Grant | Wait | Deny] = field(compare=False)


class GovernorBroker:
    """Grants for this worker's agents, from a thread that batches the governor's round trips."""

    def __init__(
        self,
        governor: GovernorClient,
        owner: int,
        loop: asyncio.AbstractEventLoop,
        lost_wait_s: float = GOVERNOR_WAIT_S,
    ) -> None:
        self._gov: GovernorClient | None = governor  # None: lost, waiting for `replace`
        self._gov_lost_at = 0.0
        self._lost_wait_s = lost_wait_s
        self._owner = owner
        self._loop = loop
        self._cond = threading.Condition()
        self._waiting: dict[str, list[_Waiter]] = {}  # model -> heap, most urgent first
        self._settled: list[tuple[int, Outcome]] = []
        self._released: list[int] = []
        self._retry_at: dict[str, float] = {}  # model -> when to ask again after a Wait
        self._ask_limit: dict[str, int] = {}  # model -> asks in its next round, after a Wait
        self._order = itertools.count()
        self._closed = False
        self._kicked = False  # a wake-up of the thread is scheduled on the loop
        self._loop_thread = threading.get_ident()  # made on the loop
        self._lost: BaseException | None = None
        self._lost_cause: BaseException = ConnectionError("the governor is gone")
        self._breakers: dict[str, BreakerView] = {}
        self._breakers_at = 0.0
        self._thread = threading.Thread(target=self._serve, name=f"governor-broker-{owner}", daemon=True)

    def start(self) -> GovernorBroker:
        self._thread.start()
        return self

    # -- the agents' side (event loop) ---------------------------------------------------------

    async def acquire(self, model: str, ask: CallAsk, priority: int) -> Grant | Wait | Deny:
        """A grant for one call; or a `Wait` for an open breaker (the caller may switch model and
        ask again), or a `Deny` (the budget cannot cover it). Cancel to give up waiting."""
        return await self.ask(model, ask, priority)

    def ask(self, model: str, ask: CallAsk, priority: int) -> asyncio.Future[Grant | Wait | Deny]:
        """`acquire`'s answer as a future of the loop (no task made per call). Cancel it, or set
        its result or exception, to give up waiting: a grant that arrives anyway goes back."""
        future: asyncio.Future[Grant | Wait | Deny] = self._loop.create_future()
        with self._cond:
            if self._lost is not None:
                raise _lost(self._lost)
            heapq.heappush(
                self._waiting.setdefault(model, []), _Waiter(priority, next(self._order), model, ask, future)
            )
            self._kick()
        return future

    def settle(self, ticket: int, outcome: Outcome) -> None:
        with self._cond:
            self._settled.append((ticket, outcome))
            self._kick()

    def release(self, ticket: int) -> None:
        """A grant whose request was never sent."""
        with self._cond:
            self._released.append(ticket)
            self._kick()

    def _kick(self) -> None:
        """Wake the thread at the end of this turn of the loop (once, whatever queued during the
        turn), or at once from another thread. Called holding `_cond`."""
        if threading.get_ident() != self._loop_thread:
            self._cond.notify()
        elif not self._kicked:
            self._kicked = True
            self._loop.call_soon(self._wake)

    def _wake(self) -> None:
        with self._cond:
            self._kicked = False
            self._cond.notify()

    def breakers(self) -> dict[str, BreakerView]:
        """The governor's breakers as of the last second (for choosing a fallback model)."""
        return self._breakers

    def replace(self, governor: GovernorClient) -> None:
        """The conductor started a new governor in place of a lost one: ask it from now on."""
        with self._cond:
            self._gov = governor
            self._retry_at.clear()
            self._cond.notify()

    def close(self) -> None:
        """Settle what is queued, stop the thread; waiting agents are not answered any more."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=10)

    # -- the thread ----------------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(self._has_work, timeout=self._idle_s())
                gov = self._gov
                if gov is None:
                    if self._closed or time.monotonic() - self._gov_lost_at >= self._lost_wait_s:
                        self._fail_all(self._lost_cause)
                        return
                    continue
                settled, self._settled = self._settled, []
                released, self._released = self._released, []
                closed = self._closed
                # asks queued after these outcomes wait for the next round: an agent that
                # settled a call and asks again is answered by a governor that knows the outcome
                cutoff = next(self._order)
            try:
                self._round(gov, settled, released, ask=not closed, cutoff=cutoff)
            except (OSError, EOFError, ConnectionError) as exc:  # the governor's process is gone
                self._governor_lost(gov, exc, settled)
                continue
            if closed:
                return

    def _governor_lost(
        self, gov: GovernorClient, exc: BaseException, settled: list[tuple[int, Outcome]]
    ) -> None:
        """Keep the outcomes for the next governor (their cost counts there); grants of the lost
        one need no release."""
        with self._cond:
            if self._gov is gov:  # not replaced meanwhile
                self._gov = None
                self._gov_lost_at = time.monotonic()
                self._lost_cause = exc
            self._settled[:0] = settled

    def _has_work(self) -> bool:
        if self._closed:
            return True
        if self._gov is None:
            return time.monotonic() - self._gov_lost_at >= self._lost_wait_s
        if self._settled or self._released:
            return True
        now = time.monotonic()
        return any(heap and self._retry_at.get(m, 0.0) <= now for m, heap in self._waiting.items())

    def _idle_s(self) -> float:
        if self._gov is None:
            return IDLE_WAKE_S
        due = [self._retry_at.get(m, 0.0) for m, heap in self._waiting.items() if heap]
        return max(0.001, min(due) - time.monotonic()) if due else IDLE_WAKE_S

    def _round(
        self,
        gov: GovernorClient,
        settled: list[tuple[int, Outcome]],
        released: list[int],
        *,
        ask: bool,
        cutoff: int,
    ) -> None:
        if settled or released:
            gov.settle_many(settled, released)
            settled.clear()  # counted: not to be settled again with another governor
        if not ask:  # closing: settle what is done, take nothing more
            return
        answers: list[tuple[asyncio.Future[Grant | Wait | Deny], Grant | Wait | Deny]] = []
        try:
            for model in self._due_models():
                self._ask(gov, model, cutoff, answers)
        finally:  # every answer drawn reaches its agent (or goes back), in one callback
            if answers:
                self._loop.call_soon_threadsafe(_deliver_all, answers, self.release)
        if time.monotonic() - self._breakers_at >= BREAKERS_EVERY_S:
            self._breakers = dict(gov.view().breakers)
            self._breakers_at = time.monotonic()

    def _due_models(self) -> list[str]:
        now = time.monotonic()
        with self._cond:
            return [m for m, heap in self._waiting.items() if heap and self._retry_at.get(m, 0.0) <= now]

    def _ask(
        self,
        gov: GovernorClient,
        model: str,
        cutoff: int,
        answers: list[tuple[asyncio.Future[Grant | Wait | Deny], Grant | Wait | Deny]],
    ) -> None:
        with self._cond:
            heap = self._waiting[model]
            asked = (w for w in heap if w.order < cutoff and not w.future.done())
            live = heapq.nsmallest(self._ask_limit.get(model, MAX_ASKS_PER_ROUND), asked)
            if not live:
                self._waiting[model] = [w for w in heap if not w.future.done()]
                heapq.heapify(self._waiting[model])
                return
        granted = gov.acquire_many(model, [w.ask for w in live], live[0].priority, self._owner)
        answered: list[_Waiter] = []
        for i, denial in granted.denied:  # their scope's budget is spent: those jobs stop
            answers.append((live[i].future, denial))
            answered.append(live[i])
        aside = {i for i, _ in granted.denied} | set(granted.waiting)  # waiting: they ask again
        live = [w for i, w in enumerate(live) if i not in aside]
        for waiter, grant in zip(live, granted.grants, strict=False):
            answers.append((waiter.future, grant))
            answered.append(waiter)
        then = granted.then
        if isinstance(then, Deny) or (isinstance(then, Wait) and then.reason == "breaker"):
            answered += live[len(granted.grants) :]  # they decide: another model, or stop
            answers.extend((waiter.future, then) for waiter in live[len(granted.grants) :])
        elif isinstance(then, Wait):
            self._retry_at[model] = time.monotonic() + min(then.seconds, MAX_WAIT_SLICE_S)
            self._ask_limit[model] = max(ASKS_AFTER_WAIT, 2 * len(granted.grants))
        else:  # every ask granted: the next round asks for every waiting call again
            self._retry_at.pop(model, None)
            self._ask_limit.pop(model, None)
        with self._cond:
            done = set(map(id, answered))
            rest = [w for w in self._waiting[model] if id(w) not in done and not w.future.done()]
            heapq.heapify(rest)
            self._waiting[model] = rest

    def _fail_all(self, exc: BaseException) -> None:
        with self._cond:
            self._lost = exc
            waiters = [w for heap in self._waiting.values() for w in heap]
            self._waiting.clear()
        for waiter in waiters:
            self._loop.call_soon_threadsafe(_fail, waiter.future, exc)


def _deliver_all(
    answers: list[tuple[asyncio.Future[Grant | Wait | Deny], Grant | Wait | Deny]],
    release: Callable[[int], None],
) -> None:
    """On the loop: answer the waiting agents of one round; a grant for one that gave up goes back."""
    for future, answer in answers:
        if future.done():
            if isinstance(answer, Grant):
                release(answer.ticket)
        else:
            future.set_result(answer)


def _lost(exc: BaseException) -> GovernorLost:
    return GovernorLost(f"lost the shared rate-limit governor ({exc!r})")


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(_lost(exc))
