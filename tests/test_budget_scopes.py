"""Budgets by scope and window, the pure part: which scopes a job is under, the windows' periods,
lease sizes, and the book that holds each call against every cap it is under (fake clock, the
in-memory ledger); the governor denying a spent scope's calls alone; the settings."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest

from anvil_cli.config.budget import Budget
from anvil_cli.config.load import load_settings
from anvil_cli.errors import ConfigError
from anvil_cli.policy.budgets import (
    ALL,
    SCOPE_DENY,
    Cap,
    CapKey,
    LeaseAnswer,
    MemoryLedger,
    ScopeBook,
    caps_from,
    lease_size,
    period_of,
    scopes_of,
)
from anvil_cli.policy.budgets.lease import MAX_LEASE_CALLS
from anvil_cli.policy.governor import BreakerPolicy, CallAsk, Deny, Governor, Grant, Limits, Outcome, Wait

W = 0.01  # a call's worst case
# 2026-12-05 12:00 UTC, as `now + wall_offset` (the book's clock starts at now = 0)
NOON = float(calendar.timegm((2026, 12, 5, 12, 0, 0)))
RESEARCH = "metadata.team=research"
SUPPORT = "metadata.team=support"


class CountingLedger(MemoryLedger):
    """The in-memory ledger, counting its transactions."""

    def __init__(self) -> None:
        super().__init__()
        self.leases = 0
        self.syncs = 0

    def lease(
        self, key: CapKey, cap_usd: float, need_usd: float, worst_usd: float, wall: float
    ) -> LeaseAnswer:
        self.leases += 1
        return super().lease(key, cap_usd, need_usd, worst_usd, wall)

    def sync(self, spent: dict[CapKey, float], keep: dict[CapKey, float], wall: float) -> None:
        self.syncs += 1
        super().sync(spent, keep, wall)


def _book(*caps: Cap, source: MemoryLedger | None = None) -> ScopeBook:
    return ScopeBook(caps, source if source is not None else CountingLedger(), NOON)


# --- scopes, caps, periods, lease sizes ------------------------------------------------------


def test_a_job_is_under_the_scopes_its_metadata_names() -> None:
    scopes = {"metadata.team": {"research": 1, "7": 1}, "metadata.org.unit": {"ml": 1}}
    assert scopes_of({"team": "research"}, scopes) == (RESEARCH,)
    assert scopes_of({"team": 7, "org": {"unit": "ml"}}, scopes) == (
        "metadata.team=7",
        "metadata.org.unit=ml",
    )
    assert scopes_of({"team": "sales"}, scopes) == ()  # a value not listed is no scope
    assert scopes_of({"team": ["research"]}, scopes) == ()
    assert scopes_of({}, scopes) == ()


def test_caps_from_the_settings_a_bare_number_is_per_day() -> None:
    budget = Budget.model_validate(
        {
            "per_day_usd": 100,
            "per_month_usd": 1000,
            "scopes": {"metadata.team": {"research": 50, "support": {"per_month_usd": 300, "max_usd": 10}}},
        }
    )
    assert caps_from(budget) == (
        Cap(ALL, "day", 100.0),
        Cap(ALL, "month", 1000.0),
        Cap(RESEARCH, "day", 50.0),
        Cap(SUPPORT, "month", 300.0),
        Cap(SUPPORT, "run", 10.0),
    )
    assert caps_from(Budget()) == ()


def test_periods_are_utc_days_and_months() -> None:
    last = float(calendar.timegm((2026, 12, 31, 23, 59, 59)))
    assert (period_of("day", last), period_of("month", last)) == ("2026-12-31", "2026-12")
    assert (period_of("day", last + 1), period_of("month", last + 1)) == ("2027-01-01", "2027-01")
    assert period_of("run", last) == "run"


def test_leases_are_an_eighth_of_what_is_left_and_call_sized_at_the_end() -> None:
    assert lease_size(100.0, W, W) == MAX_LEASE_CALLS * W  # far from the end: 32 calls' worth
    assert lease_size(1.0, W, W) == pytest.approx(1.0 / 8)
    assert lease_size(0.05, W, W) == W  # the last dollars: what the call needs
    assert lease_size(0.005, W, W) == 0.0  # does not fit


# --- the book ----------------------------------------------------------------------------------


def _fill(book: ScopeBook, scopes: tuple[str, ...], now: float, first: int = 0) -> tuple[int, Wait | Deny]:
    """Calls of `scopes`, each costing its worst case, until one is refused: how many ran, and why not."""
    ticket = first
    while True:
        refusal = book.check(scopes, W, now)
        if refusal is not None:
            return ticket - first, refusal
        book.hold(ticket, scopes, W, now)
        book.settle(ticket, W, now)
        ticket += 1


def test_a_scope_that_runs_out_denies_its_calls_while_another_goes_on() -> None:
    book = _book(Cap(RESEARCH, "day", 10.5 * W), Cap(SUPPORT, "day", 100 * W))
    ran, refusal = _fill(book, (RESEARCH,), 0.0)
    assert ran == 10
    assert isinstance(refusal, Deny) and refusal.reason == SCOPE_DENY
    assert refusal.message == (
        "scope metadata.team=research: spent $0.10 of its $0.1050 per day (2026-12-05), and the next "
        "call's worst case ($0.01) would pass it"
    )
    [(kind, at, data)] = book.drain_events()
    assert at == 0.0
    assert kind == "budget_scope_exhausted"
    assert (
        data["scope"] == RESEARCH
        and data["period"] == "2026-12-05"
        and data["spent_usd"] == pytest.approx(0.10)
    )
    assert book.check((SUPPORT,), W, 0.0) is None  # the other scope goes on
    assert book.check((RESEARCH,), W, 1.0) == refusal  # denied again, journaled once
    assert book.drain_events() == []
    research = next(line for line in book.lines(2.0) if line.scope == RESEARCH)
    assert (research.spent_usd, research.left_usd, research.exhausted) == (
        pytest.approx(0.10),
        pytest.approx(0.005),
        True,
    )


def test_a_call_is_held_against_every_cap_it_is_under() -> None:
    book = _book(Cap(ALL, "day", 3 * W), Cap(RESEARCH, "month", 100 * W), Cap(SUPPORT, "day", 100 * W))
    ran_research, _ = _fill(book, (RESEARCH,), 0.0)
    assert ran_research == 3  # the state dir's day caps both scopes
    ran_support, refusal = _fill(book, (SUPPORT,), 0.0, first=100)
    assert ran_support == 0 and isinstance(refusal, Deny)
    assert "scope all: spent $0.03 of its $0.03 per day (2026-12-05)" in refusal.message


def test_money_held_by_calls_in_flight_makes_a_call_wait_not_fail() -> None:
    source = CountingLedger()
    book = _book(Cap(RESEARCH, "day", 1.5 * W), source=source)
    assert book.check((RESEARCH,), W, 0.0) is None
    book.hold(1, (RESEARCH,), W, 0.0)
    assert book.check((RESEARCH,), W, 0.0) == Wait(1.0, SCOPE_DENY)  # in flight: may cost less
    asked = source.leases
    assert book.check((RESEARCH,), W, 0.1) == Wait(1.0, SCOPE_DENY)
    assert source.leases == asked  # the ledger said no a moment ago: not asked again yet
    book.settle(1, 0.2 * W, 0.5)  # it did
    assert book.check((RESEARCH,), W, 0.5) is None
    book.hold(2, (RESEARCH,), W, 0.5)
    book.release(2, 0.6)  # never sent: nothing spent
    assert book.check((RESEARCH,), W, 0.6) is None


def test_a_new_day_is_a_new_period() -> None:
    book = _book(Cap(RESEARCH, "day", 2 * W), Cap(RESEARCH, "month", 5 * W))
    assert _fill(book, (RESEARCH,), 0.0)[0] == 2
    tomorrow = 86_400.0
    assert _fill(book, (RESEARCH,), tomorrow, first=10)[0] == 2
    ran, refusal = _fill(book, (RESEARCH,), 2 * tomorrow, first=20)
    assert ran == 1 and isinstance(refusal, Deny) and "per month (2026-12)" in refusal.message


def test_calls_far_from_the_cap_touch_the_ledger_rarely() -> None:
    source = CountingLedger()
    book = _book(Cap(RESEARCH, "day", 1000.0), source=source)
    now = 0.0
    for ticket in range(200):  # 200 calls in 2 s: one lease (32 calls' worth) per 32 calls
        now = ticket * 0.01
        assert book.check((RESEARCH,), W, now) is None
        book.hold(ticket, (RESEARCH,), W, now)
        book.settle(ticket, W, now)
    assert source.syncs <= 3  # every SYNC_S, not every call
    # and a lease no call holds goes back as it syncs
    assert source.leases <= 200 // MAX_LEASE_CALLS + 1 + source.syncs
    book.sync(now, closing=True)
    key = CapKey(RESEARCH, "day", "2026-12-05")
    assert source.spent[key] == pytest.approx(200 * W) and source.leased[key] == 0.0


def test_near_the_cap_unused_lease_money_goes_back_as_calls_settle() -> None:
    source = MemoryLedger()
    book = _book(Cap(RESEARCH, "day", 20 * W), source=source)
    key = CapKey(RESEARCH, "day", "2026-12-05")
    assert book.check((RESEARCH,), W, 0.0) is None
    book.hold(1, (RESEARCH,), W, 0.0)
    book.settle(1, 0.5 * W, 0.1)  # tight: synced at once, the lease back
    assert source.spent[key] == pytest.approx(0.5 * W) and source.leased[key] == 0.0


def test_a_scope_cap_of_this_run_is_held_in_memory_not_in_the_ledger() -> None:
    source = MemoryLedger()
    book = _book(Cap(SUPPORT, "run", 2 * W), source=source)
    assert _fill(book, (SUPPORT,), 0.0)[0] == 2
    book.sync(1.0, closing=True)
    assert source.spent == {} and source.leased == {}
    assert "this run" in str(book.check((SUPPORT,), W, 2.0))


# --- through the governor --------------------------------------------------------------------


def _governor(book: ScopeBook) -> Governor:
    limits = Limits(requests_per_minute=6000, burst_size=100)
    policy = BreakerPolicy(failure_threshold=2, recovery_timeout_s=10.0, half_open_probes=1)
    return Governor(
        lambda m: ("default:haiku", limits), policy, max_usd=None, warn_usd=None, now=0.0, scopes=book
    )


def test_the_governor_denies_a_spent_scopes_asks_alone() -> None:
    gov = _governor(_book(Cap(RESEARCH, "day", 1.5 * W)))
    ask = {"est_input_tokens": 10, "max_tokens": 10, "worst_cost_usd": W}
    asks = [
        CallAsk(**ask, scopes=(RESEARCH,)),
        CallAsk(**ask, scopes=(SUPPORT,)),
        CallAsk(**ask, scopes=(RESEARCH,)),
    ]
    granted = gov.acquire_many("claude-haiku-4-5", asks, 0.0)
    assert len(granted.grants) == 2 and granted.denied == ()  # research's first, and support's
    # the third waits alone for research's call in flight (its money may come back), asking again soon
    assert granted.waiting == (2,) and granted.then == Wait(0.02, SCOPE_DENY)
    behind = gov.acquire_many("claude-haiku-4-5", [asks[2], asks[1]], 0.01)
    assert behind.waiting == (0,) and len(behind.grants) == 1  # support's call is not held up behind it
    gov.settle(1, Outcome(ok=True, cost_usd=W), 1.0)
    gov.settle(2, Outcome(ok=True, cost_usd=W), 1.0)
    gov.settle(behind.grants[0].ticket, Outcome(ok=True, cost_usd=W), 1.0)
    again = gov.acquire_many("claude-haiku-4-5", asks, 2.0)
    assert [i for i, _ in again.denied] == [0, 2] and len(again.grants) == 1 and again.then is None
    assert again.denied[0][1].reason == SCOPE_DENY
    events = [e for e in gov.drain_events() if e.kind == "budget_scope_exhausted"]
    assert len(events) == 1 and events[0].data["scope"] == RESEARCH
    view = gov.view(3.0)
    assert [line.scope for line in view.scopes] == [RESEARCH] and view.to_dict()["scopes"][0]["exhausted"]
    assert isinstance(gov.acquire("claude-haiku-4-5", 10, 10, W, 3.0, scopes=(SUPPORT,)), Grant)


def test_a_governor_without_scopes_shows_none() -> None:
    limits = Limits(requests_per_minute=6000, burst_size=100)
    policy = BreakerPolicy(failure_threshold=2, recovery_timeout_s=10.0, half_open_probes=1)
    gov = Governor(lambda m: ("default:haiku", limits), policy, max_usd=None, warn_usd=None, now=0.0)
    assert "scopes" not in gov.view(0.0).to_dict()


# --- settings ----------------------------------------------------------------------------------


def test_settings_from_the_file_and_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "anvil.yaml"
    config.write_text(
        "budget:\n  per_day_usd: 100\n  scopes:\n    metadata.team:\n      research: 50\n"
        "      support: {per_day_usd: 20, per_month_usd: 300, max_usd: 10}\n"
    )
    budget = load_settings(config, env={}).budget
    assert budget.per_day_usd == 100 and budget.scopes["metadata.team"]["research"].per_day_usd == 50
    assert budget.scopes["metadata.team"]["support"].max_usd == 10
    env = {"ANVIL_BUDGET__SCOPES": "{metadata.team: {Research: 5}}", "ANVIL_BUDGET__PER_MONTH_USD": "900"}
    budget = load_settings(None, env=env).budget
    assert budget.per_month_usd == 900 and budget.scopes["metadata.team"]["Research"].per_day_usd == 5
    env = {"ANVIL_BUDGET__SCOPES__METADATA.TEAM__RESEARCH__PER_MONTH_USD": "7"}
    assert load_settings(None, env=env).budget.scopes["metadata.team"]["research"].per_month_usd == 7


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "budget:\n  scopes:\n    team:\n      research: 5\n",
            ":3: field 'budget.scopes.team': a scope is a key",
        ),
        (
            "budget:\n  scopes:\n    metadata.team:\n      research: -1\n",
            ":4: field 'budget.scopes.metadata.team.research",
        ),
        ("budget:\n  scopes:\n    metadata.team:\n      research: {}\n", "a scope needs a cap"),
        ("budget:\n  scopes:\n    metadata.team:\n      research: {per_week: 3}\n", "unknown key 'per_week'"),
        ("budget:\n  per_day_usd: 0\n", ":2: field 'budget.per_day_usd'"),
    ],
)
def test_bad_budget_settings_name_file_line_and_field(tmp_path: Path, yaml_text: str, expected: str) -> None:
    config = tmp_path / "anvil.yaml"
    config.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_settings(config, env={})
    assert expected in str(err.value)
    if expected.startswith(":"):
        assert f"{config}{expected}" in str(err.value)
