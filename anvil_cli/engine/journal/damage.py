"""A journal row whose JSON cannot be read (a damaged disk, a hand edit, a tool of an older Anvil
that could reach the journal): commands that read the journal say which rows, instead of a
traceback. SQLite's `json_valid` finds them; nothing is changed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from anvil_cli.input_limits import plain

# the JSON columns of each table, and how a row of it is named to a person
_COLUMNS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "runs": (("summary_json", "snapshot_json"), "id", "run {0}"),
    "jobs": (
        ("job_json", "usage_json", "error_json", "attempts_json"),
        "run_id, id, seq",
        "run {0}, job {1!r} (seq {2})",
    ),
    "events": (("data_json",), "run_id, kind, at", "run {0}, event {1} at {2}"),
}
MAX_NAMED = 5


def is_damage(exc: BaseException) -> bool:
    """Did reading fail on JSON the journal holds (in Python or in SQLite's JSON functions)?"""
    if isinstance(exc, json.JSONDecodeError):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "JSON" in str(exc)


def damaged_rows(db: sqlite3.Connection, limit: int = MAX_NAMED) -> list[str]:
    """Up to `limit` rows whose JSON columns are not valid JSON, each named for a person."""
    found: list[str] = []
    for table, (columns, keys, shape) in _COLUMNS.items():
        for column in columns:
            sql = (
                f"SELECT {keys} FROM {table} WHERE {column} IS NOT NULL AND json_valid({column}) = 0"
                f" LIMIT {limit - len(found)}"
            )
            try:
                rows = db.execute(sql).fetchall()
            except sqlite3.OperationalError:  # a journal older than the column
                continue
            found += [f"{table}: {shape.format(*row)}, column {column}" for row in rows]
            if len(found) >= limit:
                return found
    return found


def damage_message(path: Path, db: sqlite3.Connection, exc: BaseException) -> str:
    """What to tell the user: which rows, and that the rest of the journal is intact."""
    rows = damaged_rows(db)
    named = "; ".join(plain(r) for r in rows) if rows else "none found by json_valid"
    return (
        f"the journal {path} holds a damaged row that cannot be read ({plain(str(exc))}): {named}."
        " Nothing was changed; the other rows are intact. Restore the file from a copy, or start"
        " afresh with another --state-dir"
    )
