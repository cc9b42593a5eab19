"""The governor: rate limits, circuit breakers, budget and backoff as pure policy (time passed in)."""

from anvil_cli.policy.governor.backoff import WaitBackoff, backoff_s, retry_after_s
from anvil_cli.policy.governor.breaker import Admission, CircuitBreaker
from anvil_cli.policy.governor.bucket import TokenBucket
from anvil_cli.policy.governor.budget import BudgetGuard
from anvil_cli.policy.governor.core import (
    BreakerPolicy,
    CallAsk,
    Deny,
    Governor,
    GovernorEvent,
    GovernorSeed,
    Grant,
    Granted,
    Limits,
    Outcome,
    Wait,
)
from anvil_cli.policy.governor.estimate import OutputEstimator
from anvil_cli.policy.governor.limiter import DIMENSIONS, PoolLimiter, read_ratelimit_headers

__all__ = [
    "DIMENSIONS",
    "Admission",
    "BreakerPolicy",
    "BudgetGuard",
    "CallAsk",
    "CircuitBreaker",
    "Deny",
    "Governor",
    "GovernorEvent",
    "GovernorSeed",
    "Grant",
    "Granted",
    "Limits",
    "Outcome",
    "OutputEstimator",
    "PoolLimiter",
    "TokenBucket",
    "Wait",
    "WaitBackoff",
    "backoff_s",
    "read_ratelimit_headers",
    "retry_after_s",
]
