"""The governor as served to workers: grants held by a worker that dies are given back."""

from __future__ import annotations

from typing import Any

import pytest

from anvil_cli.config.settings import Settings
from anvil_cli.engine.governor_host.manager import GovernorService, route_table
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


# --- endpoints: the service builds its routes from settings -----------------------------------

TWO_ENDPOINTS = {
    "endpoints": [
        {
            "name": "org-a",
            "api_key_env": "ANTHROPIC_API_KEY_A",
            "rate_limits": {"default": {"requests_per_minute": 1, "burst_size": 5}},
        },
        {
            "name": "bedrock-east",
            "provider": "bedrock",
            "region": "us-east-1",
            "rate_limits": {"default": {"requests_per_minute": 1, "burst_size": 5}},
        },
    ]
}


def test_a_service_with_endpoints_grants_endpoint_names_in_listed_order() -> None:
    gov = service(**TWO_ENDPOINTS)
    grants = [gov.acquire("claude-haiku-4-5", 10, 10, 0.0, owner=1) for _ in range(9)]
    assert all(isinstance(g, Grant) for g in grants[:8]) and isinstance(grants[8], Wait)
    # a burst of 5 less the 10% reserve on each; refilling at one a minute
    assert [(g.endpoint, g.pool) for g in grants[:8] if isinstance(g, Grant)] == [
        ("org-a", "org-a/default:haiku")
    ] * 4 + [("bedrock-east", "bedrock-east/default:haiku")] * 4
    endpoints = gov.view().to_dict()["endpoints"]
    assert endpoints == {
        "org-a": {"in_flight": 4, "granted_total": 4},
        "bedrock-east": {"in_flight": 4, "granted_total": 4},
    }


def test_set_breaker_takes_a_model_everywhere_or_one_endpoints() -> None:
    gov = service(**TWO_ENDPOINTS)
    gov.set_breaker("org-a/claude-haiku-4-5", "open")
    elsewhere = gov.acquire("claude-haiku-4-5", 10, 10, 0.0)
    assert isinstance(elsewhere, Grant) and elsewhere.endpoint == "bedrock-east"
    gov.set_breaker("claude-haiku-4-5", "open")
    decision = gov.acquire("claude-haiku-4-5", 10, 10, 0.0)
    assert isinstance(decision, Wait) and decision.reason == "breaker"
    states = {k: b.state for k, b in gov.view().breakers.items()}
    assert states == {"org-a/claude-haiku-4-5": "open", "bedrock-east/claude-haiku-4-5": "open"}


def _order(settings: dict[str, Any]) -> list[str]:
    table = route_table(Settings.model_validate(settings))
    assert table is not None
    return [r.name for r in table.ordered("claude-haiku-4-5")]


def test_routes_from_settings_ceilings_learning_and_the_cheapest_order() -> None:
    settings = Settings.model_validate(
        {
            **TWO_ENDPOINTS,
            "shared_limits": {
                "org": {"endpoints": ["org-a"], "rate_limits": {"default": {"requests_per_minute": 9}}}
            },
            "routing": {"endpoint_order": "cheapest"},
        }
    )
    table = route_table(settings)
    assert table is not None and route_table(Settings()) is None
    assert [(r.name, r.learns_rate, r.ceilings) for r in table.routes] == [
        ("org-a", False, ("org",)),
        ("bedrock-east", True, ()),
    ]
    assert table.ceiling("org").limits_for("claude-haiku-4-5")[0] == "default:haiku"
    # Bedrock in a region charges the regional premium (data/prices.yaml): Anthropic's list price first
    assert [r.name for r in table.ordered("claude-haiku-4-5")] == ["org-a", "bedrock-east"]
    # listed the other way round, "cheapest" still puts the list price first; "listed" does not
    swapped = {**settings.model_dump(), "endpoints": [e.model_dump() for e in reversed(settings.endpoints)]}
    table = route_table(Settings.model_validate(swapped))
    assert table is not None and [r.name for r in table.ordered("claude-haiku-4-5")] == [
        "org-a",
        "bedrock-east",
    ]
    swapped["routing"] = {"endpoint_order": "listed"}
    table = route_table(Settings.model_validate(swapped))
    assert table is not None and [r.name for r in table.ordered("claude-haiku-4-5")] == [
        "bedrock-east",
        "org-a",
    ]


def test_the_ray_actor_and_the_manager_serve_the_clients_methods_alike() -> None:
    import inspect

    pytest.importorskip("ray")
    from anvil_cli.engine.governor_host.client import GovernorClient
    from anvil_cli.engine.governor_host.ray_actor import RayGovernorClient

    def methods(cls: type) -> dict[str, list[str]]:
        return {
            name: list(inspect.signature(getattr(cls, name)).parameters)
            for name in dir(GovernorClient)
            if not name.startswith("_") and callable(getattr(GovernorClient, name))
        }

    assert methods(RayGovernorClient) == methods(GovernorClient)
    assert methods(GovernorService) == methods(GovernorClient)
