"""BatchesBudget: the governor's guard per batch; its events are the governor's, data and all."""

from __future__ import annotations

from typing import Any

import pytest

from anvil_cli.engine.modes.batches.budget import BatchesBudget
from anvil_cli.policy.governor import Governor, GovernorView, Grant, Limits, Outcome
from tests.test_governor_core import POLICY


def _governor_events(max_usd: float, warn_usd: float, costs: list[tuple[float, float]]) -> list[Any]:
    """What the governor emits for calls reserving then costing `costs`, then one denied call."""
    limits = Limits(requests_per_minute=6000, burst_size=100)
    gov = Governor(lambda m: ("default:opus", limits), POLICY, max_usd=max_usd, warn_usd=warn_usd, now=0.0)
    grants = [gov.acquire("claude-opus-4-8", 10, 10, worst, now=0.0) for worst, _ in costs]
    for grant, (_, actual) in zip(grants, costs, strict=True):
        assert isinstance(grant, Grant)
        gov.settle(grant.ticket, Outcome(ok=True, cost_usd=actual), now=1.0)
    gov.acquire("claude-opus-4-8", 10, 10, 0.01, now=2.0)
    return [(e.kind, dict(e.data)) for e in gov.drain_events()]


def test_holds_warns_and_denies_as_the_governor_does() -> None:
    budget = BatchesBudget(max_usd=0.10, warn_usd=0.05, spent_before_usd=0.0)
    assert budget.fitting([0.06, 0.04, 0.01]) == 2
    budget.hold(0.06)
    budget.hold(0.04)
    assert budget.fitting([0.01]) == 0 and not budget.denied  # open batches hold the budget
    budget.settle(0.06, 0.055)
    budget.settle(0.04, 0.04)
    assert budget.fitting([0.01]) == 0 and budget.denied  # could never fit
    assert budget.fitting([0.005]) == 1  # a cheaper request would (the driver stops anyway)
    assert budget.events() == _governor_events(0.10, 0.05, [(0.06, 0.055), (0.04, 0.04)])
    assert budget.events() == []


def test_a_resumed_run_budgets_what_is_left_and_holds_its_open_batches() -> None:
    budget = BatchesBudget(max_usd=0.10, warn_usd=0.05, spent_before_usd=0.03, held_usd=[0.02, 0.01])
    assert budget.view().to_dict() == {  # the whole run's figures: spent across resumes, the cap in force
        "spent_usd": pytest.approx(0.03),
        "reserved_usd": pytest.approx(0.03),
        "max_usd": 0.10,
        "warn_usd": 0.05,
    }
    assert budget.fitting([0.02, 0.02, 0.01]) == 2
    budget.release(0.02)  # one was never created after all
    budget.release(0.01)
    assert budget.view().reserved_usd == 0.0


def test_no_cap_fits_everything_and_never_warns() -> None:
    budget = BatchesBudget(max_usd=None, warn_usd=None, spent_before_usd=5.0)
    assert budget.fitting([1e9, 1e9]) == 2
    budget.hold(2e9)
    budget.settle(2e9, 100.0)
    assert budget.events() == [] and not budget.denied


def test_its_view_is_the_governors_budget_alone() -> None:
    budget = BatchesBudget(max_usd=0.10, warn_usd=0.05, spent_before_usd=0.0)
    budget.hold(0.02)
    gov = Governor(lambda m: ("default:opus", Limits(60, 5)), POLICY, max_usd=0.10, warn_usd=0.05, now=0.0)
    assert isinstance(gov.acquire("claude-opus-4-8", 10, 10, 0.02, now=0.0), Grant)
    assert budget.view() == gov.view(0.0).budget
    assert GovernorView(budget=budget.view()).to_dict() == {"budget": gov.view(0.0).to_dict()["budget"]}
