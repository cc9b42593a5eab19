"""The scaler: tables on a fake clock."""

from __future__ import annotations

import pytest

from anvil_cli.policy.scaler import Load, ScalePolicy, Scaler

POLICY = ScalePolicy(min_agents=10, max_agents=100, cooldown_s=2.0)


def load(
    busy: int = 100, waiting: int = 50, pct: float = 0.0, rate: float = 0.0, lat: float | None = None
) -> Load:
    return Load(busy=busy, waiting=waiting, limiter_pct=pct, calls_per_s=rate, call_latency_s=lat)


def test_starts_at_the_maximum() -> None:
    assert Scaler(POLICY, now=0.0).agents == 100


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        (load(pct=99, rate=20, lat=0.5), 20),  # rate-bound: 20 calls/s x 0.5 s x 2 headroom
        (load(pct=99, rate=2, lat=0.5), 10),  # never below min_agents
        (load(pct=99, rate=200, lat=2.0), 100),  # never above max_agents
        (load(pct=50, busy=100, waiting=50), 100),  # busy and jobs waiting: already at the top
        (load(pct=0, busy=5, waiting=0), 10),  # the tail of a batch: down to what is busy (>= min)
        (load(pct=0, busy=50, waiting=0), 100),  # half busy: neither threshold, no change
        (load(pct=99, rate=20, lat=None), 100),  # no latency measured yet: no Little's law
    ],
)
def test_first_decision(seen: Load, expected: int) -> None:
    assert Scaler(POLICY, now=0.0).decide(seen, now=5.0) == expected


def test_grows_by_half_again_while_busy_and_jobs_wait() -> None:
    scaler = Scaler(POLICY, now=0.0)
    assert scaler.decide(load(pct=99, rate=10, lat=1.0), now=2.0) == 20
    steps = [scaler.decide(load(busy=scaler.agents, pct=40), now=2.0 + 2.0 * i) for i in range(1, 6)]
    assert steps == [30, 45, 68, 100, 100]


def test_at_most_one_change_per_cooldown() -> None:
    scaler = Scaler(POLICY, now=0.0)
    assert scaler.decide(load(pct=99, rate=10, lat=1.0), now=2.0) == 20
    assert scaler.decide(load(busy=20, pct=40), now=3.0) == 20  # 1 s later: too soon
    assert scaler.decide(load(busy=20, pct=40), now=4.0) == 30


def test_a_manual_setting_pins_the_count() -> None:
    scaler = Scaler(POLICY, now=0.0)
    scaler.pin(42)
    assert scaler.decide(load(pct=99, rate=10, lat=1.0), now=100.0) == 42


def test_limiter_in_use_is_how_drawn_down_the_most_used_bucket_is() -> None:
    from anvil_cli.policy.governor import BreakerPolicy, Governor, GovernorView, Grant, Limits, Outcome
    from anvil_cli.policy.scaler import limiter_in_use_pct

    limits = Limits(requests_per_minute=60, burst_size=20)  # requests only: no token buckets
    gov = Governor(lambda _model: ("p", limits), BreakerPolicy(), max_usd=None, warn_usd=None, now=0.0)
    grants = [gov.acquire("claude-haiku-4-5", 10, 10, 0.0, now=0.0) for _ in range(18)]
    assert all(isinstance(g, Grant) for g in grants)
    assert limiter_in_use_pct(gov.view(0.0)) == 90.0  # 2 of 20 requests left
    first = grants[0]
    assert isinstance(first, Grant)
    gov.settle(first.ticket, Outcome(ok=False, status_code=429, retry_after_s=0.5), now=0.0)
    assert limiter_in_use_pct(gov.view(0.0)) == 100.0  # paused
    assert limiter_in_use_pct(GovernorView()) == 0.0


def test_the_in_flight_window_is_what_the_request_limits_can_feed() -> None:
    from anvil_cli.policy.scaler import PoolRate, feedable_agents

    # 300 requests/min = 5/s; 0.4 s a call: 5 x 0.4 x 1.5 = 3 in flight, plus the burst of 5
    assert feedable_agents([PoolRate(300, 5)], 0.4) == 8
    # before a call was timed, a conservative 2 s a call
    assert feedable_agents([PoolRate(300, 5)], None) == 5 * 2 * 1.5 + 5
    # two pools feed the sum of both
    assert feedable_agents([PoolRate(300, 5), PoolRate(600, 10)], 1.0) == 38  # 12.5 + 25, rounded up
    # an unlimited pool (or none known yet) sets no window
    assert feedable_agents([PoolRate(None, 0), PoolRate(300, 5)], 1.0) is None
    assert feedable_agents([], 1.0) is None


def test_agents_are_capped_to_what_the_open_file_limit_carries(monkeypatch: pytest.MonkeyPatch) -> None:
    from anvil_cli.config.settings import Settings
    from anvil_cli.engine.process.fdlimit import RESERVED_FDS
    from anvil_cli.session import preflight

    asked = Settings.model_validate({"scaling": {"max_agents": 3000, "max_concurrent_jobs": 3000}})
    monkeypatch.setattr(preflight, "raise_nofile_limit", lambda: 1024)
    capped, note = preflight.fit_agents_to_fd_limit(asked)
    assert capped.scaling.agent_limit() == 1024 - RESERVED_FDS
    assert note is not None and "capped at 768 instead of 3,000" in note and "ulimit -n" in note
    monkeypatch.setattr(preflight, "raise_nofile_limit", lambda: 1 << 20)
    assert preflight.fit_agents_to_fd_limit(asked) == (asked, None)
