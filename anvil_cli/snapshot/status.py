"""What `anvil status --json` and the HTTP API's `GET /status` report about a run, from the
journal: `status_json(journal, run_id)`, one `RunStatus`.

A `RunStatus` is the run's last snapshot (every key of `anvil_cli.snapshot.types.Snapshot`; a
run that stored none yet gets the builder's empty one) with what the journal knows besides:

    state                        as the user should read it: a `running` row whose process is
                                 gone is "interrupted", one with no snapshot yet "starting"
                                 (`stored_state`: the journal's own)
    counts                       the journal's, over the whole run
    paused, alerts               a live run's; false and [] otherwise
    metrics                      the last snapshot's, or the final summary of an ended run
    history                      breaker and scaling events from the journal (the last 50)
    pid, created_at, ended_at, stop_reason, duration_s
    live                         true while the run's process is alive (figures are a second old)
    resume_command               how to resume an interrupted or stopped run, else null
    cost_usd, attempts           journal totals over the whole run
    tool_errors                  failed tool calls over the whole run, from the jobs' attempt logs
    alert_events                 the last alert changes recorded in the journal
    summary                      the summary stored when the run ended (null while running)
    api_hosts                    the API hosts (host:port) its workers called
    checks                       only on a run with a checked job (output schemas, checks): how
                                 its answers fared, over the whole run, from the journal
                                 (`anvil_cli.snapshot.checks.ChecksSummary.to_json()`), grouped
                                 by model, variant and each metadata key of `checks.by`
    endpoints                    only on a run with named endpoints (`endpoints:`): each one's
                                 cost, calls, errors, share, pools and breakers
                                 (`anvil_cli.snapshot.endpoints`)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, TypedDict, cast

from anvil_cli.engine.journal.store import (
    FAILED,
    PENDING,
    RUN_FINISHED,
    RUN_INTERRUPTED,
    RUN_RUNNING,
    RUN_STOPPED,
    RUNNING,
    SUCCEEDED,
    Journal,
    RunRow,
)
from anvil_cli.engine.ledger.stops import scope_messages
from anvil_cli.engine.process.lifeline import owner_alive
from anvil_cli.errors import UsageError
from anvil_cli.snapshot.build import build_snapshot, snapshot_of
from anvil_cli.snapshot.checks_journal import checks_of_run
from anvil_cli.snapshot.endpoints import endpoints_of
from anvil_cli.snapshot.history import HISTORY_KINDS, history_of
from anvil_cli.snapshot.metrics import RunMetrics
from anvil_cli.snapshot.resume_advice import resume_advice
from anvil_cli.snapshot.state import EngineState, Mode, Phase
from anvil_cli.snapshot.types import Counts, HistoryEvent, Snapshot

RECENT_ALERT_EVENTS: Final = 20
RECENT_HISTORY_EVENTS: Final = 50
AMBIGUOUS_SHOWN: Final = 5  # candidates named when a run id prefix matches several
RUN_STARTING: Final = "starting"  # running, before its first snapshot (its first second)
ENDED_PHASES: Final[dict[str, Phase]] = {
    RUN_FINISHED: "finished",
    RUN_STOPPED: "stopped",
    RUN_INTERRUPTED: "stopped",
}


class _ScopesStopped(TypedDict, total=False):
    budget_scopes: list[str]  # why budget.scopes stopped jobs (only when they did)


class RunStatus(Snapshot, _ScopesStopped):
    """A run's status: its last snapshot with the journal's counts, history and run record."""

    stored_state: str
    pid: int | None
    created_at: float
    ended_at: float | None
    stop_reason: str | None
    duration_s: float
    live: bool
    resume_command: str | None
    cost_usd: float
    attempts: int
    tool_errors: int
    alert_events: list[dict[str, Any]]
    summary: dict[str, Any] | None
    api_hosts: list[str]  # host:port its workers call, as they reported it (worker_started)


def effective_state(row: RunRow, journal: Journal) -> str:
    """The journal's state, except that a `running` run whose process is gone is interrupted:
    a live pid that started at another time than the run's owner is another process (a state
    dir restored into a fresh container), so the run is interrupted there too."""
    if row.state == RUN_RUNNING and not owner_alive(row.pid, journal.owner_start(row.id)):
        return RUN_INTERRUPTED
    return row.state


def _live_state(stored: Snapshot | None) -> str:
    """A live run's state is its driver's phase (running, paused, stopping), once it has one."""
    return RUN_STARTING if stored is None else str(stored["state"])


def resume_command(row: RunRow, state: str, journal: Journal) -> str | None:
    """The command that resumes a run (`anvil_cli.snapshot.resume_advice`: the same string `anvil run`
    closes with), else None."""
    advice = resume_advice(journal, row, state)
    return advice.command if advice is not None else None


def find_run(journal: Journal, run: str | None) -> RunRow:
    """The run named by id or unique prefix, else the latest; UsageError if there is none, or
    if the prefix names several (they are listed)."""
    row = journal.find_run(run) if run else journal.latest_run()
    if row is not None:
        return row
    if not run:
        raise UsageError("no runs in the journal yet")
    candidates = journal.run_ids_matching(run, limit=AMBIGUOUS_SHOWN + 1)
    if len(candidates) > 1:
        more = ", ..." if len(candidates) > AMBIGUOUS_SHOWN else ""
        shown = ", ".join(candidates[:AMBIGUOUS_SHOWN]) + more
        raise UsageError(f"run id prefix {run!r} is ambiguous: it matches {shown}; give more of the id")
    raise UsageError(f"no run matches {run!r} (see `anvil status` for the runs)")


def _counts(journal: Journal, run_id: str) -> Counts:
    c = journal.counts(run_id)
    return {
        "total": sum(c.values()),
        "done": c[SUCCEEDED] + c[FAILED],
        "succeeded": c[SUCCEEDED],
        "failed": c[FAILED],
        "pending": c[PENDING],
        "running": c[RUNNING],
    }


def _duration(row: RunRow) -> float:
    end = row.ended_at if row.ended_at is not None else row.updated_at
    return round(max(0.0, end - row.created_at), 3)


def empty_snapshot(row: RunRow) -> Snapshot:
    """The snapshot of a run that stored none (it ended before its first tick, or was written by
    an older Anvil): the real builder's, with nothing measured."""
    mode: Mode = "batches" if row.mode == "batches" else "messages"
    state = EngineState(
        run_id=row.id,
        mode=mode,
        phase=ENDED_PHASES.get(row.state, "running"),
        paused=False,
        in_flight=0,
        agent_limit=0,
        agent_min=0,
        agent_max=0,
        queue_depth=0,
    )
    metrics = RunMetrics(total=row.total, started_at=0.0)
    return build_snapshot(state, metrics, batch_path=row.batch_path, started_wall=row.created_at, now=0.0)


