"""BudgetGuard arithmetic, one-off notices, and a randomized never-overspend check."""

from __future__ import annotations

import random

import pytest

from anvil_cli.policy.governor.budget import BudgetGuard


def test_reserve_settle_release_arithmetic() -> None:
    guard = BudgetGuard(max_usd=1.0, warn_usd=None)
    guard.reserve(0.4)
    guard.reserve(0.3)
    guard.settle(0.4, 0.1)
    guard.release(0.3)
    assert (guard.spent_usd, guard.reserved_usd) == pytest.approx((0.1, 0.0))


@pytest.mark.parametrize(
    ("spent", "reserved", "cost", "fits", "exhausted"),
    [
        (0.0, 0.0, 1.0, True, False),  # exactly the cap fits
        (0.5, 0.4, 0.1, True, False),
        (0.5, 0.4, 0.2, False, False),  # only in-flight reservations stand in the way
        (0.9, 0.0, 0.2, False, True),
        (0.1 + 0.2, 0.0, 0.7, True, False),  # float drift (0.30000000000000004) is tolerated
    ],
)
def test_fits_and_exhausted(spent: float, reserved: float, cost: float, fits: bool, exhausted: bool) -> None:
    guard = BudgetGuard(max_usd=1.0, warn_usd=None)
    guard.spent_usd, guard.reserved_usd = spent, reserved
    assert (guard.fits(cost), guard.exhausted_for(cost)) == (fits, exhausted)


def test_no_cap_always_fits() -> None:
    guard = BudgetGuard(max_usd=None, warn_usd=None)
    guard.spent_usd = 1e9
    assert guard.fits(1e9) and not guard.exhausted_for(1e9)


def test_warn_and_exhausted_are_notified_once() -> None:
    guard = BudgetGuard(max_usd=1.0, warn_usd=0.5)
    for _ in range(3):
        guard.reserve(0.3)
        guard.settle(0.3, 0.3)
        guard.deny()
    assert [(n.kind, round(n.spent_usd, 2)) for n in guard.drain()] == [
        ("budget_exhausted", 0.3),
        ("budget_warn", 0.6),
    ]
    assert guard.drain() == []


def test_release_never_goes_negative() -> None:
    guard = BudgetGuard(max_usd=None, warn_usd=None)
    guard.release(5.0)
    assert guard.reserved_usd == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_randomized_worst_case_reservations_never_overspend(seed: int) -> None:
    rng = random.Random(seed)
    cap = 10.0
    guard = BudgetGuard(max_usd=cap, warn_usd=None)
    in_flight: list[float] = []
    for _ in range(2000):
        action = rng.random()
        if action < 0.5:
            worst = rng.uniform(0.001, 0.5)
            if guard.fits(worst):
                guard.reserve(worst)
                in_flight.append(worst)
        elif in_flight:
            worst = in_flight.pop(rng.randrange(len(in_flight)))
            if action < 0.9:
                guard.settle(worst, rng.uniform(0.0, worst))  # actual ≤ the worst case reserved
            else:
                guard.release(worst)
        assert guard.spent_usd + guard.reserved_usd <= cap + 1e-9
    for worst in in_flight:
        guard.settle(worst, worst)
    assert guard.spent_usd <= cap + 1e-9
    assert guard.spent_usd > cap * 0.8  # and it did use the budget, not refuse everything
