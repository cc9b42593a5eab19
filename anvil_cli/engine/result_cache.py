"""The result cache: an identical request is answered from `state_dir/cache.sqlite` at no cost.

"Identical" means the same model, every parameter and the same messages: the key is the
sha256 of the request's canonical JSON (a job's output schema is part of its request, so of
the key). Only successful answers are stored. Several worker processes share the file (SQLite
WAL); each process uses one connection behind a lock.

Checks are not stored: a cached answer is checked again as a fresh one is, by the checks the
batch has now (engine/worker/answers.py: its schema, its deterministic checks, its judges' calls).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anvil_cli.engine.attempts import Attempt
from anvil_cli.engine.outcomes import JobResult, Usage
from anvil_cli.securefile import SIDE_SUFFIXES, private_sqlite

CACHE_NAME = "cache.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    output TEXT,
    stop_reason TEXT,
    usage_json TEXT,
    cost_usd REAL NOT NULL,
    stored_at REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class CachedResult:
    """A stored answer: the model that gave it, its text, stop reason, usage and original cost."""

    model: str
    output: str | None
    stop_reason: str | None
    usage: Usage | None
    cost_usd: float


def result_from_cache(seq: int, hit: CachedResult, started: float | None = None) -> JobResult:
    """A job answered by the result cache: no call, no cost."""
    now = time.time()
    started = now if started is None else started
    entry = Attempt(0, hit.model, 200, latency_s=0.0, cache_hit=True)
    return JobResult(
        seq=seq,
        succeeded=True,
        model=hit.model,
        attempts=0,
        output=hit.output,
        stop_reason=hit.stop_reason,
        usage=hit.usage,
        cost_usd=0.0,
        attempt_log=(entry,),
        latency_s=now - started,
        started_at=started,
        finished_at=now,
    )


def _usage_json(usage: Usage | None) -> str | None:
    return json.dumps(usage.to_json()) if usage is not None else None


def request_key(request: Mapping[str, Any]) -> str:
    """The cache key of a Messages API request (all of it, canonical JSON)."""
    text = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _set_aside(path: Path, inode: int, exc: Exception) -> None:
    """Move an unreadable cache (and its side files) aside, keeping it for a look, and warn.
    Several processes may find it at once: only the very file found unreadable (`inode`) is
    moved, once; not the fresh one another process has started meanwhile."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    try:
        if os.stat(path).st_ino != inode:
            return
        os.rename(path, aside)
    except FileNotFoundError:  # another process of the run set it aside first
        return
    for suffix in SIDE_SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            os.rename(f"{path}{suffix}", f"{aside}{suffix}")
    print(
        f"anvil: warning: the result cache {path} could not be read ({exc}); set aside as {aside.name}, "
        "starting an empty one (answers are not lost: the journal holds every result)",
        file=sys.stderr,
        flush=True,
    )


class ResultCache:
    """get/put of successful answers by request key; safe to share between threads."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / CACHE_NAME
        self._lock = threading.Lock()
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:  # not SQLite, or damaged: the cache is only a cache
            _set_aside(self.path, os.stat(self.path).st_ino, exc)
            self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        private_sqlite(self.path)
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # a cache: no fsync per answer
            db.executescript(_SCHEMA)
            db.execute("SELECT key, model, output, stop_reason, usage_json, cost_usd FROM results LIMIT 1")
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def get(self, key: str) -> CachedResult | None:
        """The cached answer, or None (also when the cache cannot be read: it is optional)."""
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT model, output, stop_reason, usage_json, cost_usd FROM results WHERE key = ?",
                    (key,),
                ).fetchone()
        except sqlite3.Error:
            return None
        if row is None:
            return None
        return CachedResult(
            row[0], row[1], row[2], Usage.from_json(json.loads(row[3])) if row[3] else None, row[4]
        )

    def put(self, key: str, result: CachedResult) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO results (key, model, output, stop_reason, usage_json, cost_usd,"
                " stored_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    result.model,
                    result.output,
                    result.stop_reason,
                    _usage_json(result.usage),
                    result.cost_usd,
                    time.time(),
                ),
            )

    def put_many(self, entries: list[tuple[str, CachedResult]]) -> str | None:
        """Store several answers in one transaction (the conductor's group commit). The cache is
        optional: a failure (a full disk, a damaged file) is returned as its reason, never raised."""
        now = time.time()
        rows = [
            (
                key,
                r.model,
                r.output,
                r.stop_reason,
                _usage_json(r.usage),
                r.cost_usd,
                now,
            )
            for key, r in entries
        ]
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT OR REPLACE INTO results (key, model, output, stop_reason, usage_json, cost_usd,"
                    " stored_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                return str(exc)
        return None

    def close(self) -> None:
        with self._lock:
            self._db.close()
