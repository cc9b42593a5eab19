"""The governor's rate-limit pools and circuit breakers, per endpoint (`EndpointPools`).

A call of `model` on endpoint E draws from E's pool for the model (keyed
`endpoint_key(E, "default:sonnet")`) and from the pool of every shared ceiling E is in (keyed
"ceiling/default:sonnet"): it fits only when it fits them all (`Draw`). Its breaker is E's for
the model (`endpoint_key(E, model)`). Everything is created on first use; on the run's only,
unnamed endpoint the keys are those of before there were endpoints.

A named endpoint that refuses a call (`refuse`: its credential, permission or spend cap) is out:
every breaker it has opens at once, and any it gets later is made open, until a probe there
succeeds (`restore`). When every endpoint serving a model is out, `denial` says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from anvil_cli.policy.governor.breaker import CLOSED, HALF_OPEN, OPEN, BreakerPolicy, CircuitBreaker
from anvil_cli.policy.governor.calls import Deny, Grant, Outcome
from anvil_cli.policy.governor.limiter import Limits, PoolLimiter
from anvil_cli.policy.governor.routes import Route, RouteTable
from anvil_cli.policy.governor.view import Refusal, endpoint_key, split_endpoint_key


@dataclass(frozen=True, slots=True)
class Draw:
    """What a grant of one model on one endpoint draws from."""

    endpoint: str
    pool: str  # the endpoint's own pool
    ceilings: tuple[str, ...] = ()  # the pools of the shared ceilings it is in

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.pool, *self.ceilings)


class EndpointPools:
    """Pools and breakers of every route of a `RouteTable`."""

    def __init__(self, table: RouteTable, policy: BreakerPolicy, *, replacement: bool) -> None:
        self.table = table
        self.policy = policy
        self.replacement = replacement  # a replacement governor's breakers start half-open
        self.pools: dict[str, PoolLimiter] = {}
        self.breakers: dict[str, CircuitBreaker] = {}
        self._limits: dict[tuple[str, str], tuple[str, Limits] | None] = {}  # (route, model) ->
        self._draws: dict[tuple[str, str], Draw] = {}
        self._serving: dict[str, list[Route]] = {}  # model -> routes serving it, preferred first
        self.refused: dict[str, tuple[Refusal, float]] = {}  # endpoint out -> (why, since when)
        self._last_refused = ""  # the endpoint refused last

    def serves(self, route: Route, model: str) -> bool:
        """Can `route` serve `model`? (Asked once per pair.)"""
        pair = (route.name, model)
        if pair not in self._limits:
            self._limits[pair] = route.limits_for(model)
        return self._limits[pair] is not None

    def breakers_named(self, key: str) -> tuple[list[str], str]:
        """(endpoints, model) a breaker key names: "endpoint/model" one endpoint's breaker, a
        bare model id the model's on every endpoint serving it. ValueError: unknown endpoint."""
        endpoint, model = split_endpoint_key(key)
        if endpoint and self.table.route(endpoint) is None:
            names = ", ".join(r.name for r in self.table.routes)
            raise ValueError(f"unknown endpoint {endpoint!r} (endpoints: {names})")
        if endpoint or self.table.implicit:
            return [endpoint], model
        return [r.name for r in self.table.routes if self.serves(r, model)], model

    def serving(self, model: str) -> list[Route]:
        """The routes that serve `model`, in the preferred order for it (worked out once)."""
        routes = self._serving.get(model)
        if routes is None:
            routes = self._serving[model] = [r for r in self.table.ordered(model) if self.serves(r, model)]
        return routes

    def draw(self, route: Route, model: str, now: float) -> Draw:
        """The pools a call of `model` on `route` (which serves it) draws from, created on first use."""
        pair = (route.name, model)
        draw = self._draws.get(pair)
        if draw is not None:
            return draw
        self.serves(route, model)
        found = self._limits[pair]
        if found is None:
            raise ValueError(f"endpoint {route.name!r} does not serve {model}")
        key, limits = found
        pool = endpoint_key(route.name, key)
        if pool not in self.pools:
            self.pools[pool] = PoolLimiter(limits, now)
        ceilings = []
        for name in route.ceilings:
            ceiling_key, ceiling_limits = self.table.ceiling(name).limits_for(model)
            shared = f"{name}/{ceiling_key}"
            if shared not in self.pools:
                self.pools[shared] = PoolLimiter(ceiling_limits, now)
            ceilings.append(shared)
        draw = self._draws[pair] = Draw(route.name, pool, tuple(ceilings))
        return draw

    def breaker(self, endpoint: str, model: str, now: float = 0.0) -> CircuitBreaker:
        """The breaker of `model` on `endpoint` (half-open at first in a governor that replaced a
        lost one: it knows nothing of the endpoint's health)."""
        key = endpoint_key(endpoint, model)
        breaker = self.breakers.get(key)
        if breaker is None:
            breaker = self.breakers[key] = CircuitBreaker(self.policy)
            out = self.refused.get(endpoint)
            if out is not None:  # the endpoint is out: this model's breaker too, since it went
                breaker.force(OPEN, out[1], out[0].reason)
            elif self.replacement:
                breaker.force(HALF_OPEN, now)
        return breaker

    def settle_breaker(self, grant: Grant, outcome: Outcome, now: float) -> list[str]:
        """Count a settled call for or against its breaker. A named endpoint that refused it is
        out (`refuse`); a probe that succeeds brings its endpoint back (`restore`); on the run's
        only endpoint a refusal counts for nothing here: the worker stops the run. The models of
        the endpoint whose breakers moved besides the call's own."""
        breaker = self.breaker(grant.endpoint, grant.model, now)
        if outcome.refused and grant.endpoint:
            refusal = Refusal(outcome.error or "refused", outcome.status_code, outcome.message)
            return self.refuse(grant.endpoint, refusal, now)
        if outcome.ok:
            breaker.record_success(now, grant.probe)
            return self.restore(grant.endpoint, now) if grant.probe else []
        if outcome.breaker_failure:
            breaker.record_failure(now, grant.probe)
        elif grant.probe:
            breaker.end_probe()
        return []

    def _models_of(self, endpoint: str) -> list[str]:
        """The models `endpoint` has a breaker for."""
        return [m for e, m in map(split_endpoint_key, self.breakers) if e == endpoint]

    def refuse(self, endpoint: str, refusal: Refusal, now: float) -> list[str]:
        """A named endpoint refused a call: it is out. Every breaker it has that is not open
        opens now with the refusal's reason (an open one keeps its timer: late answers of calls
        already in flight do not put its probe off). The models whose breakers moved."""
        self.refused[endpoint] = (refusal, now)
        self._last_refused = endpoint
        moved = []
        for model in self._models_of(endpoint):
            breaker = self.breaker(endpoint, model, now)
            if breaker.state != OPEN:
                breaker.force(OPEN, now, refusal.reason)
                moved.append(model)
        return moved

    def restore(self, endpoint: str, now: float) -> list[str]:
        """A probe succeeded on `endpoint`: if it was out, it is back; every breaker the refusal
        opened closes. The models whose breakers moved."""
        if self.refused.pop(endpoint, None) is None:
            return []
        moved = []
        for model in self._models_of(endpoint):
            breaker = self.breaker(endpoint, model, now)
            if breaker.reason is not None and breaker.state != CLOSED:
                breaker.force(CLOSED, now)
                moved.append(model)
        return moved

    def refusal(self, endpoint: str) -> Refusal | None:
        """Why `endpoint` is out; None while it is in."""
        out = self.refused.get(endpoint)
        return None if out is None else out[0]

    def denial(self, model: str) -> Deny | None:
        """A `Deny` when every endpoint serving `model` is out (refused, and no probe has
        succeeded since): no call of it can succeed, the run stops as with one endpoint."""
        routes = self.serving(model)
        if not routes or any(r.name not in self.refused for r in routes):
            return None
        last_name = self._last_refused if self._last_refused in self.refused else routes[-1].name
        last = self.refused[last_name][0]
        each = ", ".join(f"{r.name}: {self.refused[r.name][0].reason}" for r in routes)
        return Deny(
            last.reason,
            f"every endpoint that serves {model} refused the run's calls ({each}); "
            f"last, {last_name}: {last.message}",
        )

    def wait(self, draw: Draw, need: Mapping[str, float], now: float) -> tuple[float, str]:
        """(seconds, binding reason) until `need` fits the endpoint's pool and every ceiling;
        (0.0, "") if it fits now."""
        worst, reason = 0.0, ""
        for key in draw.keys:
            seconds, why = self.pools[key].wait(need, now)
            if seconds > worst:
                worst, reason = seconds, why
        return worst, reason

    def take(self, draw: Draw, need: Mapping[str, float], now: float) -> dict[str, dict[str, float]]:
        """Take `need` from each pool of `draw`; what was charged, per pool and dimension."""
        return {key: self.pools[key].take(need, now) for key in draw.keys}

    def adjust(
        self, charged: Mapping[str, Mapping[str, float]], actual: Mapping[str, float], now: float
    ) -> None:
        """Correct each pool charged for a call from what it charged to what the call used."""
        for key, amounts in charged.items():
            pool = self.pools[key]
            for dim, used in actual.items():
                pool.adjust(dim, used - amounts.get(dim, 0.0), now)

    def refund(self, charged: Mapping[str, Mapping[str, float]], now: float) -> None:
        """Give back everything charged for a call never made."""
        for key, amounts in charged.items():
            for dim, amount in amounts.items():
                self.pools[key].adjust(dim, -amount, now)
