"""An agent's retries (`RetryPolicy`): when a failed try of a call is tried again, and after how
long. A try that failed with a transient API error (`Verdict.RETRY`: 429, 408, 409, 5xx, 529,
a dropped connection, a timeout) is tried again until `retries.max_attempts` tries were made,
after exponential backoff with full jitter that honours the server's `retry-after`
(`policy/governor/backoff.py`); any other error ends the call at once. The SDK's own retries are
off: tenacity is their one owner.

Tenacity decides, the agent does: one `Retrying` per worker holds the rules (`stop_after_attempt`,
`retry_if_exception`, `WaitBackoff`), asked after each failed try with that try's own
`RetryCallState`; the agent's loop (`Agent._with_retries`) sleeps (stoppable by the run) and tries
again. A tenacity `AsyncRetrying` made per call, as before, held itself in reference cycles (its
state's bound methods) that kept each call's conversation, job and answer alive until the garbage
collector's next pass.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import anthropic
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from anvil_cli.config.settings import Retries
from anvil_cli.engine.worker.classify import Verdict, classify
from anvil_cli.policy.governor import WaitBackoff


def is_transient(exc: BaseException) -> bool:
    """An API error another try may fix."""
    return isinstance(exc, anthropic.APIError) and classify(exc).verdict is Verdict.RETRY


class RetryPolicy:
    """`retries:` as the agents of one worker apply them: tenacity's rules, asked per failed try."""

    __slots__ = ("_rules",)

    def __init__(
        self,
        max_attempts: int,
        base_s: float,
        max_s: float,
        rand: Callable[[], float] = random.random,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._rules = Retrying(
            stop=stop_after_attempt(max_attempts),
            wait=WaitBackoff(base_s, max_s, rand, wall_clock),
            retry=retry_if_exception(is_transient),
            reraise=True,
        )

    @classmethod
    def of(cls, retries: Retries) -> RetryPolicy:
        return cls(retries.max_attempts, retries.backoff_base_s, retries.backoff_max_s)

    def wait_s(self, tried: int, exc: BaseException) -> float | None:
        """Seconds to wait before trying again once try number `tried` (1-based) failed with
        `exc`; None when it is not tried again (not transient, or the tries are used up)."""
        state = RetryCallState(self._rules, fn=None, args=(), kwargs={})
        state.attempt_number = tried
        state.set_exception((type(exc), exc, exc.__traceback__))
        if not self._rules.retry(state) or self._rules.stop(state):
            return None
        return float(self._rules.wait(state))
