"""The scoped-budget book a governor is built with (`scope_book`): the caps the settings set,
held against the state dir's ledger — or, with `--backend ray`, in the governor actor's memory
(a cluster has no shared state dir: the shared actor holds the scopes for every run that joins
it). Whatever is leased and unsynced goes back to the ledger when the governor's process exits."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from multiprocessing import util

from anvil_cli.config.settings import Settings
from anvil_cli.engine.ledger.store import Ledger
from anvil_cli.policy.budgets import CapKey, LeaseAnswer, MemoryLedger, ScopeBook, caps_from
from anvil_cli.policy.budgets.lease import LedgerUnavailable


def scope_book(settings: Settings, run_id: str | None = None) -> ScopeBook | None:
    """The book of the settings' caps (None when there are none). With `run_id`, a scope's cap
    of one run (`max_usd`) is held in the ledger under the run's id too: a resumed run, or a
    governor started again after it was lost, counts what the run spent before."""
    caps = caps_from(settings.budget)
    if not caps:
        return None
    wall_offset = time.time() - time.monotonic()
    if settings.run.backend == "ray":
        return ScopeBook(caps, MemoryLedger(), wall_offset)
    try:
        ledger = Ledger.open(settings.state_dir)
    except LedgerUnavailable as exc:  # every capped call is denied, saying why: its jobs stop, resumably
        return ScopeBook(caps, Unusable(str(exc)), wall_offset)
    if run_id is None:
        book = ScopeBook(caps, ledger, wall_offset)
    else:
        book = ScopeBook(caps, ledger, wall_offset, run_source=ledger, run_period=run_id)
    util.Finalize(None, close_book, args=(book, ledger), exitpriority=10)
    return book


class Unusable:
    """The ledger of a state dir that cannot be opened: every lease and sync fails, saying why."""

    def __init__(self, why: str) -> None:
        self.why = why

    def lease(
        self, key: CapKey, cap_usd: float, need_usd: float, worst_usd: float, wall: float
    ) -> LeaseAnswer:
        raise LedgerUnavailable(self.why)

    def sync(self, spent: dict[CapKey, float], keep: dict[CapKey, float], wall: float) -> None:
        raise LedgerUnavailable(self.why)


def close_book(book: ScopeBook, ledger: Ledger) -> None:
    """Sync what was spent and give back every lease (the governor is going away)."""
    with contextlib.suppress(sqlite3.Error):
        book.sync(time.monotonic(), closing=True)
    ledger.close()
