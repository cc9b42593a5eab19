"""The governor: one object per run that every API call asks first and settles with afterwards.

It decides and never acts: it takes `now` (monotonic seconds) as an argument, never reads a clock
and never sleeps. The engine wraps it in a multiprocessing Manager and calls it with
`time.monotonic()`; tests call it with a fake clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from anvil_cli.policy.governor.breaker import HALF_OPEN, BreakerPolicy, CircuitBreaker
from anvil_cli.policy.governor.budget import BudgetGuard, exhausted_message
from anvil_cli.policy.governor.calls import CallAsk, Deny, Grant, Granted, Outcome, Wait
from anvil_cli.policy.governor.estimate import OutputEstimator
from anvil_cli.policy.governor.limiter import (
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    REQUESTS,
    Limits,
    PoolLimiter,
    sum_by_dimension,
)
from anvil_cli.policy.governor.seed import TICKETS_PER_GENERATION, GovernorSeed
from anvil_cli.policy.governor.view import GovernorView

__all__ = ["Governor", "GovernorEvent"]

# While calls in flight hold reservations that keep a new one from fitting in the budget, the
# caller waits and asks again after this long (their settling may free enough).
BUDGET_POLL_S: Final = 1.0
# A 429 without `retry-after` pauses its pool this long.
DEFAULT_429_PAUSE_S: Final = 1.0
# Priority across workers: an asker told to wait keeps its place until its wait is over and this
# long after (time to ask again); meanwhile askers with a less urgent priority for the same pool
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
    charged: dict[str, float]  # what was actually taken from buckets that existed at grant time


class Governor:
    """Rate limits per pool, a circuit breaker per model and the budget, behind acquire/settle."""

    def __init__(
        self,
        limits_for: Callable[[str], tuple[str, Limits]],
        breaker: BreakerPolicy,
        *,
        max_usd: float | None,
        warn_usd: float | None,
        now: float,
        estimator: OutputEstimator | None = None,
        seed: GovernorSeed | None = None,
        spent_before_usd: float = 0.0,
    ) -> None:
        self._limits_for = limits_for
        self._breaker_policy = breaker
        self._budget = BudgetGuard(max_usd, warn_usd, spent_before_usd)
        self._estimator = estimator or OutputEstimator()
        self._pool_of: dict[str, str] = {}
        self._pools: dict[str, PoolLimiter] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._in_flight: dict[int, _InFlight] = {}
        self._first_ticket = 1 + (seed.generation if seed else 0) * TICKETS_PER_GENERATION
        self._next_ticket = self._first_ticket
        self._events: list[GovernorEvent] = []
        self._waiting: dict[str, dict[int, tuple[int, float]]] = {}  # pool -> asker -> (priority, until)
        self._replacement = seed is not None
        if seed is not None:
            self._restore(seed, now)

    def _restore(self, seed: GovernorSeed, now: float) -> None:
        """Begin where a lost governor left off, conservatively (see `GovernorSeed`)."""
        for model in seed.models:
            key, pool = self.pool_for(model, now)
            for dim, rate in seed.rates_per_min.get(key, {}).items():
                pool.lower_rate(dim, rate, now)
            pool.empty(now)
            self.breaker_for(model, now)
            self._collect_breaker(model)

    @property
    def spent_usd(self) -> float:
        """Actual cost of every settled call."""
        return self._budget.spent_usd

    @property
    def reserved_usd(self) -> float:
        """Worst-case cost held for the calls in flight."""
        return self._budget.reserved_usd

    # --- the pieces, created on first use -------------------------------------------------

    def pool_for(self, model: str, now: float) -> tuple[str, PoolLimiter]:
        """The pool key and limiter `model` draws from."""
        key = self._pool_of.get(model)
        if key is None:
            key, limits = self._limits_for(model)
            self._pool_of[model] = key
            if key not in self._pools:
                self._pools[key] = PoolLimiter(limits, now)
        return key, self._pools[key]

    def breaker_for(self, model: str, now: float = 0.0) -> CircuitBreaker:
        """The circuit breaker of `model` (half-open at first in a governor that replaced a lost
        one: it knows nothing of the model's health)."""
        if model not in self._breakers:
            breaker = self._breakers[model] = CircuitBreaker(self._breaker_policy)
            if self._replacement:
                breaker.force(HALF_OPEN, now)
        return self._breakers[model]

    # --- acquire / settle / release ---------------------------------------------------------

    def acquire(
        self, model: str, est_input_tokens: int, max_tokens: int, worst_cost_usd: float, now: float
    ) -> Grant | Wait | Deny:
        """Budget, then breaker, then pause, then all buckets; takes nothing unless it grants."""
        refusal = self._check_budget(worst_cost_usd, now)
        if refusal is not None:
            return refusal
        breaker = self.breaker_for(model, now)
        admission = breaker.allow(now)
        self._collect_breaker(model)
        if not admission.allowed:
            return Wait(admission.retry_in_s, "breaker")
        key, pool = self.pool_for(model, now)
        output_tokens = min(max_tokens, self._estimator.estimate(model, max_tokens))
        need = {REQUESTS: 1.0, INPUT_TOKENS: float(est_input_tokens), OUTPUT_TOKENS: float(output_tokens)}
        seconds, reason = pool.wait(need, now)
        if seconds > 0:
            return Wait(seconds, reason)
        charged = pool.take(need, now)
        self._budget.reserve(worst_cost_usd)
        if admission.probe:
            breaker.begin_probe()
        grant = Grant(
            self._next_ticket, model, key, est_input_tokens, output_tokens, worst_cost_usd, admission.probe
        )
        self._next_ticket += 1
        self._in_flight[grant.ticket] = _InFlight(grant, need, charged)
        return grant

    def acquire_many(
        self, model: str, asks: list[CallAsk], now: float, *, priority: int = 2, asker: int = -1
    ) -> Granted:
        """Grants for as many of `asks`, in order, as fit now: one round trip for a worker's
        waiting calls. Across askers, priority holds: while an asker with a more urgent
        `priority` (lower value) was told to wait for this pool, a less urgent one waits too."""
        key, _ = self.pool_for(model, now)
        waiting = self._waiting.setdefault(key, {})
        if any(who != asker and p < priority and now <= until for who, (p, until) in waiting.items()):
            return Granted([], Wait(PRIORITY_RECHECK_S, "priority"))
        grants: list[Grant] = []
        then: Wait | Deny | None = None
        for ask in asks:
            decision = self.acquire(model, ask.est_input_tokens, ask.max_tokens, ask.worst_cost_usd, now)
            if not isinstance(decision, Grant):
                then = decision
                break
            grants.append(decision)
            if decision.probe:  # a half-open breaker lets one call through: nothing after it
                then = Wait(PRIORITY_RECHECK_S, "breaker") if len(asks) > 1 else None
                break
        if isinstance(then, Wait) and then.reason not in ("breaker", "budget"):
            waiting[asker] = (priority, now + then.seconds + PRIORITY_HOLD_S)  # its place, till it re-asks
        else:
            waiting.pop(asker, None)
        return Granted(grants, then)

    def _check_budget(self, worst_cost_usd: float, now: float) -> Wait | Deny | None:
        budget = self._budget
        if budget.exhausted_for(worst_cost_usd):
            budget.deny(worst_cost_usd)
            self._collect_budget(now)
            return Deny("budget", exhausted_message(budget.spent_usd, worst_cost_usd, budget.max_usd))
        if not budget.fits(worst_cost_usd):
            return Wait(BUDGET_POLL_S, "budget")
        return None

    def settle(self, ticket: int, outcome: Outcome, now: float) -> None:
        """Account for a finished call; unknown or already-settled tickets are ignored."""
        flight = self._in_flight.pop(ticket, None)
        if flight is None:
            if ticket < self._first_ticket:  # granted by a lost governor: paid all the same
                self.charge(outcome.cost_usd, now)
            return
        grant = flight.grant
        _, pool = self.pool_for(grant.model, now)
        actual = {INPUT_TOKENS: float(outcome.input_tokens), OUTPUT_TOKENS: float(outcome.output_tokens)}
        for dim, used in actual.items():
            pool.adjust(dim, used - flight.charged.get(dim, 0.0), now)
        if outcome.ok:
            self._estimator.observe(grant.model, outcome.output_tokens)
        self._budget.settle(grant.cost_usd, outcome.cost_usd)
        self._collect_budget(now)
        self._settle_breaker(grant, outcome, now)
        self._observe_headers(grant.pool, pool, outcome, now)

    def _settle_breaker(self, grant: Grant, outcome: Outcome, now: float) -> None:
        breaker = self.breaker_for(grant.model)
        if outcome.ok:
            breaker.record_success(now, grant.probe)
        elif outcome.breaker_failure:
            breaker.record_failure(now, grant.probe)
        elif grant.probe:
            breaker.end_probe()
        self._collect_breaker(grant.model)

    def _observe_headers(self, key: str, pool: PoolLimiter, outcome: Outcome, now: float) -> None:
        for change in pool.observe(outcome.headers, now, outcome.headers_at):
            self._emit(
                "limit_adapted",
                now,
                pool=key,
                dimension=change.dimension,
                configured_per_min=change.configured_per_min,
                server_per_min=change.server_per_min,
                effective_per_min=change.effective_per_min,
            )
        rate_limited = outcome.status_code == 429 or (
            outcome.status_code is None and outcome.retry_after_s is not None and not outcome.ok
        )
        if not rate_limited:
            return
        pause_s = outcome.retry_after_s if outcome.retry_after_s is not None else DEFAULT_429_PAUSE_S
        if pool.pause(pause_s, now):
            self._emit("paused", now, pool=key, until=pool.paused_until, retry_after_s=pause_s)

    def release(self, ticket: int, now: float) -> None:
        """Give back everything of a grant that was never used (the request was not sent)."""
        flight = self._in_flight.pop(ticket, None)
        if flight is None:
            return
        _, pool = self.pool_for(flight.grant.model, now)
        for dim, amount in flight.charged.items():
            pool.adjust(dim, -amount, now)
        self._budget.release(flight.grant.cost_usd)
        if flight.grant.probe:
            self.breaker_for(flight.grant.model).end_probe()

    def charge(self, cost_usd: float, now: float) -> None:
        """Count money spent elsewhere against the budget (a run joining a shared governor, or
        one rebuilding a restarted governor, brings what it has journaled)."""
        self._budget.charge(cost_usd)
        self._collect_budget(now)

    def paused_pools(self, now: float) -> list[str]:
        """Pools held by a 429 pause right now."""
        return [k for k, p in self._pools.items() if p.paused_until is not None and p.paused_until > now]

    def set_breaker(self, model: str, state: str, now: float) -> None:
        """Open, half-open or close `model`'s breaker by hand."""
        self.breaker_for(model).force(state, now)
        self._collect_breaker(model)

    # --- events and view ----------------------------------------------------------------

    def _emit(self, kind: str, at: float, **data: Any) -> None:
        self._events.append(GovernorEvent(kind, at, data))

    def _collect_breaker(self, model: str) -> None:
        for t in self.breaker_for(model).drain():
            self._emit("breaker", t.at, model=model, state=t.state, failures=t.failures)

    def _collect_budget(self, now: float) -> None:
        for kind, data in self._budget.drain_events():
            self._emit(kind, now, **data)

    def drain_events(self) -> list[GovernorEvent]:
        """Events since the last drain, oldest first."""
        out, self._events = self._events, []
        return out

    def view(self, now: float) -> GovernorView:
        """The governor as of `now`, for the conductor, the scaler and every view."""
        pools = {}
        for key, pool in self._pools.items():
            reserved = sum_by_dimension(f.need for f in self._in_flight.values() if f.grant.pool == key)
            pools[key] = pool.view(now, reserved)
        breakers = {model: b.view(now) for model, b in self._breakers.items()}
        return GovernorView(pools, breakers, self._budget.view(), len(self._in_flight))
