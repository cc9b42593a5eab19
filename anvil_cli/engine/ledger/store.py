"""The ledger: a small SQLite file beside the journal (`ledger.sqlite`, 0600, WAL) holding what
has been spent per (scope, window, period) by every run of the state dir, and the leases the
governors of running processes hold on it. Every change is one short `BEGIN IMMEDIATE`
transaction, so processes racing for a cap's last dollars take turns: the sum of spend and live
leases never passes a cap. A lease belongs to one governor (its owner: host, pid, process start
and a token); an owner's leases are reclaimed once its process is gone (on this host) or its
lease has not been renewed for `LEASE_TTL_S` (from another host sharing the state dir)."""

from __future__ import annotations

import os
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from anvil_cli.engine.process.lifeline import owner_alive, process_start
from anvil_cli.policy.budgets import CapKey, LeaseAnswer, lease_size
from anvil_cli.policy.budgets.lease import LedgerUnavailable
from anvil_cli.securefile import private_sqlite

LEDGER_NAME: Final = "ledger.sqlite"
KEY: Final = "scope = ? AND win = ? AND period = ?"
LEASE_TTL_S: Final = 60.0  # a lease not renewed for this long is another host's dead owner's

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS spend (
    scope TEXT NOT NULL, win TEXT NOT NULL, period TEXT NOT NULL,
    spent_usd REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, win, period)
);
CREATE TABLE IF NOT EXISTS leases (
    owner TEXT NOT NULL, scope TEXT NOT NULL, win TEXT NOT NULL, period TEXT NOT NULL,
    leased_usd REAL NOT NULL,
    host TEXT NOT NULL, pid INTEGER NOT NULL, start TEXT, expires_at REAL NOT NULL,
    PRIMARY KEY (owner, scope, win, period)
);
"""


def ledger_path(state_dir: Path) -> Path:
    return state_dir / LEDGER_NAME


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """A key's figures: spent by every run, leased by live governors."""

    key: CapKey
    spent_usd: float
    leased_usd: float


class Ledger:
    """One owner's connection to the state dir's ledger (a `LeaseSource` for `ScopeBook`)."""

    def __init__(self, path: Path, *, pid: int | None = None, host: str | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        private_sqlite(path)
        self.db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=30000")
            self.db.executescript(SCHEMA)
        except sqlite3.Error as exc:  # not SQLite, or damaged: move it away (the journals keep the spend)
            self.db.close()
            raise LedgerUnavailable(f"{path} is not a readable budget ledger ({exc})") from exc
        self.pid = os.getpid() if pid is None else pid
        self.host = socket.gethostname() if host is None else host
        self.start = process_start(self.pid)
        self.owner = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:12]}"

    @classmethod
    def open(cls, state_dir: Path) -> Ledger:
        return cls(ledger_path(state_dir))

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short transaction; a ledger that cannot be written is `LedgerUnavailable`."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise LedgerUnavailable(f"{self.path}: {exc}") from exc

    def reclaim(self, wall: float) -> int:
        """Drop the leases of owners gone: their unused money is the caps' again. How many."""
        with self._write() as db:
            return self._reclaim(db, wall)

    def _reclaim(self, db: sqlite3.Connection, wall: float) -> int:
        owners = db.execute("SELECT owner, host, pid, start, MAX(expires_at) FROM leases GROUP BY owner")
        gone = [
            o
            for o, host, pid, start, expires in owners.fetchall()
            if self._gone(o, host, pid, start, expires, wall)
        ]
        db.executemany("DELETE FROM leases WHERE owner = ?", [(o,) for o in gone])
        return len(gone)

    def _gone(self, owner: str, host: str, pid: int, start: str | None, expires: float, wall: float) -> bool:
        """Is this lease's owner gone: its process dead (this host), or its lease expired (another)?"""
        if owner == self.owner:
            return False
        return not owner_alive(pid, start) if host == self.host else expires < wall

    def _figures(self, db: sqlite3.Connection, key: CapKey) -> tuple[float, float]:
        spent = db.execute(f"SELECT spent_usd FROM spend WHERE {KEY}", key).fetchone()
        leased = db.execute(f"SELECT COALESCE(SUM(leased_usd), 0) FROM leases WHERE {KEY}", key).fetchone()
        return (spent[0] if spent else 0.0), leased[0]

    def lease(
        self, key: CapKey, cap_usd: float, need_usd: float, worst_usd: float, wall: float
    ) -> LeaseAnswer:
        """Extend this owner's lease of `key` by what `lease_size` says of what is left."""
        with self._write() as db:
            self._reclaim(db, wall)
            spent, leased = self._figures(db, key)
            granted = lease_size(cap_usd - spent - leased, need_usd, worst_usd)
            if granted > 0:
                db.execute(
                    "INSERT INTO leases (owner, scope, win, period, leased_usd, host, pid, start, expires_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (owner, scope, win, period) DO UPDATE"
                    " SET leased_usd = leased_usd + excluded.leased_usd, expires_at = excluded.expires_at",
                    (self.owner, *key, granted, self.host, self.pid, self.start, wall + LEASE_TTL_S),
                )
            return LeaseAnswer(granted, spent, leased + granted)

    def sync(self, spent: dict[CapKey, float], keep: dict[CapKey, float], wall: float) -> None:
        """Add `spent`; set this owner's leases in `keep` (0: none); renew its leases."""
        with self._write() as db:
            db.executemany(
                "INSERT INTO spend (scope, win, period, spent_usd) VALUES (?, ?, ?, ?) ON CONFLICT"
                " (scope, win, period) DO UPDATE SET spent_usd = spent_usd + excluded.spent_usd",
                [(*key, usd) for key, usd in spent.items()],
            )
            for key, usd in keep.items():
                if usd <= 0:
                    db.execute(
                        f"DELETE FROM leases WHERE owner = ? AND {KEY}",
                        (self.owner, *key),
                    )
                else:
                    db.execute(
                        f"UPDATE leases SET leased_usd = ? WHERE owner = ? AND {KEY}",
                        (usd, self.owner, *key),
                    )
            db.execute("UPDATE leases SET expires_at = ? WHERE owner = ?", (wall + LEASE_TTL_S, self.owner))

    def rows(self, wall: float) -> list[LedgerRow]:
        """Every key with spend or a live lease (the leases of owners gone left out)."""
        spent = {
            CapKey(*r[:3]): r[3] for r in self.db.execute("SELECT scope, win, period, spent_usd FROM spend")
        }
        leased: dict[CapKey, float] = {}
        for owner, host, pid, start, expires, *key, usd in self.db.execute(
            "SELECT owner, host, pid, start, expires_at, scope, win, period, leased_usd FROM leases"
        ):
            if not self._gone(owner, host, pid, start, expires, wall):
                leased[CapKey(*key)] = leased.get(CapKey(*key), 0.0) + usd
        return [LedgerRow(k, spent.get(k, 0.0), leased.get(k, 0.0)) for k in sorted({*spent, *leased})]

    def close(self) -> None:
        self.db.close()
