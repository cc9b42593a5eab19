"""`anvil check`: a finished run's answers checked again, without asking the model."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

import typer

from anvil_cli.commands.common import (
    CONFIG_HELP,
    domain_errors,
    journal_for_reading,
    out_console,
    set_in,
    settings_from,
)
from anvil_cli.exitcodes import ExitCode
from anvil_cli.jobs.loader import load_batch
from anvil_cli.session.finish import fail_under_gate
from anvil_cli.session.recheck import RecheckOutcome, recheck_run
from anvil_cli.snapshot.status import find_run

EXIT_HELP = (
    "Exit codes: 0 checked; 1 the pass rate is under --fail-under (or checks.fail_under); "
    "2 bad input or usage (no such run, a bad batch file)."
)


def check_command(
    run: str | None = typer.Argument(None, metavar="RUN", help="Run id or prefix (default: the latest run)."),
    batch: Path | None = typer.Option(
        None,
        "--batch",
        metavar="FILE",
        help="Check with this batch's output schemas and checks (jobs matched by id), not the run's own.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the outcome as JSON on stdout."),
    fail_under: float | None = typer.Option(
        None,
        "--fail-under",
        metavar="RATE",
        help="Exit 1 when the pass rate (0..1, e.g. 0.95) is lower (checks.fail_under).",
    ),
    config: Path | None = typer.Option(None, "--config", "-c", metavar="FILE", help=CONFIG_HELP),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", metavar="DIR", help="Where the journal lives (default .anvil)."
    ),
) -> None:
    """Check a run's answers again, without asking the model: each finished job's stored answer
    against its output schema and its checks (the run's own, or with --batch those of that
    file's job of the same id, so changed checks can be tried on answers already paid for).

    Judges are not asked again: a judge whose rubric, model and scale are unchanged keeps the
    grade it gave (a new pass_at applies to it); a new or changed judge fails as "not judged"
    (run the batch again to grade it). The new results replace the run's in the journal, so
    `anvil status`, `export` and `report` show them; states, answers and costs are unchanged."""
    overrides: dict[str, Any] = {}
    set_in(overrides, "state_dir", str(state_dir) if state_dir else None)
    set_in(overrides, "checks.fail_under", fail_under)
    with domain_errors():
        settings = settings_from(config, overrides)
        jobs = None
        if batch is not None:
            jobs = {job.id: job for job in load_batch(batch, extra_models=list(settings.prices))}
        with journal_for_reading(settings) as journal:
            row = find_run(journal, run)
            outcome = recheck_run(journal, row.id, settings, jobs)
    rate = settings.checks.fail_under
    gate = fail_under_gate(outcome.summary, rate) if rate is not None else None
    if json_out:
        data = outcome.to_json()
        if gate is not None:
            data["fail_under"] = gate
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        for line in _lines(outcome):
            out_console().print(line, markup=False, highlight=False, soft_wrap=True)
        if gate is not None:
            out_console().print(f"  {gate['message']}", markup=False, highlight=False)
    if gate is not None and gate["below"]:
        raise typer.Exit(int(ExitCode.CHECKS_BELOW))


def _lines(outcome: RecheckOutcome) -> list[str]:
    """The outcome as plain lines."""
    again, changed = f"{outcome.rechecked:,} answer(s) checked again", f"{outcome.changed:,} changed verdict"
    lines = [f"run {outcome.run_id}: {again}, {changed}"]
    if outcome.unmatched:
        lines.append(f"  {outcome.unmatched:,} job(s) not in --batch: checked with their own checks")
    if outcome.not_judged:
        lines.append(
            f"  {outcome.not_judged:,} judge check(s) not judged (new or changed since the run): failed;"
            " run the batch again to grade them"
        )
    s = outcome.summary
    if s is None:
        lines.append("  no answer has checks")
        return lines
    score = f", mean score {s.mean_score:.3f}" if s.mean_score is not None else ""
    lines.append(f"  pass rate {s.pass_rate:.1%} ({s.passed:,} of {s.checked:,} checked){score}")
    for model, g in s.by_model.items():
        if g.checked:
            lines.append(f"    {model}: {g.pass_rate:.1%} ({g.passed:,} of {g.checked:,})")
    for name, c in s.per_check.items():
        lines.append(f"    check {name}: {c.passed:,} of {c.total:,} passed")
    for flip in outcome.flips:
        lines.append(f"  {flip['id']}: {flip['before']} -> {flip['after']}")
    if outcome.changed > len(outcome.flips):
        lines.append(f"  ... and {outcome.changed - len(outcome.flips):,} more changed")
    return lines


def register(app: typer.Typer) -> None:
    """Add `anvil check` to the app."""
    app.command(
        "check",
        help=inspect.cleandoc(check_command.__doc__ or "") + "\n\n" + EXIT_HELP,
        short_help="Check a finished run's answers again, without asking the model.",
    )(check_command)
