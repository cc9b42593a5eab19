"""What a worker and the governor say to each other about calls: the asks (`CallAsk`), the
answers (`Grant`, `Wait`, `Deny`, `Granted`) and what a granted call did (`Outcome`). Plain
frozen values: they cross the Manager and the Ray actor pickled."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["CallAsk", "Deny", "Grant", "Granted", "Outcome", "Wait"]


@dataclass(frozen=True, slots=True)
class Grant:
    """Permission to make one API call; settle or release it by `ticket`."""

    ticket: int
    model: str
    pool: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    probe: bool
    endpoint: str = ""  # where to send it: a name from `endpoints:` ("": the run's only endpoint)


@dataclass(frozen=True, slots=True)
class Wait:
    """Not now: ask again in `seconds` ("requests", "input_tokens", "output_tokens", "paused",
    "breaker", or "budget" while in-flight reservations hold the budget)."""

    seconds: float
    reason: str


@dataclass(frozen=True, slots=True)
class Deny:
    """Never, as things stand: the budget cannot cover this call ("budget"), or every endpoint
    that serves the model refused the run's calls (the last refusal's error type, e.g.
    "authentication_error")."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class CallAsk:
    """One call a worker wants to make (what `acquire` takes), for `acquire_many`."""

    est_input_tokens: int
    max_tokens: int
    worst_cost_usd: float
    # a digest of the request's cached prompt prefix: calls sharing one prefer the endpoint that
    # served it before (its prompt cache holds the prefix); None: no cached prefix
    affinity: str | None = None
    # the endpoint this call's last attempt failed on (a connection error, an overload): while
    # another endpoint serving the model is admitted, its retry goes there, not again to one
    # that may be down
    avoid: str | None = None
    # the scopes of `budget.scopes` its job belongs to (`metadata.team=research`)
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Granted:
    """The answer to `acquire_many`: grants for a prefix of the asks (those neither `denied` nor
    `waiting`), and why the rest must wait (None when every ask was granted)."""

    grants: list[Grant]
    then: Wait | Deny | None
    # asks denied alone because their scope's budget is spent: (index in the asks, why); the
    # grants are for the other asks, in order
    denied: tuple[tuple[int, Deny], ...] = ()
    # asks whose scope's money is held by calls in flight: not answered, they ask again
    waiting: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one granted call did (tokens as the rate limiter counts them, cost, errors, headers)."""

    ok: bool
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    status_code: int | None = None
    breaker_failure: bool = False
    retry_after_s: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    headers_at: float | None = None  # monotonic time the headers arrived (a stream's start), if known
    # the endpoint refused the call for a reason no retry there can fix (its credential, its
    # permission, its spend cap): a named endpoint is taken out until its probe succeeds
    refused: bool = False
    error: str | None = None  # the error's type ("authentication_error"...), when not ok
    message: str = ""  # a refusal's message as the worker records it (redacted)
