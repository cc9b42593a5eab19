"""A run's named endpoints (`endpoints:` in anvil.yaml) as its views show them: each one's cost,
calls, failed calls and 429s from the journal (`Journal.spend_by_endpoint`), its share of the
run's calls and cost, and the governor's pools and breakers on it, split off the snapshot's
`limits` and `breakers` by their keys ("org-a/default:sonnet", "org-a/claude-sonnet-4-6":
`policy.governor.view.split_endpoint_key`).

A run without named endpoints has none: `endpoints_of` returns {} and `anvil status --json`,
`GET /status`, `/metrics` and the report say nothing of endpoints, as before there were any."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from anvil_cli.engine.journal.store import EndpointSpend
from anvil_cli.policy.governor.view import split_endpoint_key
from anvil_cli.snapshot.types import Breaker, EndpointStatus, Pool


def _pct(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 1) if whole > 0 else 0.0


V = TypeVar("V")


def _by_endpoint(items: Mapping[str, V]) -> dict[str, dict[str, V]]:
    out: dict[str, dict[str, V]] = {}
    for key, value in sorted(items.items()):
        endpoint, rest = split_endpoint_key(key)
        if endpoint:
            out.setdefault(endpoint, {})[rest] = value
    return out


def endpoints_of(
    spend: Mapping[str, EndpointSpend], limits: Mapping[str, Pool], breakers_now: Mapping[str, Breaker]
) -> dict[str, EndpointStatus]:
    """Every named endpoint the journal or the governor knows of, by name; {} when none.
    `limits`, `breakers_now`: a snapshot's, keyed by `view.endpoint_key`."""
    pools = _by_endpoint(limits)
    breakers = _by_endpoint(breakers_now)
    names = sorted({*spend, *pools, *breakers})
    total_cost = sum(s["cost_usd"] for s in spend.values())
    total_calls = sum(s["calls"] for s in spend.values())
    out: dict[str, EndpointStatus] = {}
    for name in names:
        paid = spend.get(name)
        cost, calls = (paid["cost_usd"], paid["calls"]) if paid else (0.0, 0)
        its_breakers = breakers.get(name, {})
        out[name] = {
            "cost_usd": round(cost, 6),
            "cost_share_pct": _pct(cost, total_cost),
            "calls": calls,
            "calls_share_pct": _pct(calls, total_calls),
            "errors": paid["errors"] if paid else 0,
            "rate_limited": paid["rate_limited"] if paid else 0,
            "pools": pools.get(name, {}),
            "breakers": its_breakers,
            "open_breakers": sum(1 for b in its_breakers.values() if b["state"] == "open"),
        }
    return out
