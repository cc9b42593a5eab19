"""An agent's retries (`RetryPolicy`): when a failed try of a call is tried again, and after how
long. A try that failed with a transient API error (`Verdict.RETRY`: 429, 408, 409, 5xx, 529,
a dropped connection, a timeout) is tried again until `retries.max_attempts` tries were made,
after exponential backoff with full jitter that honours the server's `retry-after`
(`policy/governor/backoff.py`); any other error ends the call at once. The SDK's own retries are
off: this is their one owner.

These are the rules tenacity applied (`stop_after_attempt`, `WaitBackoff`, `retry_if_exception`)
as one object per worker, asked by the agent's own loop (`Agent._with_retries`): tenacity's
`AsyncRetrying` made per call holds itself in reference cycles (its state's bound methods) that
kept each call's conversation, job and answer alive until the garbage collector's next pass.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anthropic

from anvil_cli.config.settings import Retries
from anvil_cli.engine.worker.classify import Verdict, classify
from anvil_cli.policy.governor import retry_after_s
from anvil_cli.policy.governor.backoff import backoff_s


def is_transient(exc: BaseException) -> bool:
    """An API error another try may fix."""
    return isinstance(exc, anthropic.APIError) and classify(exc).verdict is Verdict.RETRY


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`retries:` as the agents of one worker apply them."""

    max_attempts: int
    base_s: float
    max_s: float
    rand: Callable[[], float] = field(default=random.random)
    wall_clock: Callable[[], float] = field(default=time.time)

    @classmethod
    def of(cls, retries: Retries) -> RetryPolicy:
        return cls(retries.max_attempts, retries.backoff_base_s, retries.backoff_max_s)

    def wait_s(self, tried: int, exc: BaseException) -> float | None:
        """Seconds to wait before trying again once try number `tried` (1-based) failed with
        `exc`; None when it is not tried again (not transient, or the tries are used up)."""
        if not is_transient(exc) or tried >= self.max_attempts:
            return None
        server_wait = retry_after_s(exc, wall_now=self.wall_clock())
        return backoff_s(tried, self.base_s, self.max_s, self.rand(), server_wait)
