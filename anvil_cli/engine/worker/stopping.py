"""How an agent's job ends early: given up because the run is stopping (`Abandoned`: the job
goes back to pending; `ScopeStopped` when its scope's budget is spent), or the run stopped because
no further call can succeed (`StopRun`); and
the waits an agent cuts short when the run begins stopping (`stopped_within`, and `Asks` for the
governor's answers)."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from anvil_cli.policy.governor.scoped import SCOPE_DENY

T = TypeVar("T")


class Abandoned(Exception):
    """Raised when a job is given up because the run is stopping; it goes back to pending."""

    attempts: int = 0  # (what its calls cost was reported call by call: see AgentContext.on_spend)


class StopRun(Exception):
    """Raised when no further request can succeed (auth, spend cap, budget): the run stops."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.attempts = 0


class ScopeStopped(Abandoned):
    """Raised when the budget of a scope the job is under is spent (`budget.scopes`, or the state
    dir's day or month): the job goes back to pending, for a resume, while the run goes on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def stop_for(reason: str, message: str) -> StopRun | ScopeStopped:
    """What a governor's denial ends: the job alone when its scope is spent, else the run."""
    return ScopeStopped(message) if reason == SCOPE_DENY else StopRun(reason, message)


async def stopped_within(stopping: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds`; True if the run began stopping meanwhile."""
    try:
        await asyncio.wait_for(stopping.wait(), timeout=max(0.0, seconds))
    except TimeoutError:
        return False
    return True


class Asks:
    """The governor's answers a worker's agents are waiting for, given up at once when the run
    begins stopping: one task watches `stopping` for all of them, none is made per call."""

    def __init__(self, stopping: asyncio.Event) -> None:
        self._stopping = stopping
        self._waiting: set[asyncio.Future[Any]] = set()
        self._watch: asyncio.Future[None] | None = None

    async def answer(self, future: asyncio.Future[T]) -> T:
        """`future`'s result, or `Abandoned` if the run begins stopping first (the future is then
        done: the broker gives back a grant that arrives for it)."""
        if self._stopping.is_set():
            future.cancel()
            raise Abandoned("run is stopping")
        if self._watch is None:
            self._watch = asyncio.ensure_future(self._give_up())
        self._waiting.add(future)
        try:
            return await future
        finally:
            self._waiting.discard(future)

    async def _give_up(self) -> None:
        await self._stopping.wait()
        for future in self._waiting:
            if not future.done():
                future.set_exception(Abandoned("run is stopping"))
