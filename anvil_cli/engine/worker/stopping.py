"""How an agent's job ends early: given up because the run is stopping (`Abandoned`: the job
goes back to pending; `ScopeStopped` when its scope's budget is spent), or the run stopped because
no further call can succeed (`StopRun`); and
the waits an agent cuts short when the run begins stopping (`stopped_within`)."""

from __future__ import annotations

import asyncio

from anvil_cli.policy.governor.scoped import SCOPE_DENY


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
