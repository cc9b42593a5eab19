"""The governor: rate limits, circuit breakers, budget and backoff as pure policy (time passed in),
where a call goes among the run's endpoints (`RouteTable`), and the view it shows of itself
(`GovernorView`)."""

from anvil_cli.policy.governor.backoff import WaitBackoff, backoff_s, retry_after_s
from anvil_cli.policy.governor.breaker import Admission, BreakerPolicy, CircuitBreaker
from anvil_cli.policy.governor.bucket import TokenBucket
from anvil_cli.policy.governor.budget import BudgetGuard, BudgetView
from anvil_cli.policy.governor.calls import CallAsk, Deny, Grant, Granted, Outcome, Wait
from anvil_cli.policy.governor.core import Governor, GovernorEvent
from anvil_cli.policy.governor.estimate import OutputEstimator
from anvil_cli.policy.governor.limiter import DIMENSIONS, Limits, PoolLimiter, read_ratelimit_headers
from anvil_cli.policy.governor.routes import Ceiling, Route, RouteTable
from anvil_cli.policy.governor.seed import GovernorSeed, seed_from
from anvil_cli.policy.governor.view import BreakerView, DimensionView, EndpointView, GovernorView, PoolView

__all__ = [
    "DIMENSIONS",
    "Admission",
    "BreakerPolicy",
    "BreakerView",
    "BudgetGuard",
    "BudgetView",
    "CallAsk",
    "Ceiling",
    "CircuitBreaker",
    "Deny",
    "DimensionView",
    "EndpointView",
    "Governor",
    "GovernorEvent",
    "GovernorSeed",
    "GovernorView",
    "Grant",
    "Granted",
    "Limits",
    "Outcome",
    "OutputEstimator",
    "PoolLimiter",
    "PoolView",
    "Route",
    "RouteTable",
    "TokenBucket",
    "Wait",
    "WaitBackoff",
    "backoff_s",
    "read_ratelimit_headers",
    "retry_after_s",
    "seed_from",
]
