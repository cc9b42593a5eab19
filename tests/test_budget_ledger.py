"""The budget ledger (engine/ledger/store.py): a private SQLite file beside the journal; two
connections racing for a cap's last dollars never lease past it; a dead owner's leases are
reclaimed (on this host by its pid, from another host by expiry)."""

from __future__ import annotations

import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from anvil_cli.config.settings import Settings
from anvil_cli.engine.ledger.book import scope_book
from anvil_cli.engine.ledger.store import LEASE_TTL_S, Ledger, ledger_path
from anvil_cli.policy.budgets import CapKey, MemoryLedger, ScopeBook
from anvil_cli.policy.budgets.caps import Cap
from anvil_cli.policy.budgets.lease import LedgerUnavailable
from anvil_cli.policy.governor import Deny

KEY = CapKey("metadata.team=research", "day", "2026-12-05")
W = 0.01
WALL = 1_796_000_000.0


def test_the_ledger_is_private_and_beside_the_journal(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path)
    try:
        assert ledger.path == ledger_path(tmp_path) == tmp_path / "ledger.sqlite"
        assert stat.S_IMODE(ledger.path.stat().st_mode) == 0o600
        assert ledger.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        ledger.close()


def test_two_connections_racing_for_the_last_dollars_never_lease_past_the_cap(tmp_path: Path) -> None:
    cap = 100.5 * W
    granted: list[list[float]] = [[], []]
    start = threading.Barrier(2)

    def spend(i: int) -> None:
        ledger = Ledger.open(tmp_path)  # its own connection and owner
        try:
            start.wait()
            while True:
                answer = ledger.lease(KEY, cap, W, W, WALL)
                if answer.granted_usd == 0:
                    return
                granted[i].append(answer.granted_usd)
                ledger.sync({KEY: W}, {KEY: 0.0}, WALL)  # one call's worth spent, the rest back
        finally:
            ledger.close()

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    ledger = Ledger.open(tmp_path)
    try:
        [row] = ledger.rows(WALL)
        assert row.spent_usd == pytest.approx(100 * W) and row.spent_usd <= cap
        assert row.leased_usd == 0.0
        assert len(granted[0]) + len(granted[1]) == 100  # each grant paid for one call
    finally:
        ledger.close()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_dead_owners_lease_is_reclaimed(tmp_path: Path) -> None:
    cap = 10 * W
    dead = Ledger(ledger_path(tmp_path), pid=_dead_pid())
    assert dead.lease(KEY, cap, W, W, WALL).granted_usd == pytest.approx(cap / 8)
    dead.sync({KEY: W}, {KEY: cap / 8 - W}, WALL)  # one call settled, the rest still leased
    dead.close()
    live = Ledger.open(tmp_path)
    try:
        answer = live.lease(KEY, cap, 8.9 * W, W, WALL)  # fits only with the dead lease back
        assert answer.granted_usd == pytest.approx(8.9 * W)
        assert answer.spent_usd == pytest.approx(W)  # what it synced stays spent
    finally:
        live.close()


def test_another_hosts_lease_is_reclaimed_only_once_expired(tmp_path: Path) -> None:
    cap = 10 * W
    other = Ledger(ledger_path(tmp_path), pid=1, host="elsewhere")
    other.lease(KEY, cap, 9 * W, W, WALL)
    other.close()
    live = Ledger.open(tmp_path)
    try:
        assert live.lease(KEY, cap, 2 * W, W, WALL).granted_usd == 0.0  # it may be alive over there
        assert live.lease(KEY, cap, 2 * W, W, WALL + LEASE_TTL_S + 1).granted_usd == pytest.approx(2 * W)
    finally:
        live.close()


def test_a_book_over_the_ledger_returns_everything_when_closing(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path)
    try:
        book = ScopeBook((Cap(KEY.scope, "day", 1.0),), ledger, WALL - 0.0)
        for ticket in range(5):
            assert book.check((KEY.scope,), W, 0.0) is None
            book.hold(ticket, (KEY.scope,), W, 0.0)
            book.settle(ticket, W / 2, 0.0)
        book.sync(0.0, closing=True)
        [row] = ledger.rows(WALL)
        assert (
            row.key.scope == KEY.scope and row.spent_usd == pytest.approx(5 * W / 2) and row.leased_usd == 0.0
        )
    finally:
        ledger.close()


def test_a_damaged_ledger_denies_the_capped_calls_saying_why(tmp_path: Path) -> None:
    ledger_path(tmp_path).write_text("not a database, " * 200)
    with pytest.raises(LedgerUnavailable, match="is not a readable budget ledger"):
        Ledger.open(tmp_path)
    settings = Settings.model_validate({"state_dir": str(tmp_path), "budget": {"per_day_usd": 5}})
    book = scope_book(settings)
    assert book is not None
    denial = book.check((), W, 0.0)
    assert isinstance(denial, Deny) and "the budget ledger cannot be used" in denial.message
    assert str(ledger_path(tmp_path)) in denial.message


def test_spend_the_ledger_could_not_take_is_kept_for_the_next_sync() -> None:
    class Flaky(MemoryLedger):
        down = False

        def sync(self, spent: dict[CapKey, float], keep: dict[CapKey, float], wall: float) -> None:
            if self.down:
                raise LedgerUnavailable("locked")
            super().sync(spent, keep, wall)

    source = Flaky()
    book = ScopeBook((Cap(KEY.scope, "day", 1.0),), source, 0.0)
    assert book.check((KEY.scope,), W, 0.0) is None
    book.hold(1, (KEY.scope,), W, 0.0)
    source.down = True
    book.settle(1, W, 5.0)  # due: the sync fails
    source.down = False
    book.sync(6.0, closing=True)
    assert sum(source.spent.values()) == pytest.approx(W) and set(source.leased.values()) == {0.0}


def test_on_ray_the_governor_holds_the_scopes_in_memory(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"state_dir": str(tmp_path), "run": {"backend": "ray"}, "budget": {"per_day_usd": 5}}
    )
    book = scope_book(settings)
    assert book is not None and isinstance(book.source, MemoryLedger)
    assert not ledger_path(tmp_path).exists()  # a cluster has no shared state dir
    assert scope_book(Settings.model_validate({"state_dir": str(tmp_path)})) is None  # no caps: no book