def history(journal: Journal, run_id: str, limit: int = RECENT_HISTORY_EVENTS) -> list[HistoryEvent]:
    """The run's breaker and scaling events, as the journal recorded them, the last `limit`."""
    raws = [event for kind in HISTORY_KINDS for event in journal.events(run_id, kind)]
    return history_of(raws)[-limit:]


def _checks_by(snap: Snapshot, by: Sequence[str] | None) -> list[str]:
    """The metadata keys checks are grouped by: `by` when given, else the run's own (`checks.by`
    of the settings it ran with, as its snapshot keeps them)."""
    if by is not None:
        return list(by)
    checks = snap.get("checks")
    return list(checks["by"]) if checks is not None else []


def status_json(
    journal: Journal, run_id: str | None = None, *, checks_by: Sequence[str] | None = None
) -> RunStatus:
    """A run's status (id, unique prefix, or None for the latest) from the journal; its checks
    grouped by the metadata keys `checks_by` (None: those the run was started with)."""
    row = find_run(journal, run_id)
    state = effective_state(row, journal)
    live = state == RUN_RUNNING
    stored = snapshot_of(row.snapshot)
    snap = stored or empty_snapshot(row)
    totals = journal.totals(row.id)
    status = {  # typed as RunStatus below (mypy refuses `**snap` into one with optional keys)
        **snap,
        "state": _live_state(stored) if live else state,
        "counts": _counts(journal, row.id),
        "paused": snap["paused"] if live else False,
        "alerts": snap["alerts"] if live else [],
        "metrics": snap["metrics"] if live or row.summary is None else row.summary,
        "history": history(journal, row.id),
        "stored_state": row.state,
        "pid": row.pid,
        "created_at": row.created_at,
        "ended_at": row.ended_at,
        "stop_reason": row.stop_reason,
        "duration_s": _duration(row),
        "live": live,
        "resume_command": resume_command(row, state, journal),
        "cost_usd": round(totals["cost_usd"], 6),
        "attempts": int(totals["attempts"]),
        "tool_errors": journal.tool_errors(row.id),
        "alert_events": journal.events(row.id, "alert")[-RECENT_ALERT_EVENTS:],
        "summary": row.summary,
        "api_hosts": sorted({str(e["api"]) for e in journal.events(row.id, "worker_started") if "api" in e}),
    }
    # the journal's figures, exact, over the whole run (a snapshot's are as of its tick)
    endpoints = endpoints_of(journal.spend_by_endpoint(row.id), snap["limits"], snap["breakers"])
    if endpoints:
        status["endpoints"] = endpoints
    else:  # a run without named endpoints keeps the JSON it always had
        status.pop("endpoints", None)
    checks = checks_of_run(journal, row.id, _checks_by(snap, checks_by))
    if checks is not None:
        status["checks"] = checks.to_json()
    else:  # a run without checks keeps the JSON it always had
        status.pop("checks", None)
    spent_scopes = scope_messages(journal, row.id)  # budget.scopes that stopped its jobs
    if spent_scopes:
        status["budget_scopes"] = spent_scopes
    return cast(RunStatus, status)


def run_list_row(journal: Journal, row: RunRow) -> dict[str, Any]:
    """One line of the runs table; counts come from what is stored, the journal if nothing is."""
    state = effective_state(row, journal)
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
