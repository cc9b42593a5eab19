"""When a Message Batches API call fails: stop the run, or say so in one line and wait.

Every call goes out with the SDK's retries off. A transient API error while polling,
downloading or looking up batches (connection, timeout, 408/409/429/5xx/529) is one plain line
and a wait (backoff from the poll interval, full jitter, at least the server's `retry-after`);
then the round is tried again, for as long as the run lasts (Ctrl-C stops it as usual). 401/403
or a spend-cap 429 stops the run (exit 3, resumable), as does an error retrying cannot fix.
Nothing but connect failures for `run.unreachable_after_s` while the API never answered stops
it too (the rule messages mode follows, `policy/unreachable.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anthropic
import httpx2

from anvil_cli.engine.modes.batches.context import BatchesContext
from anvil_cli.engine.run_end import RunEnd
from anvil_cli.engine.worker.classify import ErrorInfo, Verdict, classify
from anvil_cli.policy.governor.backoff import backoff_s, retry_after_s
from anvil_cli.policy.unreachable import UNREACHABLE, Reachability

BACKOFF_MAX_POLLS = 10.0  # transient API errors: wait at most this many poll intervals (jittered)


class ApiTrouble:
    """The API errors of one batches run: what the driver was doing, how many in a row, and
    whether the API was ever reached. `wait(seconds)` is the driver's wait (it ticks and steers)."""

    def __init__(self, ctx: BatchesContext, wait: Callable[[float], None]) -> None:
        self.ctx = ctx
        self.wait = wait
        self.doing = "talking to the Message Batches API"  # for the line after an API error
        self.failures = 0  # API errors in a row: the backoff's attempt number
        self.troubled = False  # an API error in this round
        self.reach = Reachability(ctx.settings.run.unreachable_after_s, str(ctx.client.base_url))

    def new_round(self) -> None:
        self.troubled = False

    def round_done(self) -> None:
        """A round ended without an exception: when it met no API error either, the API is there."""
        if not self.troubled:
            self.failures = 0
            self.reach.answered()

    def handle(self, exc: anthropic.APIError | httpx2.HTTPError) -> RunEnd | None:
        """After an API error: a RunEnd when the run must stop, else None after a backoff wait."""
        if isinstance(exc, httpx2.HTTPError):  # the results stream broke off mid-download
            info = ErrorInfo(Verdict.RETRY, "connection_error", str(exc) or type(exc).__name__, None, True)
        else:
            info = classify(exc)
        unreachable = self.unreachable(info)
        if unreachable is not None:
            return unreachable
        if info.verdict is Verdict.STOP_RUN:
            return RunEnd(stop_reason=info.type, stop_message=f"{self.doing}: {info.message}")
        if info.verdict is Verdict.FAIL_JOB and isinstance(exc, anthropic.APIStatusError):
            return RunEnd(
                stop_reason="batches_api_error",
                stop_message=f"{self.doing}: {info.status_code} {info.type}: {info.message}",
            )
        self.back_off(exc, info, "trying again")
        return None

    def create_unconfirmed(self, exc: anthropic.APIConnectionError) -> RunEnd | None:
        """A create call whose answer never came: the batch may exist (its intent is looked up
        on the next round); a RunEnd only once the API counts as unreachable."""
        self.troubled = True
        return self.unreachable(classify(exc))

    def create_refused(self, exc: anthropic.APIStatusError) -> RunEnd | None:
        """A create call the API refused (its intent is abandoned already): stop, or wait."""
        info = classify(exc)
        if info.verdict is Verdict.STOP_RUN:
            return RunEnd(stop_reason=info.type, stop_message=f"batch create refused: {info.message}")
        self.back_off(exc, info, "resubmitting")
        return None

    def unreachable(self, info: ErrorInfo) -> RunEnd | None:
        """A RunEnd once every attempt has failed to connect for `run.unreachable_after_s`."""
        attempt: dict[str, object] = {
            "unreachable": info.unreachable,
            "host": info.host,
            "message": info.message,
        }
        self.reach.attempt(attempt, self.ctx.clock())
        message = self.reach.verdict(self.ctx.clock())
        return None if message is None else RunEnd(stop_reason=UNREACHABLE, stop_message=message)

    def back_off(self, exc: BaseException, info: ErrorInfo, then: str) -> None:
        """One plain line, then wait: backoff from the poll interval, at least `retry-after`."""
        self.failures += 1
        self.troubled = True
        base = self.ctx.settings.batches.poll_interval_s
        server_wait = retry_after_s(exc, wall_now=time.time())
        wait = backoff_s(self.failures, base, base * BACKOFF_MAX_POLLS, self.ctx.rand(), server_wait)
        status = f" {info.status_code}" if info.status_code is not None else ""
        self.ctx.say(
            f"Message Batches API error{status} ({info.type}) while {self.doing}: {info.message};"
            f" {then} in {wait:.1f} s"
        )
        self.wait(wait)
