"""The command that resumes a run, as `anvil run` closes with it and `anvil status` (and
`GET /status`'s `resume_command`) shows it: one function, so both say the same string.

It is the command the run was last started with, so it resumes *this* run:

* less `--fresh` (which would start a new run) and `--retry-failed` (a choice, not a need);
* after a budget stop, with `--budget` raised above what the whole run has spent (every
  session, every earlier raise): the spend, plus the forecast of the jobs left (p90 of the
  per-job cost observed in the journal, the same range model as the live forecast), plus the
  worst case of the call the budget refused (every call must fit its worst case under the cap,
  the last one too), rounded up to the cent. The same `--budget` would stop again at once;
* prefixed with `cd DIR &&` when it was started elsewhere (its paths are relative to there).

None when the run needs no resuming (running or finished), or when a later run of the same
batch exists: `anvil run` picks up a batch's latest run, so no command resumes this one.
"""

from __future__ import annotations

import math
import os
import shlex
from dataclasses import dataclass
from typing import Final

from anvil_cli.engine.journal.store import PENDING, RUN_INTERRUPTED, RUN_STOPPED, RUNNING, Journal, RunRow
from anvil_cli.policy.forecast import RunningCost
from anvil_cli.policy.governor.budget import usd

BUDGET_STOP: Final = "budget"
DROPPED_FLAGS: Final = ("--fresh", "--retry-failed")


@dataclass(frozen=True, slots=True)
class ResumeAdvice:
    """The command, and (after a budget stop) why its `--budget` is what it is."""

    command: str
    budget_usd: float | None = None
    why: str | None = None


def resume_advice(journal: Journal, row: RunRow, state: str) -> ResumeAdvice | None:
    """How to resume run `row`, whose state (as the user should read it) is `state`."""
    if state not in (RUN_INTERRUPTED, RUN_STOPPED):
        return None
    latest = journal.latest_run(row.batch_path)
    if latest is not None and latest.id != row.id:
        return None
    started = journal.events(row.id, "run_started")
    last = started[-1] if started else {}
    argv = [str(a) for a in last.get("argv") or ["anvil", "run", row.batch_path]]
    argv = [a for a in argv if a not in DROPPED_FLAGS]
    budget_usd, why = (None, None)
    if row.stop_reason == BUDGET_STOP:
        budget_usd, why = budget_to_resume(journal, row.id)
        argv = [*_without_option(argv, "--budget"), "--budget", f"{budget_usd:.2f}"]
    command = shlex.join(argv)
    cwd = last.get("cwd")
    if isinstance(cwd, str) and cwd and cwd != os.getcwd():
        command = f"cd {shlex.quote(cwd)} && {command}"
    return ResumeAdvice(command, budget_usd, why)


def budget_to_resume(journal: Journal, run_id: str) -> tuple[float, str]:
    """A cap for the resumed run, and how it was reached (see the module's docstring)."""
    spent = journal.totals(run_id)["cost_usd"]
    counts = journal.counts(run_id)
    left = counts[PENDING] + counts[RUNNING]
    refused = journal.events(run_id, "budget_exhausted")
    worst = float(refused[-1].get("worst_usd") or 0.0) if refused else 0.0
    per_job = RunningCost()
    for cost in journal.paid_job_costs(run_id):
        per_job.add(cost)
    projected = per_job.project(0.0, left)
    rest = projected.p90 if projected is not None and left else 0.0
    parts = [f"{usd(spent)} spent"]
    if rest > 0:
        parts.append(f"{usd(rest)} forecast for the {left:,} job(s) left (p90)")
    if worst > 0:  # the last call, too, must fit its worst case under the cap
        parts.append(f"{usd(worst)}, the worst case of one call")
    cap = math.ceil((spent + rest + worst) * 100 - 1e-6) / 100
    if cap <= spent:  # nothing to forecast, no refused call on record: a cent above the spend
        cap = math.floor(spent * 100 + 1e-6) / 100 + 0.01
    return cap, " + ".join(parts)


def _without_option(argv: list[str], name: str) -> list[str]:
    """`argv` less `name VALUE` and `name=VALUE`."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out
