"""backoff_s, retry_after_s and the tenacity WaitBackoff strategy (sleeps recorded, never slept)."""

from __future__ import annotations

import email.utils

import anthropic
import httpx2
import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_fixed

from anvil_cli.policy.governor.backoff import WaitBackoff, backoff_s, retry_after_s

WALL_NOW = 1_800_000_000.0


def _error(status: int, headers: dict[str, str]) -> anthropic.APIStatusError:
    request = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")
    response = httpx2.Response(status, headers=headers, request=request)
    cls = anthropic.RateLimitError if status == 429 else anthropic.InternalServerError
    return cls(f"HTTP {status}", response=response, body=None)


@pytest.mark.parametrize(
    ("attempt", "rand", "retry_after", "expected"),
    [
        (1, 0.5, None, 0.5),  # base 1 s × 2**0, half jitter
        (2, 0.5, None, 1.0),
        (4, 0.999, None, 7.992),
        (7, 1.0, None, 60.0),  # capped at max_s
        (10_000, 0.5, None, 30.0),  # huge attempt numbers do not overflow
        (0, 1.0, None, 1.0),  # attempt < 1 counts as the first
        (1, 0.0, None, 0.0),
        (1, 0.5, 3.0, 3.0),  # the server's wait wins over a shorter jitter
        (7, 0.9, 3.0, 54.0),  # a longer jitter wins over the server's wait
        (1, 0.5, 120.0, 120.0),  # retry-after above max_s is still honoured
    ],
)
def test_backoff_s(attempt: int, rand: float, retry_after: float | None, expected: float) -> None:
    assert backoff_s(attempt, base_s=1.0, max_s=60.0, rand=rand, retry_after_s=retry_after) == pytest.approx(
        expected
    )


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after-ms": "soon", "retry-after": "4"}, 4.0),
        ({"retry-after": email.utils.formatdate(WALL_NOW + 30, usegmt=True)}, 30.0),
        ({"retry-after": email.utils.formatdate(WALL_NOW - 30, usegmt=True)}, 0.0),
        ({"retry-after": "garbage"}, None),
        ({"retry-after": "-3"}, None),
        ({"retry-after": "nan"}, None),
        ({}, None),
    ],
)
def test_retry_after_s(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_s(_error(429, headers), wall_now=WALL_NOW) == expected


def test_retry_after_s_needs_wall_now_for_dates_and_an_api_error() -> None:
    dated = _error(429, {"retry-after": email.utils.formatdate(WALL_NOW + 30, usegmt=True)})
    assert retry_after_s(dated) is None
    assert retry_after_s(ValueError("no response")) is None


def _run(errors: list[BaseException], attempts: int) -> list[float]:
    sleeps: list[float] = []
    remaining = list(errors)

    def call() -> str:
        if remaining:
            raise remaining.pop(0)
        return "done"

    retrying = Retrying(
        wait=WaitBackoff(base_s=1.0, max_s=8.0, rand=lambda: 0.5, wall_clock=lambda: WALL_NOW),
        sleep=sleeps.append,
        stop=stop_after_attempt(attempts),
        retry=retry_if_exception_type(anthropic.APIStatusError),
        reraise=True,
    )
    assert retrying(call) == "done"
    return sleeps


def test_wait_backoff_drives_tenacity_with_jitter_and_retry_after() -> None:
    errors: list[BaseException] = [
        _error(429, {"retry-after": "3"}),  # attempt 1: server says 3 s > jitter 0.5
        _error(500, {}),  # attempt 2: 0.5 × 2
        _error(429, {"retry-after-ms": "250"}),  # attempt 3: jitter 2.0 > 0.25
        _error(429, {"retry-after": email.utils.formatdate(WALL_NOW + 20, usegmt=True)}),
        _error(500, {}),  # attempt 5: 0.5 × min(8, 16)
    ]
    assert _run(errors, attempts=6) == [3.0, 1.0, 2.0, 20.0, 4.0]


def test_wait_backoff_gives_up_at_the_stop() -> None:
    with pytest.raises(anthropic.RateLimitError):
        _run([_error(429, {"retry-after": "1"})] * 3, attempts=3)


def test_wait_backoff_composes_like_other_tenacity_waits() -> None:
    combined = WaitBackoff(1.0, 8.0, rand=lambda: 1.0) + wait_fixed(2)
    sleeps: list[float] = []
    retrying = Retrying(wait=combined, sleep=sleeps.append, stop=stop_after_attempt(2), reraise=True)

    def always_fails() -> None:
        raise _error(500, {})

    with pytest.raises(anthropic.InternalServerError):
        retrying(always_fails)
    assert sleeps == [3.0]
