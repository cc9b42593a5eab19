"""`anvil check RUN`: a run's answers checked again without asking the model.

Every finished job with an answer (or a check record) is checked again on its stored output, as
a worker checks it (`engine/worker/answers.py`): the output schema first (an answer that does
not match it is checked no further), then each check in the job's order, deterministic ones
evaluated again (`policy/checks/evaluate.py`). The checks are the job's own as the run journaled
them, or with `--batch FILE` those of that batch's job of the same id (so a user can change
their checks and check again; a job the batch lacks keeps its own).

No model is asked, so a judge keeps its grade from the run when its rubric, model and scale are
unchanged (a changed `pass_at` is applied to the grade it gave); a judge that is new or changed
is *not judged*: its check fails, saying so (the conservative side for a CI gate), and the
outcome counts it. Re-asks and what the judges cost stay as the run recorded them; a job's state,
output and cost are never changed. The new records are written back to the journal
(`Journal.update_checks`) in one transaction, an event `rechecked` says so, and the run's
checks are summarised again (`snapshot/checks.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from anvil_cli.config.settings import Settings
from anvil_cli.engine.journal.store import FAILED, SUCCEEDED, Journal
from anvil_cli.jobs.job import Job
from anvil_cli.policy.checks.evaluate import evaluate_all
from anvil_cli.policy.checks.judge import judge_model, pass_at, scale_of
from anvil_cli.policy.checks.record import CheckRecord, CheckResult
from anvil_cli.policy.checks.schema import check_answer
from anvil_cli.policy.checks.spec import CheckSpec, specs_of
from anvil_cli.snapshot.checks import ChecksSummary, summarize_checks

NOT_JUDGED = "not judged: this judge is new or changed since the run, and `anvil check` asks no model"
FLIPS_SHOWN = 20  # jobs whose verdict changed, listed in the outcome


@dataclass
class RecheckOutcome:
    """What checking a run again found."""

    run_id: str
    rechecked: int = 0  # finished jobs checked again
    changed: int = 0  # of them, those whose verdict (passed or not) changed
    not_judged: int = 0  # judge checks new or changed since the run, failed as not judged
    unmatched: int = 0  # with --batch: finished jobs whose id the batch lacks (their own checks used)
    flips: list[dict[str, Any]] = field(default_factory=list)  # the first FLIPS_SHOWN changes
    summary: ChecksSummary | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "rechecked": self.rechecked,
            "changed": self.changed,
            "not_judged": self.not_judged,
            "unmatched": self.unmatched,
            "flips": self.flips,
            "checks": self.summary.to_json() if self.summary is not None else None,
        }


def recheck_record(
    then: Job, now: Job, output: str | None, old: CheckRecord | None, default_judge: str
) -> tuple[CheckRecord | None, int]:
    """The checks of `now` over `output` (`then`: the job as it ran, `old`: its record then), and
    how many of its judges could not be kept. None when `now` has no checks."""
    specs = specs_of(now.checks)
    if now.output_schema is None and not specs:
        return None, 0
    kept = (old.reasks, old.reask_cost_usd, old.judge_cost_usd) if old is not None else (0, 0.0, 0.0)
    first: tuple[CheckResult, ...] = ()
    if now.output_schema is not None:
        verdict = check_answer(now.output_schema, output)
        if not verdict.valid:  # as a worker: an answer off its schema is checked no further
            return CheckRecord((verdict.as_check(),), *kept), 0
        first = (verdict.as_check(),)
    evaluated = iter(evaluate_all([s for s in specs if not s.is_judge], output))
    graded_then = {r.name: r for r in (old.results if old is not None else ()) if r.kind == "judge"}
    specs_then = {s.name: s for s in specs_of(then.checks) if s.is_judge}
    results: list[CheckResult] = []
    not_judged = 0
    for spec in specs:
        if not spec.is_judge:
            results.append(next(evaluated))
            continue
        result = _kept_grade(spec, specs_then.get(spec.name), graded_then.get(spec.name), default_judge)
        if result is None:
            not_judged += 1
            model = judge_model(spec, default_judge)
            result = CheckResult(spec.name, "judge", False, 0.0, detail=NOT_JUDGED, model=model)
        results.append(result)
    return CheckRecord((*first, *results), *kept), not_judged


def _kept_grade(
    spec: CheckSpec, then: CheckSpec | None, graded: CheckResult | None, default_judge: str
) -> CheckResult | None:
    """The grade a judge gave in the run, when it is the same judge (rubric, model, scale); with
    its `pass_at` as it is now. None: a new or changed judge."""
    if then is None or graded is None:
        return None
    same = (
        spec.get("rubric") == then.get("rubric")
        and judge_model(spec, default_judge) == graded.model
        and scale_of(spec) == scale_of(then)
    )
    if not same:
        return None
    if graded.value is None:  # the judge gave no grade (its call or its reply failed): as it was
        return graded
    return CheckResult(
        graded.name,
        "judge",
        graded.value >= pass_at(spec),
        graded.score,
        graded.value,
        graded.detail,
        graded.model,
    )


def recheck_run(
    journal: Journal, run_id: str, settings: Settings, batch: Mapping[str, Job] | None = None
) -> RecheckOutcome:
    """Check every finished job of `run_id` again (with `batch`: that batch's checks, by job id),
    write the new records to the journal, and summarise the run's checks."""
    outcome = RecheckOutcome(run_id)
    updates: list[tuple[int, CheckRecord | None]] = []
    for row in journal.iter_results(run_id):
        if row["state"] not in (SUCCEEDED, FAILED) or (row["output"] is None and row["checks"] is None):
            continue  # unfinished, or no answer to check (a call that failed for good)
        then = Job.from_record(row["job"])
        now = then
        if batch is not None:
            found = batch.get(row["id"])
            outcome.unmatched += found is None
            now = found or then
        old = CheckRecord.from_json(row["checks"]) if row["checks"] is not None else None
        record, not_judged = recheck_record(then, now, row["output"], old, settings.checks.judge_model)
        outcome.rechecked += 1
        outcome.not_judged += not_judged
        before = _verdict(row["state"], old)
        after = _verdict(row["state"], record)
        if before != after:
            outcome.changed += 1
            if len(outcome.flips) < FLIPS_SHOWN:
                outcome.flips.append({"id": row["id"], "before": before, "after": after})
        updates.append((row["seq"], record))
    with journal.transaction():
        for seq, record in updates:
            journal.update_checks(run_id, seq, record)
        journal.add_event(
            run_id,
            "rechecked",
            {"jobs": outcome.rechecked, "changed": outcome.changed, "not_judged": outcome.not_judged},
        )
    outcome.summary = summarize_checks(journal.iter_results(run_id), settings.checks.by)
    return outcome


def _verdict(state: str, record: CheckRecord | None) -> str:
    """passed, failed, or unchecked (as snapshot/checks.py counts a job)."""
    if record is None:
        return "unchecked"
    return "passed" if state == SUCCEEDED and record.passed else "failed"
