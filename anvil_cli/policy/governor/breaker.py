"""A per-model circuit breaker: closed → open → half-open → closed, driven by a passed-in clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from anvil_cli.policy.governor.view import BreakerView

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"
STATES: Final = (CLOSED, OPEN, HALF_OPEN)

# While half-open with every probe slot taken we cannot know when a slot frees up (that depends on
# the probe's answer), so callers are told to ask again after this long (capped by the timeout).
HALF_OPEN_POLL_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a breaker opens and how it recovers."""

    failure_threshold: int = 5
    recovery_timeout_s: float = 30.0
    half_open_probes: int = 1


@dataclass(frozen=True, slots=True)
class Admission:
    """The breaker's answer to "may I call?": allowed, as a probe, else ask again in `retry_in_s`."""

    allowed: bool
    probe: bool = False
    retry_in_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change, for the event stream."""

    state: str
    at: float
    failures: int
    reason: str | None = None  # why it was forced open (a refusal's error type); None: failures


class CircuitBreaker:
    """Opens after `failure_threshold` consecutive failures; probes after `recovery_timeout_s`."""

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.state: str = CLOSED
        self.failures = 0
        self.opened_at: float | None = None
        self.probes_in_flight = 0
        # why it is open (or half-open) when a refusal forced it: the error's type; None otherwise
        self.reason: str | None = None
        self._transitions: list[Transition] = []

    def _move(self, state: str, now: float, reason: str | None = None) -> None:
        if state == OPEN:
            self.opened_at = now
        if state != HALF_OPEN:  # half-open keeps why it opened: its probe is still to answer it
            self.reason = reason if state == OPEN else None
            self.probes_in_flight = 0
        if state == CLOSED:
            self.failures = 0
        changed = state != self.state
        self.state = state
        if changed or state == OPEN:  # a failed probe reopens: report the new timer too
            self._transitions.append(Transition(state, now, self.failures, self.reason))

    def retry_in_s(self, now: float) -> float | None:
        """Seconds until an open breaker lets a probe through; None unless open."""
        if self.state != OPEN or self.opened_at is None:
            return None
        return max(0.0, self.opened_at + self.policy.recovery_timeout_s - now)

    def view(self, now: float) -> BreakerView:
        """The breaker as of `now`."""
        return BreakerView(
            self.state, self.failures, self.retry_in_s(now), self.probes_in_flight, self.reason
        )

    def allow(self, now: float) -> Admission:
        """May a call start at `now`? Moves open → half-open once the timeout has passed. Takes nothing."""
        if self.state == OPEN:
            wait = self.retry_in_s(now) or 0.0
            if wait > 0:
                return Admission(False, retry_in_s=wait)
            self._move(HALF_OPEN, now)
        if self.state == CLOSED:
            return Admission(True)
        if self.probes_in_flight < self.policy.half_open_probes:
            return Admission(True, probe=True)
        return Admission(False, retry_in_s=min(HALF_OPEN_POLL_S, self.policy.recovery_timeout_s))

    def begin_probe(self) -> None:
        """A probe admitted by `allow` has been granted."""
        self.probes_in_flight += 1

    def end_probe(self) -> None:
        """A probe finished without a verdict (released, or a failure that does not count)."""
        self.probes_in_flight = max(0, self.probes_in_flight - 1)

    def record_success(self, now: float, probe: bool) -> None:
        """A call succeeded: closed resets the count; a probe's success closes the breaker."""
        if self.state == CLOSED:
            self.failures = 0
        elif self.state == HALF_OPEN and probe:
            self._move(CLOSED, now)
        # While open, late answers of calls started before it opened are no evidence either way.

    def record_failure(self, now: float, probe: bool) -> None:
        """A call failed in a way that counts: open at the threshold; a failed probe reopens."""
        if self.state == CLOSED:
            self.failures += 1
            if self.failures >= self.policy.failure_threshold:
                self._move(OPEN, now)
        elif self.state == HALF_OPEN and probe:
            self.failures += 1
            self._move(OPEN, now)

    def force(self, state: str, now: float, reason: str | None = None) -> None:
        """Set the state by hand (an operator's open/close, or a refusal's open, with its
        `reason`); an open breaker recovers by its timer."""
        if state not in STATES:
            raise ValueError(f"unknown breaker state {state!r}; expected one of {', '.join(STATES)}")
        self._move(state, now, reason)

    def drain(self) -> list[Transition]:
        """State changes since the last drain, oldest first."""
        out, self._transitions = self._transitions, []
        return out
