"""Which process holds a run: its pid and when that process started, so a pid reused by another
process (a state dir restored into a fresh container, a reboot) is not taken for the owner."""

from __future__ import annotations

import contextlib
import os
import sqlite3

from anvil_cli.engine.journal.kind import has_column
from anvil_cli.engine.process.lifeline import owner_alive, process_start


class OwnerColumn:
    """Methods of `Journal` for the runs' `pid_start` (`self.db` is the journal's connection)."""

    db: sqlite3.Connection

    def _add_owner_start(self) -> None:
        """A journal written before runs recorded when their process started gains the column
        (NULL for its runs: only their pid is known)."""
        if not has_column(self.db, "runs", "pid_start"):
            with contextlib.suppress(sqlite3.OperationalError):  # another process added it first
                self.db.execute("ALTER TABLE runs ADD COLUMN pid_start TEXT")

    def owner_start(self, run_id: str) -> str | None:
        """When the process that holds the run started (`lifeline.process_start`), if recorded."""
        try:
            row = self.db.execute("SELECT pid_start FROM runs WHERE id = ?", (run_id,)).fetchone()
        except sqlite3.OperationalError:  # a journal opened to read, older than the column
            return None
        return None if row is None else row[0]

    def _stamp_owner(self, run_id: str) -> None:
        """This process holds the run now: record when it started, beside its pid."""
        self.db.execute("UPDATE runs SET pid_start = ? WHERE id = ?", (process_start(os.getpid()), run_id))

    def _live_owner(self, batch_path: str, running: str) -> tuple[str, int] | None:
        """A run of this batch in state `running` held by another process that is alive."""
        for run_id, pid, start in self.db.execute(
            "SELECT id, pid, pid_start FROM runs WHERE batch_path = ? AND state = ?", (batch_path, running)
        ):
            if pid != os.getpid() and owner_alive(pid, start):
                return run_id, pid
        return None
