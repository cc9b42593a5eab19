"""What `anvil status` and the HTTP API's `GET /status` report about a run, from the journal.

`status_json(journal, run_id)` shape:

    run_id, batch_path, state    state as the user should read it: a `running` row whose process
                                 is gone is "interrupted"
    stored_state                 the journal's own state
    pid, created_at, updated_at, ended_at, stop_reason, duration_s
    live                         true while the run's process is alive (figures are a second old)
    resume_command               `anvil run <batch>` for interrupted/stopped runs, else null
    counts                       {total, pending, running, succeeded, failed, done}  (journal)
    cost_usd, attempts           (journal totals over the whole run)
    agents, queue_depth, paused  (from the last snapshot; null without one)
    alerts                       active alerts of a live run; [] otherwise
    alert_events                 the last alert changes recorded in the journal
    metrics                      the last snapshot's metrics, or the final summary of an ended run
    governor                     the last snapshot's governor state (null without one)
    snapshot                     the last snapshot stored by the conductor (see anvil_cli.snapshot)
    summary                      the summary stored when the run ended (null while running)
"""

from __future__ import annotations

import os
import shlex
from typing import Any, Final

from anvil_cli.engine.journal import (
    FAILED,
    PENDING,
    RUN_INTERRUPTED,
    RUN_RUNNING,
    RUN_STOPPED,
    RUNNING,
    SUCCEEDED,
    Journal,
    RunRow,
)
from anvil_cli.engine.lifeline import pid_alive
from anvil_cli.errors import UsageError

RECENT_ALERT_EVENTS: Final = 20


def effective_state(row: RunRow) -> str:
    """The journal's state, except that a `running` run whose process is gone is interrupted."""
    if row.state == RUN_RUNNING and not pid_alive(row.pid):
        return RUN_INTERRUPTED
    return row.state


def resume_command(row: RunRow, state: str, journal: Journal | None = None) -> str | None:
    """The command that resumes a run: how it was last started (less `--fresh`), else the plain
    `anvil run BATCH`."""
    if state not in (RUN_INTERRUPTED, RUN_STOPPED):
        return None
    started = journal.events(row.id, "run_started") if journal is not None else []
    if not started:
        return f"anvil run {shlex.quote(row.batch_path)}"
    last = started[-1]
    argv = [a for a in last.get("argv", []) if a not in ("--fresh", "--retry-failed")]
    command = shlex.join(argv)
    cwd = last.get("cwd")
    return f"cd {shlex.quote(cwd)} && {command}" if cwd and cwd != os.getcwd() else command


def find_run(journal: Journal, run: str | None) -> RunRow:
    """The run named by id or prefix, else the latest; UsageError if there is none."""
    row = journal.find_run(run) if run else journal.latest_run()
    if row is None:
        raise UsageError(f"no run matches {run!r}" if run else "no runs in the journal yet")
    return row


def _counts(journal: Journal, run_id: str) -> dict[str, int]:
    c = journal.counts(run_id)
    return {
        "total": sum(c.values()),
        PENDING: c[PENDING],
        RUNNING: c[RUNNING],
        SUCCEEDED: c[SUCCEEDED],
        FAILED: c[FAILED],
        "done": c[SUCCEEDED] + c[FAILED],
    }


def _duration(row: RunRow) -> float:
    end = row.ended_at if row.ended_at is not None else row.updated_at
    return round(max(0.0, end - row.created_at), 3)


def status_json(journal: Journal, run_id: str | None = None) -> dict[str, Any]:
    """A run's status (id, unique prefix, or None for the latest) from the journal."""
    row = find_run(journal, run_id)
    state = effective_state(row)
    live = state == RUN_RUNNING
    snap = row.snapshot or {}
    totals = journal.totals(row.id)
    return {
        "run_id": row.id,
        "batch_path": row.batch_path,
        "state": state,
        "stored_state": row.state,
        "pid": row.pid,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "ended_at": row.ended_at,
        "stop_reason": row.stop_reason,
        "duration_s": _duration(row),
        "live": live,
        "resume_command": resume_command(row, state, journal),
        "counts": _counts(journal, row.id),
        "cost_usd": round(totals["cost_usd"], 6),
        "attempts": int(totals["attempts"]),
        "agents": snap.get("agents"),
        "queue_depth": snap.get("queue_depth"),
        "paused": bool(snap.get("paused", False)) if live else False,
        "alerts": list(snap.get("alerts") or []) if live else [],
        "alert_events": journal.events(row.id, "alert")[-RECENT_ALERT_EVENTS:],
        "metrics": snap.get("metrics") if live or row.summary is None else row.summary,
        "governor": snap.get("governor"),
        "snapshot": row.snapshot,
        "summary": row.summary,
    }


def run_list_row(journal: Journal, row: RunRow) -> dict[str, Any]:
    """One line of the runs table; counts come from what is stored, the journal if nothing is."""
    state = effective_state(row)
    summary_counts = (row.summary or {}).get("counts")
    if summary_counts and state != RUN_RUNNING:
        done = int(summary_counts["succeeded"]) + int(summary_counts["failed"])
        total = int(summary_counts["total"])
    else:
        c = journal.counts(row.id)
        done, total = c[SUCCEEDED] + c[FAILED], sum(c.values())
    summary = row.summary or {}
    cost = summary.get("run_cost_usd")
    if cost is None:
        cost = journal.totals(row.id)["cost_usd"]
    return {
        "run_id": row.id,
        "batch_path": row.batch_path,
        "created_at": row.created_at,
        "state": state,
        "done": done,
        "total": total,
        "cost_usd": round(float(cost), 6),
        "duration_s": _duration(row),
    }


def runs_json(journal: Journal, limit: int = 20) -> list[dict[str, Any]]:
    """The most recent runs, newest first."""
    return [run_list_row(journal, row) for row in journal.list_runs(limit)]
