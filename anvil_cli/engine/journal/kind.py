"""Runs have a kind: "run" (what `anvil run` starts) or "sample" (`anvil plan --sample`, run
through the same engine and journaled alike, but never "the latest run" that `anvil status`,
`export` and `report` default to). Journals written before the column existed get it here."""

from __future__ import annotations

import sqlite3
from typing import Final

RUN_KIND: Final = "run"
SAMPLE_KIND: Final = "sample"
SAMPLES_DIR: Final = "plan-samples"  # where plan samples' batches live in the state dir


def add_run_kind(db: sqlite3.Connection) -> bool:
    """Give the runs table its `kind` column if it lacks one (every older run an ordinary one,
    but the plan samples, told by where their batch file lives). False when it cannot be added
    (a read-only journal): then every run counts as an ordinary one."""
    if _has_kind(db):
        return True
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            if not _has_kind(db):  # another process may have added it meanwhile
                db.execute(f"ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT '{RUN_KIND}'")
                samples = f"%/{SAMPLES_DIR}/%"
                db.execute("UPDATE runs SET kind = ? WHERE batch_path LIKE ?", (SAMPLE_KIND, samples))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    except sqlite3.OperationalError:
        return False
    return True


def has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    """Does `table` have `column` yet (journals gain columns as Anvil grows)?"""
    return column in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _has_kind(db: sqlite3.Connection) -> bool:
    return has_column(db, "runs", "kind")


def like_prefix(prefix: str) -> str:
    """A LIKE pattern (ESCAPE '\\') for ids starting with `prefix` taken literally (`_`, `%`)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
