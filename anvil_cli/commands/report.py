"""`anvil report`: a run as one self-contained HTML file (charts, summary, alerts, failures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from anvil_cli.commands.common import (
    CONFIG_HELP,
    domain_errors,
    err_console,
    journal_for_reading,
    set_in,
    settings_from,
)
from anvil_cli.errors import UsageError
from anvil_cli.session.preflight import check_output_path
from anvil_cli.views.report import build_report


def report_command(
    run: str | None = typer.Argument(None, metavar="RUN", help="Run id or prefix (default: the latest run)."),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        metavar="FILE",
        help="HTML file to write, mode 0600 (default: anvil-report-<run id>.html in the current directory).",
    ),
    config: Path | None = typer.Option(None, "--config", "-c", metavar="FILE", help=CONFIG_HELP),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", metavar="DIR", help="Where the journal lives (default .anvil)."
    ),
) -> None:
    """Write a run's report: one self-contained HTML file with the dashboard's charts over the
    whole run, the summary, per-model latency, limits and breakers, how the answers fared against
    their checks (by model, variant and the metadata keys of checks.by), the alerts raised and cleared,
    and the failed jobs with their errors (no prompts, no outputs). It opens offline and loads
    nothing from anywhere: attach it to a pull request or keep it as a CI artifact. Works for any
    run in the journal: running, finished, stopped or interrupted.

    Exit 2 if there is no such run or the file cannot be written (nothing half-written is left)."""
    overrides: dict[str, Any] = {}
    set_in(overrides, "state_dir", str(state_dir) if state_dir else None)
    with domain_errors():
        settings = settings_from(config, overrides)
        if output is not None:
            try:
                check_output_path(output)  # before the journal is read; no directory is created
            except UsageError as exc:
                raise UsageError(f"cannot write the report: {exc}") from None
        with journal_for_reading(settings) as journal:
            run_id, path = build_report(journal, run, output, settings.checks.by or None)
    err_console().print(f"wrote the report of run {run_id} to {path}", markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `anvil report` to the app."""
    app.command("report", short_help="Write a run's report: one self-contained HTML file.")(report_command)
