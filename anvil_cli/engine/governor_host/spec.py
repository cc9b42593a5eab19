"""What the governor is built from, as plain values (`GovernorSpec`): made from the settings in
the conductor (`governor_spec`) and sent to the governor's Manager process, which builds its
`Governor` from them (`limits_of`, `routes_of`) without the settings' schema: pydantic and the
settings' models are ~90 ms of CPU and ~12 MB of memory there. Only a run with scoped budgets
sends the settings themselves (their book reads them: `engine/ledger/book.py`).

The routes are as the settings say (`rate_limits:`, `endpoints:`, `shared_limits:`,
`routing.endpoint_order`): pools per config entry and model class; with `endpoints:` a route per
endpoint, the shared ceilings over them and their order."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from anvil_cli.config.model_entry import DEFAULT, entry_for
from anvil_cli.config.provider_models import default_models, serves_all
from anvil_cli.policy.governor import BreakerPolicy, Ceiling, Limits, Route, RouteTable
from anvil_cli.policy.pricing.table import pool_key

if TYPE_CHECKING:
    from anvil_cli.config.settings import RateLimit, Settings
    from anvil_cli.policy.pricing.pricer import Pricer

# Pace at 98% of the effective rate and leave 10% of the burst unused: see `Limits`.
RATE_MARGIN = 0.98
BURST_RESERVE = 0.10

LimitsTable = dict[str, Limits]  # a `rate_limits:` mapping as Limits, in its order, with its `default`


@dataclass(frozen=True)
class EndpointSpec:
    """One of `endpoints:`, as the governor routes calls to it (and `Pricer.for_endpoint` reads it)."""

    name: str
    provider: str
    region: str | None
    models: dict[str, str]  # Anvil model id -> the provider's
    rate_limits: LimitsTable


@dataclass(frozen=True)
class SharedSpec:
    """One of `shared_limits:`: a ceiling over the endpoints it names."""

    name: str
    endpoints: tuple[str, ...]
    rate_limits: LimitsTable


@dataclass(frozen=True)
class GovernorSpec:
    """Everything the governor's process builds the run's `Governor` from."""

    max_usd: float | None
    warn_usd: float | None
    breaker: BreakerPolicy
    rate_limits: LimitsTable
    endpoints: tuple[EndpointSpec, ...] = ()
    shared_limits: tuple[SharedSpec, ...] = ()
    endpoint_order: str = "listed"
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)  # `prices:` overrides, for "cheapest"
    scoped_settings_json: str | None = None  # the settings, when budget caps need their book


def _limits(rl: RateLimit) -> Limits:
    return Limits(
        requests_per_minute=rl.requests_per_minute,
        burst_size=rl.burst_size,
        input_tokens_per_minute=rl.input_tokens_per_minute,
        output_tokens_per_minute=rl.output_tokens_per_minute,
        rate_margin=RATE_MARGIN,
        burst_reserve=BURST_RESERVE,
    )


def limits_table(rate_limits: Mapping[str, RateLimit]) -> LimitsTable:
    """A `rate_limits:` mapping as Limits; its `default` is always there (as `rate_limit_entry`
    gives it when the mapping has none)."""
    from anvil_cli.config.settings import RateLimit  # the conductor's side: loaded already

    table = {key: _limits(rl) for key, rl in rate_limits.items()}
    if DEFAULT not in table:
        table[DEFAULT] = _limits(RateLimit())
    return table


def governor_spec(settings: Settings) -> GovernorSpec:
    """The settings' governor, as plain values to send to its process."""
    from anvil_cli.policy.budgets import caps_from

    budget = settings.budget
    cb = settings.circuit_breaker
    return GovernorSpec(
        max_usd=budget.max_usd,
        warn_usd=budget.warn_usd,
        breaker=BreakerPolicy(
            failure_threshold=cb.failure_threshold,
            recovery_timeout_s=cb.recovery_timeout_s,
            half_open_probes=cb.half_open_probes,
        ),
        rate_limits=limits_table(settings.rate_limits),
        endpoints=tuple(
            EndpointSpec(e.name, e.provider, e.region, dict(e.models), limits_table(e.rate_limits))
            for e in settings.endpoints
        ),
        shared_limits=tuple(
            SharedSpec(name, tuple(shared.endpoints), limits_table(shared.rate_limits))
            for name, shared in settings.shared_limits.items()
        ),
        endpoint_order=settings.routing.endpoint_order,
        prices={k: v.model_dump() for k, v in settings.prices.items()},
        scoped_settings_json=settings.model_dump_json() if caps_from(budget) else None,
    )


def limits_of(table: LimitsTable) -> Callable[[str], tuple[str, Limits]]:
    """`limits_for(model) -> (pool, Limits)`: pools are per config entry and model class."""

    def limits_for(model: str) -> tuple[str, Limits]:
        key, limits = entry_for(table, model, lambda: table[DEFAULT])
        return pool_key(key, model), limits

    return limits_for


def serves(endpoint: EndpointSpec, model: str) -> bool:
    """Can `endpoint` serve `model`? The Anthropic API and Foundry serve every model; Bedrock
    and Vertex the ones Anvil knows they offer (config/provider_models.py) or `models:` maps
    (as `Endpoint.serves` answers for the resolved endpoint)."""
    if serves_all(endpoint.provider) or model in endpoint.models:
        return True
    return model in default_models(endpoint.provider, endpoint.region)


def _route(endpoint: EndpointSpec, spec: GovernorSpec) -> Route:
    entry_limits = limits_of(endpoint.rate_limits)

    def limits_for(model: str) -> tuple[str, Limits] | None:
        return entry_limits(model) if serves(endpoint, model) else None

    ceilings = tuple(shared.name for shared in spec.shared_limits if endpoint.name in shared.endpoints)
    # only Anthropic's API sends anthropic-ratelimit-* headers: elsewhere the rate is learned from 429s
    return Route(endpoint.name, limits_for, learns_rate=endpoint.provider != "anthropic", ceilings=ceilings)


def endpoint_price(pricer: Pricer, endpoint: Any, model: str) -> float:
    """USD per million tokens in and out of `model` on `endpoint`, at its provider's and
    region's prices (inf: not priced), to rank endpoints by."""
    price = pricer.for_endpoint(endpoint).price(model)
    return math.inf if price is None else float(price.input + price.output)


def order_of(spec: GovernorSpec, pricer: Pricer | None = None) -> Callable[[str], list[str]] | None:
    """`routing.endpoint_order`: None for "listed"; for "cheapest", the endpoints by their
    price of the model, ties in listed order."""
    if spec.endpoint_order != "cheapest":
        return None
    if pricer is None:
        # imported here: the governor's process loads the price table for "cheapest" only
        from anvil_cli.policy.pricing.pricer import Pricer

        pricer = Pricer.from_overrides(spec.prices)
    endpoints = spec.endpoints
    ranking = pricer

    def order_for(model: str) -> list[str]:
        ranked = sorted(endpoints, key=lambda e: endpoint_price(ranking, e, model))  # stable: ties listed
        return [e.name for e in ranked]

    return order_for


def routes_of(spec: GovernorSpec, pricer: Pricer | None = None) -> RouteTable | None:
    """The governor's routes; None without an `endpoints:` section (the run's one endpoint:
    `limits_of(spec.rate_limits)`)."""
    if not spec.endpoints:
        return None
    return RouteTable(
        tuple(_route(e, spec) for e in spec.endpoints),
        tuple(Ceiling(shared.name, limits_of(shared.rate_limits)) for shared in spec.shared_limits),
        order_of(spec, pricer),
    )
