"""Where a governor started in place of a lost one begins (`GovernorSeed`): taken from the
last view the lost one showed (`seed_from`); the budget comes separately, from the journal."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from anvil_cli.policy.governor.pools import EndpointPools
from anvil_cli.policy.governor.routes import RouteTable
from anvil_cli.policy.governor.view import GovernorView, split_endpoint_key

TICKETS_PER_GENERATION: Final = 1 << 40


@dataclass(frozen=True, slots=True)
class GovernorSeed:
    """What a governor started in place of a lost one begins from (the budget comes separately,
    from the journal). Conservative: every model's breaker half-open (a probe must succeed
    before traffic flows again; per endpoint where there are several), each known pool (an
    endpoint's, a shared ceiling's) at the lower of its configured rate and the rate last
    learned from the server, its buckets empty (no burst: calls of the lost governor are still
    in flight), and tickets numbered apart from the lost governor's (`generation`), so its calls
    still settling are charged to the budget rather than ignored."""

    generation: int
    models: tuple[str, ...] = ()  # breaker keys: a model id, or "endpoint/model" on a named endpoint
    rates_per_min: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # pool -> dim -> rate


def seed_from(view: GovernorView, generation: int) -> GovernorSeed:
    """What a new governor takes over from the last view of a lost one: the breakers it knew (per
    endpoint and model) and the rates it had learned per pool (see `GovernorSeed`)."""
    rates: dict[str, dict[str, float]] = {}
    for key, pool in view.pools.items():
        for dim, figures in pool.dimensions.items():
            rate = figures.rate_per_min
            if rate is not None and rate > 0:
                rates.setdefault(key, {})[dim] = float(rate)
    return GovernorSeed(generation, tuple(sorted(view.breakers)), rates)


def restore(
    endpoints: EndpointPools, table: RouteTable, seed: GovernorSeed, now: float
) -> list[tuple[str, str]]:
    """Set a new governor's pools and breakers from `seed`: each model's pools at the rates the
    lost one had lowered to and empty, its breakers made; the (endpoint, model) of each."""
    touched = []
    for key in seed.models:
        endpoint, model = split_endpoint_key(key)
        route = table.route(endpoint)
        if route is None or not endpoints.serves(route, model):
            continue
        for pool_key in endpoints.draw(route, model, now).keys:
            pool = endpoints.pools[pool_key]
            for dim, rate in seed.rates_per_min.get(pool_key, {}).items():
                pool.lower_rate(dim, rate, now)
            pool.empty(now)
        endpoints.breaker(endpoint, model, now)
        touched.append((endpoint, model))
    return touched
