"""What the governor shows of itself: `GovernorView`, a frozen value made once per ask.

The Governor makes one (`Governor.view(now)`) and it travels as it is: through the Manager or
the Ray actor (it pickles), to the conductor's tick, the scaler, the snapshot builder, and a
replacement governor's seed. Message Batches mode has no rate limits, only a budget: its view
holds the budget alone. Readers use the attributes; `to_dict` is the one JSON form (the
snapshot's `governor`, served by `anvil status --json`, `GET /status` and `/metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from anvil_cli.policy.governor.budget import BudgetView
from anvil_cli.policy.governor.scoped import ScopeLine


@dataclass(frozen=True, slots=True)
class DimensionView:
    """One bucket of a pool (requests, input or output tokens); None: no client-side limit."""

    capacity: float | None
    level: float | None  # available now (negative while in debt)
    rate_per_min: float | None  # the effective rate (lowered by the server's headers)
    configured_per_min: float | None
    reserved_in_flight: float  # held by the calls in flight

    def to_dict(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "level": self.level,
            "rate_per_min": self.rate_per_min,
            "configured_per_min": self.configured_per_min,
            "reserved_in_flight": self.reserved_in_flight,
        }


@dataclass(frozen=True, slots=True)
class PoolView:
    """One rate-limit pool: its buckets by dimension, and a 429's pause."""

    paused_until_s: float | None  # seconds until the pause ends; None: not paused
    dimensions: Mapping[str, DimensionView]

    def to_dict(self) -> dict[str, Any]:
        return {
            "paused_until_s": self.paused_until_s,
            "dimensions": {d: v.to_dict() for d, v in self.dimensions.items()},
        }


@dataclass(frozen=True, slots=True)
class BreakerView:
    """One model's circuit breaker."""

    state: str  # closed | open | half_open
    failures: int
    retry_in_s: float | None  # until an open breaker lets a probe through; None unless open
    probes_in_flight: int
    # why it is open or half-open when its endpoint refused the run's calls: the error's type
    # ("authentication_error", "permission_error", "spend_limit"...); None otherwise
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": self.state,
            "failures": self.failures,
            "retry_in_s": self.retry_in_s,
            "probes_in_flight": self.probes_in_flight,
        }
        if self.reason is not None:  # only a refused endpoint's: other breakers' JSON is as it was
            out["reason"] = self.reason
        return out


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a named endpoint is out of the run: it refused a call for a reason no retry there can
    fix (its credential, its permission, its spend cap or billing). `reason`: the error's type;
    `message`: as the worker recorded it (redacted), "authentication_error (401): invalid x-api-key"."""

    reason: str
    status_code: int | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "status_code": self.status_code, "message": self.message}


@dataclass(frozen=True, slots=True)
class EndpointView:
    """One named endpoint's traffic (its pools and breakers are among the view's, keyed by it)."""

    in_flight: int  # calls granted there and not yet settled or released
    granted_total: int  # calls granted there since the governor started
    refused: Refusal | None = None  # out of the run until its probe succeeds; None: not refused

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"in_flight": self.in_flight, "granted_total": self.granted_total}
        if self.refused is not None:
            out["refused"] = self.refused.to_dict()
        return out


@dataclass(frozen=True, slots=True)
class GovernorView:
    """The governor as of one moment. `in_flight` is None where no governor grants calls (Message
    Batches mode: the budget alone; or none heard from yet: nothing at all)."""

    pools: Mapping[str, PoolView] = field(default_factory=dict)
    breakers: Mapping[str, BreakerView] = field(default_factory=dict)
    budget: BudgetView | None = None
    in_flight: int | None = None  # calls granted and not yet settled or released
    # per named endpoint (`endpoints:`); empty for the run's only, unnamed endpoint
    endpoints: Mapping[str, EndpointView] = field(default_factory=dict)
    # the caps of `budget.scopes` and the state dir's windows (none unless set)
    scopes: tuple[ScopeLine, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """As JSON: a governor's pools, breakers, endpoints (if named), budget and calls in
        flight; a budget alone's budget; nothing's nothing."""
        out: dict[str, Any] = {}
        if self.in_flight is not None:
            out["pools"] = {k: p.to_dict() for k, p in self.pools.items()}
            out["breakers"] = {m: b.to_dict() for m, b in self.breakers.items()}
            if self.endpoints:
                out["endpoints"] = {n: e.to_dict() for n, e in self.endpoints.items()}
        if self.budget is not None:
            out["budget"] = self.budget.to_dict()
        if self.in_flight is not None:
            out["in_flight"] = self.in_flight
        if self.scopes:
            out["scopes"] = [line.to_dict() for line in self.scopes]
        return out


def endpoint_key(endpoint: str, key: str) -> str:
    """A pool's or a breaker's key on a named endpoint: "org-a/default:sonnet", "org-a/claude-…";
    on the run's only endpoint ("") the key alone, as before there were endpoints."""
    return f"{endpoint}/{key}" if endpoint else key


def split_endpoint_key(key: str) -> tuple[str, str]:
    """(endpoint, rest) of a key made by `endpoint_key` (model ids and pool keys have no "/")."""
    endpoint, slash, rest = key.partition("/")
    return (endpoint, rest) if slash else ("", key)


def model_open(breakers: Mapping[str, BreakerView], model: str) -> bool:
    """Is `model` refused everywhere: its breaker open on every endpoint that has one for it?"""
    states = [b.state for k, b in breakers.items() if split_endpoint_key(k)[1] == model]
    return bool(states) and all(state == "open" for state in states)
