"""The governor: one object per run that every API call asks first and settles with afterwards.

It decides and never acts: it takes `now` (monotonic seconds) as an argument, never reads a clock
and never sleeps. The engine wraps it in a multiprocessing Manager and calls it with
`time.monotonic()`; tests call it with a fake clock.

With several endpoints (`RouteTable`) it also decides where a call goes: among the endpoints
that serve the model, in the preferred order, the first whose breaker admits the call and whose
pool (and shared ceilings) fit it now; a breaker due for its probe comes first, then the
endpoint that served the call's prompt prefix last. The run's rate is the sum of its endpoints'.
A named endpoint that refuses a call (`Outcome.refused`: credential, permission, spend cap) is
out, every breaker of it open, until a probe there succeeds; once every endpoint serving a model
is out, its calls are denied (the run stops, as on one endpoint).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from anvil_cli.policy.governor.adapted import header_changes, learned_change
from anvil_cli.policy.governor.breaker import OPEN, STATES, Admission, BreakerPolicy
from anvil_cli.policy.governor.budget import BudgetGuard, exhausted_message
from anvil_cli.policy.governor.calls import CallAsk, Deny, Grant, Granted, Outcome, Wait
from anvil_cli.policy.governor.estimate import OutputEstimator
from anvil_cli.policy.governor.learn import Learned, RateLearner
from anvil_cli.policy.governor.limiter import (
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    REQUESTS,
    PoolLimiter,
    sum_by_dimension,
)
from anvil_cli.policy.governor.pools import Draw, EndpointPools
from anvil_cli.policy.governor.routes import AffinityMemory, LimitsFor, Route, RouteTable
from anvil_cli.policy.governor.scoped import SCOPE_DENY, ScopeGuard, ScopeLine
from anvil_cli.policy.governor.seed import TICKETS_PER_GENERATION, GovernorSeed, restore
from anvil_cli.policy.governor.view import EndpointView, GovernorView

__all__ = ["Governor", "GovernorEvent"]

# While calls in flight hold reservations that keep a new one from fitting in the budget, the
# caller waits and asks again after this long (their settling may free enough).
BUDGET_POLL_S: Final = 1.0
# A 429 without `retry-after` pauses its pool this long.
DEFAULT_429_PAUSE_S: Final = 1.0
# Priority across workers: an asker told to wait keeps its place until its wait is over and this
# long after (time to ask again); meanwhile askers with a less urgent priority for the same pools
# wait too (re-asking after PRIORITY_RECHECK_S).
PRIORITY_HOLD_S: Final = 0.5
PRIORITY_RECHECK_S: Final = 0.02


@dataclass(frozen=True, slots=True)
class GovernorEvent:
    """Something worth telling the dashboard and journal: breaker, paused, limit_adapted, budget_*."""

    kind: str
    at: float
    data: dict[str, Any]


@dataclass(slots=True)
class _InFlight:
    grant: Grant
    need: dict[str, float]  # what was reserved per dimension
    charged: dict[str, dict[str, float]]  # pool -> what was taken from buckets existing at grant time
    at: float  # when it was granted


class Governor:
    """Rate limits per pool, a circuit breaker per (endpoint, model) and the budget, behind
    acquire/settle. `limits_for`: the pools of the run's only endpoint (model -> (pool key,
    Limits)), or a `RouteTable` of the run's endpoints."""

    def __init__(
        self,
        limits_for: LimitsFor | RouteTable,
        breaker: BreakerPolicy,
        *,
        max_usd: float | None,
        warn_usd: float | None,
        now: float,
        estimator: OutputEstimator | None = None,
        seed: GovernorSeed | None = None,
        spent_before_usd: float = 0.0,
        scopes: ScopeGuard | None = None,
    ) -> None:
        self._table = limits_for if isinstance(limits_for, RouteTable) else RouteTable.single(limits_for)
        self._endpoints = EndpointPools(self._table, breaker, replacement=seed is not None)
        self._pools = self._endpoints.pools
        self._learner = RateLearner()
        self._affinity = AffinityMemory()
        self._granted: dict[str, int] = {}  # endpoint -> calls granted there
        self._budget = BudgetGuard(max_usd, warn_usd, spent_before_usd)
        self._scopes = scopes  # the scoped budgets' book (`budget.scopes`, per day and month)
        self._estimator = estimator or OutputEstimator()
        self._in_flight: dict[int, _InFlight] = {}
        self._first_ticket = 1 + (seed.generation if seed else 0) * TICKETS_PER_GENERATION
        self._next_ticket = self._first_ticket
        self._events: list[GovernorEvent] = []
        # the pools a model draws from -> asker -> (priority, until)
        self._waiting: dict[tuple[str, ...], dict[int, tuple[int, float]]] = {}
        if seed is not None:
            self._restore(seed, now)

    def _restore(self, seed: GovernorSeed, now: float) -> None:
        """Begin where a lost governor left off, conservatively (see `GovernorSeed`)."""
        for endpoint, model in restore(self._endpoints, self._table, seed, now):
            self._collect_breaker(endpoint, model)

    @property
    def spent_usd(self) -> float:
        """Actual cost of every settled call."""
        return self._budget.spent_usd

    @property
    def reserved_usd(self) -> float:
        """Worst-case cost held for the calls in flight."""
        return self._budget.reserved_usd

    # --- acquire / settle / release ---------------------------------------------------------

    def acquire(
        self,
        model: str,
        est_input_tokens: int,
        max_tokens: int,
        worst_cost_usd: float,
        now: float,
        *,
        affinity: str | None = None,
        avoid: str | None = None,
        scopes: tuple[str, ...] = (),
    ) -> Grant | Wait | Deny:
        """Budget and the caps of the call's `scopes`, then breakers, then pauses, then all
        buckets, endpoint by endpoint; takes nothing unless it grants. Waits for "breaker" only
        when every endpoint serving the model refuses it (the caller may switch model); else for
        the soonest endpoint."""
        refusal = self._check_budget(worst_cost_usd, now) or self._check_scopes(scopes, worst_cost_usd, now)
        if refusal is not None:
            return refusal
        routes = self._endpoints.serving(model)
        if not routes:
            return Deny("no_endpoint", f"no endpoint of the run serves {model}")
        denial = self._endpoints.denial(model)  # every endpoint serving it refused the run's calls
        if denial is not None:
            return denial
        admitted: list[tuple[Route, Admission]] = []
        breaker_wait = math.inf
        for route in routes:
            admission = self._endpoints.breaker(route.name, model, now).allow(now)
            self._collect_breaker(route.name, model)
            if admission.allowed:
                admitted.append((route, admission))
            else:
                breaker_wait = min(breaker_wait, admission.retry_in_s)
        if not admitted:
            return Wait(breaker_wait, "breaker")
        output_tokens = min(max_tokens, self._estimator.estimate(model, max_tokens))
        need = {REQUESTS: 1.0, INPUT_TOKENS: float(est_input_tokens), OUTPUT_TOKENS: float(output_tokens)}
        soonest, reason = math.inf, ""
        if avoid is not None and any(route.name != avoid for route, _ in admitted):
            # a retry of a call that failed on `avoid` waits for another endpoint rather than go
            # back to one that may be down (its breaker may not have opened yet)
            admitted = [(route, admission) for route, admission in admitted if route.name != avoid]
        for route, admission in self._preferred(admitted, affinity):
            draw = self._endpoints.draw(route, model, now)
            seconds, why = self._endpoints.wait(draw, need, now)
            if seconds <= 0:
                grant = Grant(
                    self._next_ticket,
                    model,
                    draw.pool,
                    est_input_tokens,
                    output_tokens,
                    worst_cost_usd,
                    admission.probe,
                    route.name,
                )
                if self._scopes is not None:
                    self._scopes.hold(grant.ticket, scopes, worst_cost_usd, now)
                return self._take(grant, draw, need, affinity, now)
            if seconds < soonest:
                soonest, reason = seconds, why
        return Wait(min(soonest, breaker_wait), reason)

    def _preferred(
        self, admitted: list[tuple[Route, Admission]], affinity: str | None
    ) -> list[tuple[Route, Admission]]:
        """A breaker due for its probe first (so its endpoint can recover), then the endpoint
        that served this prompt prefix last (its cache holds it), then the preferred order."""
        remembered = self._affinity.get(affinity)
        return sorted(admitted, key=lambda a: (not a[1].probe, a[0].name != remembered))

    def _take(
        self, grant: Grant, draw: Draw, need: dict[str, float], affinity: str | None, now: float
    ) -> Grant:
        charged = self._endpoints.take(draw, need, now)
        self._budget.reserve(grant.cost_usd)
        if grant.probe:
            self._endpoints.breaker(grant.endpoint, grant.model, now).begin_probe()
        self._next_ticket += 1
        self._in_flight[grant.ticket] = _InFlight(grant, need, charged, now)
        self._affinity.remember(affinity, grant.endpoint)
        self._granted[grant.endpoint] = self._granted.get(grant.endpoint, 0) + 1
        return grant

    def acquire_many(
        self, model: str, asks: list[CallAsk], now: float, *, priority: int = 2, asker: int = -1
    ) -> Granted:
        """Grants for as many of `asks`, in order, as fit now: one round trip for a worker's
        waiting calls. Across askers, priority holds: while an asker with a more urgent
        `priority` (lower value) was told to wait for the model's pools, a less urgent one
        waits too. An ask whose scope is spent is denied alone (`Granted.denied`); one whose
        scope's money is held by calls in flight waits alone (`Granted.waiting`)."""
        routes = self._endpoints.serving(model)
        pools = tuple(self._endpoints.draw(r, model, now).pool for r in routes)
        waiting = self._waiting.setdefault(pools, {})
        if any(who != asker and p < priority and now <= until for who, (p, until) in waiting.items()):
            return Granted([], Wait(PRIORITY_RECHECK_S, "priority"))
        grants: list[Grant] = []
        denied: list[tuple[int, Deny]] = []
        held: list[int] = []
        then: Wait | Deny | None = None
        for i, ask in enumerate(asks):
            decision = self.acquire(
                model,
                ask.est_input_tokens,
                ask.max_tokens,
                ask.worst_cost_usd,
                now,
                affinity=ask.affinity,
                avoid=ask.avoid,
                scopes=ask.scopes,
            )
            if isinstance(decision, Deny | Wait) and decision.reason == SCOPE_DENY:  # the others' may fit
                denied.append((i, decision)) if isinstance(decision, Deny) else held.append(i)
                continue
            if not isinstance(decision, Grant):
                then = decision
                break
            grants.append(decision)
            if decision.probe and len(routes) == 1:  # the one half-open breaker lets one call through
                then = Wait(PRIORITY_RECHECK_S, "breaker") if len(asks) > 1 else None
                break
        if isinstance(then, Wait) and then.reason not in ("breaker", "budget", SCOPE_DENY):
            waiting[asker] = (priority, now + then.seconds + PRIORITY_HOLD_S)  # its place, till it re-asks
        else:
            waiting.pop(asker, None)
        if then is None and held:  # they ask again soon: the calls in flight may leave them room
            then = Wait(PRIORITY_RECHECK_S, SCOPE_DENY)
        return Granted(grants, then, tuple(denied), tuple(held))

    def _check_budget(self, worst_cost_usd: float, now: float) -> Wait | Deny | None:
        budget = self._budget
        if budget.exhausted_for(worst_cost_usd):
            budget.deny(worst_cost_usd)
            self._collect_budget(now)
            return Deny("budget", exhausted_message(budget.spent_usd, worst_cost_usd, budget.max_usd))
        if not budget.fits(worst_cost_usd):
            return Wait(BUDGET_POLL_S, "budget")
        return None

    def _check_scopes(self, scopes: tuple[str, ...], worst_cost_usd: float, now: float) -> Wait | Deny | None:
        return None if self._scopes is None else self._scopes.check(scopes, worst_cost_usd, now)

    def settle(self, ticket: int, outcome: Outcome, now: float) -> None:
        """Account for a finished call; unknown or already-settled tickets are ignored."""
        flight = self._in_flight.pop(ticket, None)
        if flight is None:
            if ticket < self._first_ticket:  # granted by a lost governor: paid all the same
                self.charge(outcome.cost_usd, now)
            return
        grant = flight.grant
        actual = {INPUT_TOKENS: float(outcome.input_tokens), OUTPUT_TOKENS: float(outcome.output_tokens)}
        self._endpoints.adjust(flight.charged, actual, now)
        if outcome.ok:
            self._estimator.observe(grant.model, outcome.output_tokens)
        self._budget.settle(grant.cost_usd, outcome.cost_usd)
        self._collect_budget(now)
        if self._scopes is not None:
            self._scopes.settle(ticket, outcome.cost_usd, now)
        self._settle_breaker(grant, outcome, now)
        pool = self._pools[grant.pool]
        rate_limited = not outcome.refused and (  # a spend cap's 429 is no rate limit
            outcome.status_code == 429
            or (outcome.status_code is None and outcome.retry_after_s is not None and not outcome.ok)
        )
        self._observe_headers(grant.pool, pool, outcome, now)
        route = self._table.route(grant.endpoint)
        if route is not None and route.learns_rate:
            if rate_limited:
                self._report_learned(
                    grant.pool, self._learner.rate_limited(grant.pool, pool, now, flight.at), now
                )
            elif outcome.ok:
                self._report_learned(grant.pool, self._learner.succeeded(grant.pool, pool, now), now)
        if rate_limited:
            pause_s = outcome.retry_after_s if outcome.retry_after_s is not None else DEFAULT_429_PAUSE_S
            if pool.pause(pause_s, now):
                self._emit("paused", now, pool=grant.pool, until=pool.paused_until, retry_after_s=pause_s)

    def _settle_breaker(self, grant: Grant, outcome: Outcome, now: float) -> None:
        moved = self._endpoints.settle_breaker(grant, outcome, now)  # a refusal moves them all
        for model in dict.fromkeys([grant.model, *moved]):
            self._collect_breaker(grant.endpoint, model)

    def _observe_headers(self, key: str, pool: PoolLimiter, outcome: Outcome, now: float) -> None:
        for data in header_changes(key, pool, outcome, now):
            self._emit("limit_adapted", now, **data)

    def _report_learned(self, key: str, learned: Learned | None, now: float) -> None:
        if learned is not None:
            self._emit("limit_adapted", now, **learned_change(key, learned))

    def release(self, ticket: int, now: float) -> None:
        """Give back everything of a grant that was never used (the request was not sent)."""
        flight = self._in_flight.pop(ticket, None)
        if flight is None:
            return
        grant = flight.grant
        self._endpoints.refund(flight.charged, now)
        self._budget.release(grant.cost_usd)
        if self._scopes is not None:
            self._scopes.release(ticket, now)
        if grant.probe:
            self._endpoints.breaker(grant.endpoint, grant.model, now).end_probe()

    def charge(self, cost_usd: float, now: float) -> None:
        """Count money spent elsewhere against the budget (a run joining a shared governor, or
        one rebuilding a restarted governor, brings what it has journaled)."""
        self._budget.charge(cost_usd)
        self._collect_budget(now)

    def paused_pools(self, now: float) -> list[str]:
        """Pools held by a 429 pause right now."""
        return [k for k, p in self._pools.items() if p.paused_until is not None and p.paused_until > now]

    def set_breaker(self, key: str, state: str, now: float) -> None:
        """Open, half-open or close a breaker by hand: "endpoint/model" one endpoint's, a bare
        model id the model's on every endpoint that serves it."""
        if state not in STATES:
            raise ValueError(f"unknown breaker state {state!r}; expected one of {', '.join(STATES)}")
        endpoints, model = self._endpoints.breakers_named(key)
        for name in endpoints:
            self._endpoints.breaker(name, model, now).force(state, now)
            self._collect_breaker(name, model)
            if state != OPEN:  # closed or half-open by hand: a refused endpoint is let in again
                self._endpoints.refused.pop(name, None)

    # --- events and view ----------------------------------------------------------------

    def _emit(self, kind: str, at: float, **data: Any) -> None:
        self._events.append(GovernorEvent(kind, at, data))

    def _collect_breaker(self, endpoint: str, model: str) -> None:
        for t in self._endpoints.breaker(endpoint, model).drain():
            where: dict[str, Any] = {"endpoint": endpoint} if endpoint else {}
            if t.reason is not None:  # opened by the endpoint's refusal: why
                where["reason"] = t.reason
            self._emit("breaker", t.at, model=model, state=t.state, failures=t.failures, **where)

    def _collect_budget(self, now: float) -> None:
        for kind, data in self._budget.drain_events():
            self._emit(kind, now, **data)

    def drain_events(self) -> list[GovernorEvent]:
        """Events since the last drain, oldest first."""
        if self._scopes is not None:
            self._events += [GovernorEvent(kind, at, data) for kind, at, data in self._scopes.drain_events()]
        out, self._events = self._events, []
        return out

    def view(self, now: float) -> GovernorView:
        """The governor as of `now`, for the conductor, the scaler and every view."""
        needs: dict[str, list[dict[str, float]]] = {key: [] for key in self._pools}
        in_flight: dict[str, int] = {}
        for flight in self._in_flight.values():
            for key in flight.charged:
                needs[key].append(flight.need)
            in_flight[flight.grant.endpoint] = in_flight.get(flight.grant.endpoint, 0) + 1
        pools = {key: pool.view(now, sum_by_dimension(needs[key])) for key, pool in self._pools.items()}
        breakers = {key: b.view(now) for key, b in self._endpoints.breakers.items()}
        endpoints = {}
        if not self._table.implicit:
            endpoints = {
                r.name: EndpointView(
                    in_flight.get(r.name, 0), self._granted.get(r.name, 0), self._endpoints.refusal(r.name)
                )
                for r in self._table.routes
            }
        scopes: tuple[ScopeLine, ...] = ()
        if self._scopes is not None:
            self._scopes.tick(now)
            scopes = tuple(self._scopes.lines(now))
        return GovernorView(pools, breakers, self._budget.view(), len(self._in_flight), endpoints, scopes)
