"""The journal's connection: opening the SQLite file (WAL) in the state dir, its schema and the
columns older journals gain, and write transactions. The base of every `Journal` table's methods."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from anvil_cli.engine.journal.damage import damage_message, is_damage
from anvil_cli.engine.journal.kind import add_run_kind
from anvil_cli.engine.journal.owner import OwnerColumn
from anvil_cli.engine.journal.rows import (
    JOB_COLS,
    JOB_COLS_WITHOUT_CHECKS,
    JOURNAL_NAME,
    SCHEMA,
    add_checks_column,
)
from anvil_cli.errors import UsageError
from anvil_cli.securefile import private_sqlite, refuse_links


def journal_path(state_dir: Path) -> Path:
    return state_dir / JOURNAL_NAME


class Connection(OwnerColumn):
    """One connection to the journal; use from a single thread."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        if create:
            private_sqlite(path)
        elif not path.exists():
            raise FileNotFoundError(path)
        self.db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable against process crashes
            self.db.execute("PRAGMA busy_timeout=30000")
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:  # not SQLite at all, or damaged
            self.db.close()
            raise UsageError(
                f"{path} is not a readable Anvil journal ({exc}); move it away or use another --state-dir"
            ) from exc
        if tables and "runs" not in tables:
            self.db.close()
            raise UsageError(
                f"{path} is another program's database, not an Anvil journal; use another --state-dir"
            )
        if create:
            self.db.executescript(SCHEMA)
            self._add_owner_start()
        self._runs_have_kind = (create or "runs" in tables) and add_run_kind(self.db)
        has_checks = (create or "jobs" in tables) and add_checks_column(self.db)
        self.job_cols = JOB_COLS if has_checks else JOB_COLS_WITHOUT_CHECKS

    @classmethod
    def open(cls, state_dir: Path) -> Self:
        return cls(journal_path(state_dir))

    @classmethod
    def open_existing(cls, state_dir: Path) -> Self | None:
        """The journal if one has been written, else None (also in the instant between a run
        creating the file and writing its schema)."""
        path = journal_path(state_dir)
        refuse_links(path)  # a dangling link is not "no journal yet": say what is there
        if not path.exists():
            return None
        journal = cls(path, create=False)
        if journal.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone() is None:
            journal.close()
            return None
        return journal

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        """Closes the journal; a read that failed on a damaged row becomes a UsageError (exit 2)
        naming the rows (`journal_damage`), never a traceback."""
        try:
            if exc is not None and is_damage(exc):
                raise UsageError(damage_message(self.path, self.db, exc)) from exc
        finally:
            self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction: committed when the block ends, rolled back if it raises (the
        block's error is the one that propagates). Inside another transaction it joins it: no
        savepoint, so the outer block's end decides for both (an inner block's error that the
        outer one catches undoes nothing by itself)."""
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.db.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # keep the block's error, not this one
                    self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
