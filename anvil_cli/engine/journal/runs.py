"""The journal's runs: created with all their jobs at once, found by id, prefix or batch, taken
over by one process at a time (`claim_run`), and their state (`rows.RunState`), summary and
snapshot."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from typing import Any

from anvil_cli.engine.journal.connection import Connection
from anvil_cli.engine.journal.jobs import insert_jobs
from anvil_cli.engine.journal.kind import RUN_KIND, like_prefix
from anvil_cli.engine.journal.rows import RUN_RUNNING, RunRow
from anvil_cli.errors import UsageError
from anvil_cli.jobs.job import Job

_RUN_COLS = (
    "id, batch_path, batch_sha, created_at, updated_at, ended_at, state, pid, total, mode,"
    " stop_reason, summary_json, snapshot_json"
)


def _run_from_row(row: tuple[Any, ...]) -> RunRow:
    return RunRow(
        id=row[0],
        batch_path=row[1],
        batch_sha=row[2],
        created_at=row[3],
        updated_at=row[4],
        ended_at=row[5],
        state=row[6],
        pid=row[7],
        total=row[8],
        mode=row[9],
        stop_reason=row[10],
        summary=json.loads(row[11]) if row[11] else None,
        snapshot=json.loads(row[12]) if row[12] else None,
    )


class RunsTable(Connection):
    """Methods of `Journal` for its runs."""

    def create_run(
        self,
        batch_path: str,
        batch_sha: str,
        jobs: Iterable[Job],
        *,
        mode: str = "messages",
        kind: str = RUN_KIND,
    ) -> str:
        """Insert a run and all its jobs in one transaction: all or nothing. `kind`: "run", or
        "sample" for `anvil plan --sample` (never "the latest run")."""
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        now = time.time()
        with self.transaction():
            self._refuse_if_running(batch_path)
            self.db.execute(
                "INSERT INTO runs (id, batch_path, batch_sha, created_at, updated_at, state, pid, mode)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, batch_path, batch_sha, now, now, RUN_RUNNING, os.getpid(), mode),
            )
            total = insert_jobs(self.db, run_id, jobs)
            self.db.execute("UPDATE runs SET total = ? WHERE id = ?", (total, run_id))
            if self._runs_have_kind:
                self.db.execute("UPDATE runs SET kind = ? WHERE id = ?", (kind, run_id))
            self._stamp_owner(run_id)
        return run_id

    def _refuse_if_running(self, batch_path: str) -> None:
        """Inside the write transaction: another live process running this batch wins."""
        owner = self._live_owner(batch_path, RUN_RUNNING)
        if owner is not None:
            raise UsageError(f"run {owner[0]} of this batch is in progress in process {owner[1]}")

    def get_run(self, run_id: str) -> RunRow | None:
        row = self.db.execute(f"SELECT {_RUN_COLS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _run_from_row(row) if row else None

    def find_run(self, prefix: str) -> RunRow | None:
        """A run by id or unique id prefix."""
        rows = self.db.execute(
            f"SELECT {_RUN_COLS} FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at DESC",
            (like_prefix(prefix),),
        ).fetchall()
        if len(rows) == 1 or (rows and rows[0][0] == prefix):
            return _run_from_row(rows[0])
        return None

    def run_ids_matching(self, prefix: str, limit: int = 10) -> list[str]:
        """Ids of the runs starting with `prefix`, newest first (to name the candidates of an
        ambiguous prefix)."""
        rows = self.db.execute(
            "SELECT id FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at DESC LIMIT ?",
            (like_prefix(prefix), limit),
        )
        return [r[0] for r in rows]

    def latest_run(self, batch_path: str | None = None) -> RunRow | None:
        """The newest run of `batch_path`, or the newest ordinary run of any batch (not a plan's
        sample: `anvil status`, `export` and `report` default to it)."""
        if batch_path is None:
            only_runs = " WHERE kind = 'run'" if self._runs_have_kind else ""
            row = self.db.execute(
                f"SELECT {_RUN_COLS} FROM runs{only_runs} ORDER BY created_at DESC LIMIT 1"
            ).fetchone()
        else:
            row = self.db.execute(
                f"SELECT {_RUN_COLS} FROM runs WHERE batch_path = ? ORDER BY created_at DESC LIMIT 1",
                (batch_path,),
            ).fetchone()
        return _run_from_row(row) if row else None

    def list_runs(self, limit: int = 20) -> list[RunRow]:
        rows = self.db.execute(
            f"SELECT {_RUN_COLS} FROM runs ORDER BY created_at DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_run_from_row(r) for r in rows]

    def set_run_state(
        self,
        run_id: str,
        state: str,
        *,
        stop_reason: str | None = None,
        summary: dict[str, Any] | None = None,
        ended: bool = False,
    ) -> None:
        now = time.time()
        self.db.execute(
            "UPDATE runs SET state = ?, stop_reason = ?, updated_at = ?, ended_at = ?,"
            " summary_json = COALESCE(?, summary_json) WHERE id = ?",
            (
                state,
                stop_reason,
                now,
                now if ended else None,
                json.dumps(summary) if summary else None,
                run_id,
            ),
        )

    def claim_run(self, run_id: str, *, previous_pid: int | None) -> bool:
        """Make this process the run's owner, if nobody else took it since we read it (a
        compare-and-swap on the pid: two `anvil run` started at once cannot both resume it)."""
        with self.transaction():
            cur = self.db.execute(
                "UPDATE runs SET state = ?, pid = ?, updated_at = ?, ended_at = NULL, stop_reason = NULL"
                " WHERE id = ? AND pid IS ?",
                (RUN_RUNNING, os.getpid(), time.time(), run_id, previous_pid),
            )
            if cur.rowcount == 1:
                self._stamp_owner(run_id)  # and when this process started: its pid alone may be reused
        return cur.rowcount == 1

    def save_snapshot(self, run_id: str, snapshot: dict[str, Any]) -> None:
        self.db.execute(
            "UPDATE runs SET snapshot_json = ?, updated_at = ? WHERE id = ?",
            (json.dumps(snapshot), time.time(), run_id),
        )
