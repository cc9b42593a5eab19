"""The governor as served to workers: grants held by a worker that dies are given back."""

from __future__ import annotations

from anvil_cli.config.settings import Settings
from anvil_cli.engine.governor_host.manager import GovernorService
from anvil_cli.policy.governor import Grant, Wait


def service(**settings: object) -> GovernorService:
    return GovernorService(Settings.model_validate(settings).model_dump_json())


def _reserved_usd(gov: GovernorService) -> float:
    budget = gov.view().budget
    assert budget is not None
    return budget.reserved_usd


def test_a_dead_workers_grants_are_released() -> None:
    gov = service(budget={"max_usd": 1.0})
    mine = gov.acquire("claude-haiku-4-5", 100, 64, 0.4, owner=1)
    other = gov.acquire("claude-haiku-4-5", 100, 64, 0.4, owner=2)
    assert isinstance(mine, Grant) and isinstance(other, Grant)
    assert _reserved_usd(gov) == 0.8
    assert gov.release_owner(1) == 1
    assert _reserved_usd(gov) == 0.4  # worker 2's grant is untouched
    assert gov.release_owner(1) == 0


def test_a_dead_workers_half_open_probe_is_freed() -> None:
    gov = service(
        circuit_breaker={"failure_threshold": 1, "recovery_timeout_s": 0.001, "half_open_probes": 1}
    )
    gov.set_breaker("claude-haiku-4-5", "open")
    probe = None
    while probe is None:  # the recovery timeout is a millisecond: wait on the state, not a clock
        decision = gov.acquire("claude-haiku-4-5", 10, 10, 0.0, owner=7)
        probe = decision if isinstance(decision, Grant) else None
    assert probe.probe
    assert isinstance(gov.acquire("claude-haiku-4-5", 10, 10, 0.0, owner=8), Wait)  # one probe at a time
    gov.release_owner(7)
    again = gov.acquire("claude-haiku-4-5", 10, 10, 0.0, owner=8)
    assert isinstance(again, Grant) and again.probe
