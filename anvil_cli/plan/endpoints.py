"""`anvil plan` with `endpoints:`: one pooled rate per model class, and what binds it.

The governor is work-conserving: a run's rate is the sum of its endpoints' rates, each from its
own `rate_limits` (the same lookup as the top level: exact id, glob, default), capped by every
`shared_limits` ceiling over its members. A ceiling that the members' sum passes lowers them in
proportion (repeated until every ceiling holds). The plan then schedules each pool at the pooled
rate (estimate.py), and names each endpoint's rate, each ceiling and the one that binds.

Cost: calls are priced at each endpoint's provider and region (`Pricer.at`), spread in
proportion to the endpoints' shares of the pooled request rate (where a saturated pool puts
them); the worst case prices every call at the dearest endpoint.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from anvil_cli.config.settings import RateLimit, Settings, rate_limit_entry
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.policy.pricing.table import pool_key

# the limits a pool has, as estimate.py names them, and the RateLimit field of each
KINDS = {
    "requests": "requests_per_minute",
    "input tokens": "input_tokens_per_minute",
    "output tokens": "output_tokens_per_minute",
}
SUM = "the endpoints' sum"


@dataclass
class EndpointRate:
    """One endpoint's limits for one pool, and its price relative to the list price."""

    endpoint: str
    provider: str
    region: str | None
    limit_key: str
    requests_per_minute: float
    burst_size: int
    input_tokens_per_minute: float | None
    output_tokens_per_minute: float | None
    price_factor: float
    share: float = 0.0  # of the pooled request rate (after the ceilings)


@dataclass
class CeilingRate:
    """One `shared_limits` ceiling for one pool."""

    name: str
    endpoints: list[str]
    requests_per_minute: float
    burst_size: int
    input_tokens_per_minute: float | None
    output_tokens_per_minute: float | None
    caps: list[str] = field(default_factory=list)  # the limits it lowers (requests, ...)


@dataclass
class PooledRate:
    """One pool over every endpoint: the sum, the ceilings, the pooled rate, what binds."""

    pool: str
    endpoints: list[EndpointRate]
    ceilings: list[CeilingRate]
    sum_per_minute: dict[str, float | None]  # the endpoints' plain sum per limit (None: unlimited)
    pooled_per_minute: dict[str, float | None]  # after the ceilings
    burst_size: int
    binding_limit: str = ""  # requests | input tokens | output tokens (set once scheduled)
    bound_by: str = SUM  # "the endpoints' sum" or "shared limit NAME"

    def rate_limit(self) -> RateLimit:
        """The pooled rate as a RateLimit, for estimate.py's schedule."""
        p = self.pooled_per_minute
        return RateLimit.model_construct(
            requests_per_minute=p["requests"] or math.inf,
            burst_size=self.burst_size,
            input_tokens_per_minute=p["input tokens"],
            output_tokens_per_minute=p["output tokens"],
        )


def pooled_rate(settings: Settings, model: str, pricer: Pricer) -> tuple[str, PooledRate]:
    """The key of `model`'s pool (the endpoints' rate_limits keys, one when they agree) and the
    pool's rate over every endpoint."""
    rates = []
    for e in settings.endpoints:
        key, rl = rate_limit_entry(e.rate_limits, model)
        factor = pricer.relative_price(e, model)
        rates.append(
            EndpointRate(
                e.name,
                e.provider,
                e.region,
                key,
                rl.requests_per_minute,
                rl.burst_size,
                rl.input_tokens_per_minute,
                rl.output_tokens_per_minute,
                factor,
            )
        )
    ceilings = []
    for name, shared in settings.shared_limits.items():
        _, rl = rate_limit_entry(shared.rate_limits, model)
        ceilings.append(
            CeilingRate(
                name,
                list(shared.endpoints),
                rl.requests_per_minute,
                rl.burst_size,
                rl.input_tokens_per_minute,
                rl.output_tokens_per_minute,
            )
        )
    keys = sorted({r.limit_key for r in rates})
    key = keys[0] if len(keys) == 1 else "+".join(f"{r.endpoint}/{r.limit_key}" for r in rates)
    total: dict[str, float | None] = {}
    pooled: dict[str, float | None] = {}
    shares: dict[str, float] = {}
    for kind, attr in KINDS.items():
        own = {r.endpoint: getattr(r, attr) for r in rates}
        caps = [(c, getattr(c, attr)) for c in ceilings]
        total[kind] = None if any(v is None for v in own.values()) else sum(own.values())
        flows = _capped(own, caps, kind)
        pooled[kind] = None if any(math.isinf(v) for v in flows.values()) else sum(flows.values())
        if kind == "requests":
            shares = flows
    burst = _capped(
        {r.endpoint: float(r.burst_size) for r in rates}, [(c, c.burst_size) for c in ceilings], ""
    )
    for r in rates:
        r.share = round(shares[r.endpoint] / pooled["requests"], 4) if pooled["requests"] else 0.0
    pool = PooledRate(pool_key(key, model), rates, ceilings, total, pooled, max(1, int(sum(burst.values()))))
    return key, pool


