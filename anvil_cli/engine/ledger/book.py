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
from anvil_cli.policy.budgets import MemoryLedger, ScopeBook, caps_from


def scope_book(settings: Settings) -> ScopeBook | None:
    """The book of the settings' caps (None when there are none)."""
    caps = caps_from(settings.budget)
    if not caps:
        return None
    wall_offset = time.time() - time.monotonic()
    if settings.run.backend == "ray":
        return ScopeBook(caps, MemoryLedger(), wall_offset)
    ledger = Ledger.open(settings.state_dir)
    book = ScopeBook(caps, ledger, wall_offset)
    util.Finalize(None, close_book, args=(book, ledger), exitpriority=10)
    return book


def close_book(book: ScopeBook, ledger: Ledger) -> None:
    """Sync what was spent and give back every lease (the governor is going away)."""
    with contextlib.suppress(sqlite3.Error):
        book.sync(time.monotonic(), closing=True)
    ledger.close()
