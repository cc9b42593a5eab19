"""TokenBucket: tables of (operation, time) against a fake clock."""

from __future__ import annotations

import math

import pytest

from anvil_cli.policy.governor.bucket import TokenBucket


def test_starts_full_and_refills_continuously_up_to_capacity() -> None:
    bucket = TokenBucket(rate_per_s=2.0, capacity=10.0, now=100.0)
    bucket.take(10.0, now=100.0)
    table = [(100.0, 0.0), (101.0, 2.0), (102.5, 5.0), (105.0, 10.0), (200.0, 10.0)]
    assert [bucket.level(t) for t, _ in table] == [level for _, level in table]


@pytest.mark.parametrize(
    ("taken", "amount", "expected_wait_s"),
    [
        (0.0, 1.0, 0.0),  # full: available now
        (10.0, 1.0, 0.5),  # empty: one token at 2/s
        (9.0, 1.0, 0.0),  # exactly one left
        (10.0, 10.0, 5.0),
        (10.0, 50.0, 5.0),  # more than capacity: treated as capacity, so it is not starved forever
        (14.0, 1.0, 2.5),  # 4 in debt + 1
        (10.0, 0.0, 0.0),
    ],
)
def test_wait_s(taken: float, amount: float, expected_wait_s: float) -> None:
    bucket = TokenBucket(rate_per_s=2.0, capacity=10.0, now=0.0)
    bucket.take(taken, now=0.0)
    assert bucket.wait_s(amount, now=0.0) == pytest.approx(expected_wait_s)


def test_waiting_exactly_wait_s_makes_it_available_despite_float_rounding() -> None:
    bucket = TokenBucket(rate_per_s=1 / 0.3, capacity=7.0, now=0.1)
    bucket.take(7.0, now=0.1)
    wait = bucket.wait_s(3.0, now=0.1)
    assert wait > 0
    assert bucket.wait_s(3.0, now=0.1 + wait) == 0.0


def test_take_may_go_into_debt_and_give_is_capped() -> None:
    bucket = TokenBucket(rate_per_s=1.0, capacity=5.0, now=0.0)
    bucket.take(8.0, now=0.0)
    assert bucket.level(0.0) == -3.0
    bucket.give(100.0, now=1.0)
    assert bucket.level(1.0) == 5.0


@pytest.mark.parametrize(("remaining", "expected"), [(3.0, 3.0), (0.0, 0.0), (9.0, 5.0), (-2.0, -2.0)])
def test_clamp_only_lowers(remaining: float, expected: float) -> None:
    bucket = TokenBucket(rate_per_s=1.0, capacity=10.0, now=0.0)
    bucket.take(5.0, now=0.0)
    bucket.clamp(remaining, now=0.0)
    assert bucket.level(0.0) == expected


def test_set_rate_applies_from_now_and_caps_level() -> None:
    bucket = TokenBucket(rate_per_s=10.0, capacity=100.0, now=0.0)
    bucket.take(100.0, now=0.0)
    bucket.set_rate(1.0, 4.0, now=1.0)  # 10 refilled at the old rate, capped at the new capacity
    assert (bucket.rate_per_s, bucket.capacity, bucket.level(1.0)) == (1.0, 4.0, 4.0)
    bucket.take(4.0, now=1.0)
    assert bucket.level(3.0) == 2.0


def test_an_older_now_from_another_process_never_refills_backwards() -> None:
    bucket = TokenBucket(rate_per_s=1.0, capacity=10.0, now=0.0)
    bucket.take(10.0, now=5.0)
    assert bucket.level(4.0) == 0.0
    assert bucket.level(6.0) == 1.0


def test_zero_rate_waits_forever() -> None:
    bucket = TokenBucket(rate_per_s=0.0, capacity=1.0, now=0.0)
    bucket.take(1.0, now=0.0)
    assert math.isinf(bucket.wait_s(1.0, now=0.0))
