"""The journal's events: what happened during a run (a worker started or died, a governor's
decision, spend a journal failure left unjournaled), each a kind and a JSON object, in time order."""

from __future__ import annotations

import json
import time
from typing import Any

from anvil_cli.engine.journal.connection import Connection


class EventsTable(Connection):
    """Methods of `Journal` for a run's events."""

    def add_event(self, run_id: str, kind: str, data: dict[str, Any], at: float | None = None) -> None:
        self.db.execute(
            "INSERT INTO events (run_id, at, kind, data_json) VALUES (?, ?, ?, ?)",
            (run_id, at if at is not None else time.time(), kind, json.dumps(data)),
        )

    def events(self, run_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT at, kind, data_json FROM events WHERE run_id = ?"
        args: tuple[Any, ...] = (run_id,)
        if kind is not None:
            sql += " AND kind = ?"
            args += (kind,)
        return [
            {"at": a, "kind": k, **json.loads(d)} for a, k, d in self.db.execute(sql + " ORDER BY at", args)
        ]
