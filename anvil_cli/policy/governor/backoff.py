"""Retry waits: exponential backoff with full jitter that honours the server's `retry-after`."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Final

from tenacity import RetryCallState
from tenacity.wait import wait_base

# 2 ** 60 seconds is far beyond any max_s; capping the exponent keeps the arithmetic finite.
_MAX_EXPONENT: Final = 60


def backoff_s(
    attempt: int, base_s: float, max_s: float, rand: float, retry_after_s: float | None = None
) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based): full jitter, at least `retry_after_s`."""
    exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
    jittered = rand * min(max_s, base_s * 2.0**exponent)
    if retry_after_s is None:
        return jittered
    return min(max(retry_after_s, jittered), max(max_s, retry_after_s))


def _seconds(text: str | None, scale: float) -> float | None:
    if text is None:
        return None
    try:
        value = float(text) * scale
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _http_date_in_s(text: str | None, wall_now: float | None) -> float | None:
    if text is None or wall_now is None:
        return None
    import email.utils  # here: an HTTP date is rare, and the governor's process needs no email (~3 ms)

    parsed = email.utils.parsedate_tz(text)
    if parsed is None:
        return None
    return max(0.0, float(email.utils.mktime_tz(parsed)) - wall_now)


def retry_after_s(exc: BaseException | None, wall_now: float | None = None) -> float | None:
    """The server's requested wait from an APIStatusError: `retry-after-ms`, else `retry-after`.

    `retry-after` may be seconds or an HTTP date; a date needs the wall-clock `wall_now` (epoch
    seconds) and is ignored without it. None when absent or unreadable.
    """
    response = getattr(exc, "response", None)  # an anthropic.APIStatusError (duck-typed: no SDK import)
    headers = getattr(response, "headers", None)
    if exc is None or headers is None or not hasattr(exc, "status_code"):
        return None
    from_ms = _seconds(headers.get("retry-after-ms"), 0.001)
    if from_ms is not None:
        return from_ms
    text = headers.get("retry-after")
    from_s = _seconds(text, 1.0)
    return from_s if from_s is not None else _http_date_in_s(text, wall_now)


class WaitBackoff(wait_base):
    """A tenacity wait strategy: `backoff_s` for the attempt, honouring the error's `retry-after`."""

    def __init__(
        self,
        base_s: float,
        max_s: float,
        rand: Callable[[], float] = random.random,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.rand = rand
        self.wall_clock = wall_clock

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        server_wait = retry_after_s(exc, wall_now=self.wall_clock()) if exc is not None else None
        return backoff_s(retry_state.attempt_number, self.base_s, self.max_s, self.rand(), server_wait)