def _capped(own: dict[str, float | None], caps: list[tuple[CeilingRate, Any]], kind: str) -> dict[str, float]:
    """Each endpoint's rate once every ceiling holds (members lowered in proportion); an
    unlimited endpoint in a ceiling is limited by it. Records which ceilings cap on `kind`."""
    flows = {name: math.inf if v is None else float(v) for name, v in own.items()}
    for _ in range(len(caps) + 2):
        changed = False
        for ceiling, cap in caps:
            if cap is None:
                continue
            members = [m for m in ceiling.endpoints if m in flows]
            for m in members:
                flows[m] = min(flows[m], float(cap))
            used = sum(flows[m] for m in members)
            if used > cap * (1 + 1e-9):
                for m in members:
                    flows[m] *= cap / used
                if kind and kind not in ceiling.caps:
                    ceiling.caps.append(kind)
                changed = True
        if not changed:
            break
    return flows


def endpoint_pricers(settings: Settings, pricer: Pricer, model: str) -> tuple[Pricer, Pricer]:
    """(expected, worst) pricers for `model`: calls spread over the endpoints by their shares of
    the pooled rate, and every call at its dearest endpoint."""
    rates = pooled_rate(settings, model, pricer)[1].endpoints
    expected = sum(r.share * r.price_factor for r in rates) or 1.0
    worst = max((r.price_factor for r in rates), default=1.0)
    return pricer.scaled({model: expected}), pricer.scaled({model: worst})


def bind(pool: PooledRate, binding_limit: str) -> None:
    """Record the limit that binds the pool, and whether a ceiling or the sum sets it."""
    pool.binding_limit = binding_limit
    capping = [c.name for c in pool.ceilings if binding_limit in c.caps]
    pool.bound_by = f"shared limit {', '.join(capping)}" if capping else SUM


def render(pools: Sequence[Mapping[str, Any]]) -> list[str]:
    """The endpoints section of the plan (as `Plan.as_dict()` holds it) as plain lines."""
    if not pools:
        return []
    lines = [
        f"endpoints: {len(pools[0]['endpoints'])}; each pool's rate is their sum, capped by shared limits"
    ]
    for p in pools:
        pooled = _per_minute(p["pooled_per_minute"])
        total = _per_minute(p["sum_per_minute"])
        capped = "" if pooled == total else f" (their sum {total})"
        lines.append(
            f"  pool {p['pool']}: pooled {pooled}{capped}, burst {p['burst_size']:,};"
            f" binding: {p['binding_limit']}, set by {p['bound_by']}"
        )
        for e in p["endpoints"]:
            where = e["provider"] + (f" {e['region']}" if e["region"] else "")
            price = "list prices" if e["price_factor"] == 1.0 else f"prices x{e['price_factor']:.3g}"
            lines.append(
                f"    {e['endpoint']} ({where}): {_per_minute(e)}, burst {e['burst_size']:,};"
                f" {price}; {e['share']:.0%} of the pooled requests"
            )
        for c in p["ceilings"]:
            lowers = f"; lowers {', '.join(c['caps'])}" if c["caps"] else "; not reached"
            lines.append(
                f"    shared limit {c['name']} over {', '.join(c['endpoints'])}: {_per_minute(c)}{lowers}"
            )
    return lines


def _per_minute(values: Mapping[str, Any]) -> str:
    """`4,000 requests/min, 400,000 input tokens/min` from either key style."""
    parts = []
    for kind, attr in KINDS.items():
        value = values.get(kind, values.get(attr))
        if value is not None:
            parts.append(f"{value:,.0f} {kind}/min")
    return ", ".join(parts) or "unlimited"
