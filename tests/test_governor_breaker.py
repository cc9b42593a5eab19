"""CircuitBreaker: closed → open → half-open → closed, on a fake clock."""

from __future__ import annotations

import pytest

from anvil_cli.policy.governor.breaker import Admission, BreakerPolicy, CircuitBreaker

POLICY = BreakerPolicy(failure_threshold=3, recovery_timeout_s=10.0, half_open_probes=1)


def _tripped(at: float = 0.0, policy: BreakerPolicy = POLICY) -> CircuitBreaker:
    breaker = CircuitBreaker(policy)
    for _ in range(policy.failure_threshold):
        breaker.record_failure(at, probe=False)
    return breaker


def test_opens_after_threshold_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(POLICY)
    for outcome in ["fail", "fail", "ok", "fail", "fail"]:
        if outcome == "ok":
            breaker.record_success(0.0, probe=False)
        else:
            breaker.record_failure(0.0, probe=False)
    assert (breaker.state, breaker.failures) == ("closed", 2)
    breaker.record_failure(1.0, probe=False)
    assert breaker.state == "open"
    assert [(t.state, t.at, t.failures) for t in breaker.drain()] == [("open", 1.0, 3)]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (0.0, Admission(False, retry_in_s=10.0)),
        (4.0, Admission(False, retry_in_s=6.0)),
        (10.0, Admission(True, probe=True)),  # half-open, lazily, on the first ask after the timeout
    ],
)
def test_open_refuses_until_recovery_timeout(now: float, expected: Admission) -> None:
    assert _tripped().allow(now) == expected


def test_half_open_admits_limited_probes_and_probe_success_closes() -> None:
    breaker = _tripped()
    breaker.drain()
    first = breaker.allow(10.0)
    breaker.begin_probe()
    assert first == Admission(True, probe=True)
    assert breaker.allow(10.5) == Admission(False, retry_in_s=1.0)
    breaker.record_success(12.0, probe=True)
    assert breaker.allow(12.0) == Admission(True)
    assert [(t.state, t.at) for t in breaker.drain()] == [("half_open", 10.0), ("closed", 12.0)]
    assert breaker.failures == 0


def test_probe_failure_reopens_with_a_new_timer() -> None:
    breaker = _tripped()
    breaker.allow(10.0)
    breaker.begin_probe()
    breaker.record_failure(11.0, probe=True)
    assert breaker.state == "open"
    assert breaker.allow(20.0) == Admission(False, retry_in_s=1.0)
    assert breaker.allow(21.0).probe


def test_neutral_probe_end_frees_the_slot() -> None:
    breaker = _tripped(policy=BreakerPolicy(3, 10.0, half_open_probes=2))
    for _ in range(2):
        assert breaker.allow(10.0).probe
        breaker.begin_probe()
    assert not breaker.allow(10.0).allowed
    breaker.end_probe()  # e.g. a 429 or a release: no verdict
    assert breaker.allow(10.0) == Admission(True, probe=True)
    assert breaker.state == "half_open"


def test_late_answers_of_old_calls_do_not_move_open_or_half_open() -> None:
    breaker = _tripped()
    breaker.record_success(1.0, probe=False)
    breaker.record_failure(2.0, probe=False)
    assert (breaker.state, breaker.retry_in_s(2.0)) == ("open", 8.0)
    breaker.allow(10.0)
    breaker.record_success(10.5, probe=False)
    breaker.record_failure(10.5, probe=False)
    assert breaker.state == "half_open"


@pytest.mark.parametrize(("state", "allowed"), [("open", False), ("closed", True), ("half_open", True)])
def test_force(state: str, allowed: bool) -> None:
    breaker = _tripped() if state != "open" else CircuitBreaker(POLICY)
    breaker.force(state, now=5.0)
    assert (breaker.state, breaker.allow(5.0).allowed) == (state, allowed)
    assert breaker.drain()[-1].state == state


def test_force_rejects_unknown_state() -> None:
    with pytest.raises(ValueError, match="unknown breaker state"):
        CircuitBreaker(POLICY).force("ajar", now=0.0)
