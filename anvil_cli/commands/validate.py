"""The `anvil validate` command: check the settings and a batch file; run nothing, write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from anvil_cli.commands.common import out_console, problem_lines
from anvil_cli.config.endpoint import Endpoint, EndpointError, named_endpoint
from anvil_cli.config.endpoint_checks import Finding, batch_models, endpoint_errors, endpoint_warnings
from anvil_cli.config.load import load_located_settings
from anvil_cli.config.settings import EndpointSettings, Settings
from anvil_cli.config.sources import Origin, origin_of
from anvil_cli.config.vault import environ_with_secrets
from anvil_cli.errors import ConfigError, Problem, ProblemLog
from anvil_cli.exitcodes import EXIT_CODES_HELP, ExitCode
from anvil_cli.input_limits import plain
from anvil_cli.jobs.summary import BatchSummary, problem_dict, summarize_batch

HELP = (
    "Check a batch file (YAML, templated YAML or JSONL) and the settings, without running anything.\n\n"
    "Prints the number of jobs per model and priority and an estimate of the input tokens; "
    "or the problems found, one per line as file:line[:col]: job 'id': field 'f': message "
    "(the first 50, then how many more).\n\n"
    "With an `endpoints:` section, each endpoint is resolved as `anvil run` would: its credential "
    "variable set, its provider's extra installed, every model of the batch served by it.\n\n"
    "Nothing is written: the state directory is not created.\n\n" + EXIT_CODES_HELP
)


def register(app: typer.Typer) -> None:
    """Add `anvil validate` to the app."""
    summary = "Check a batch file and the settings; run nothing."
    app.command("validate", help=HELP, short_help=summary)(validate)


def validate(
    batch: Path = typer.Argument(
        ..., metavar="BATCH", help="The batch file: .yaml/.yml, or .jsonl/.ndjson (one job per line)."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", metavar="FILE", help="Settings file (default: ./anvil.yaml when present)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary to stdout."),
) -> None:
    """Check the settings and the batch; exit 0 when both are valid, 2 otherwise."""
    problems = ProblemLog()
    settings: Settings | None = None
    origins: dict[str, Origin] = {}
    try:
        settings, origins = load_located_settings(config, variables=True)
    except ConfigError as exc:
        problems.extend(exc.problems, exc.total)
    extra_models = list(settings.prices) if settings is not None else []
    summary = summarize_batch(batch, extra_models=extra_models)
    problems.extend(summary.problems, summary.problem_count)
    warnings: list[Problem] | None = None
    if settings is not None and settings.endpoints:
        found, warnings = _endpoint_problems(settings, origins, batch_models(summary.per_model, settings))
        problems.extend(found)
    if as_json:
        _print_json(summary, problems, warnings)
    for warning in warnings or []:
        typer.echo(f"warning: {plain(str(warning))}", err=True)
    if problems:
        lines, closing = problem_lines(problems.kept, problems.total)
        for line in [*lines, *closing]:
            typer.echo(line, err=True)
        raise typer.Exit(int(ExitCode.BAD_INPUT))
    if not as_json:
        _print_summary(summary)


def _endpoint_problems(
    settings: Settings, origins: dict[str, Origin], models: set[str]
) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) of the `endpoints:` section, each at the file and line of its field:
    every entry resolved as `anvil run` resolves it, then `config/endpoint_checks.py`."""
    env = environ_with_secrets()
    errors: list[Problem] = []
    endpoints: list[Endpoint] = []
    for i, entry in enumerate(settings.endpoints):
        try:
            endpoints.append(named_endpoint(i, entry, env))
        except EndpointError as exc:
            where = (
                f"endpoints[{i}].{exc.field}"
                if exc.field in EndpointSettings.model_fields
                else f"endpoints[{i}]"
            )
            errors.append(_located(origins, Finding(where, str(exc))))
            endpoints.append(
                named_endpoint(i, entry, {}, simulated_key="-")
            )  # its shape, for the checks below
    resolved = tuple(endpoints)
    errors += [_located(origins, f) for f in endpoint_errors(settings, resolved, models)]
    return errors, [_located(origins, f) for f in endpoint_warnings(settings, resolved)]


def _located(origins: dict[str, Origin], finding: Finding) -> Problem:
    origin = origin_of(origins, finding.path)
    return Problem(origin.file, finding.message, line=origin.line, field=finding.path)


def _print_json(summary: BatchSummary, problems: ProblemLog, warnings: list[Problem] | None) -> None:
    """The summary; `problems` lists at most MAX_KEPT_PROBLEMS, `problem_count` counts them all;
    `warnings` (the endpoints', only with an `endpoints:` section)."""
    data = summary.to_dict()
    data["ok"] = not problems
    data["problems"] = [problem_dict(p) for p in problems.kept]
    data["problem_count"] = problems.total
    if warnings is not None:
        data["warnings"] = [problem_dict(p) for p in warnings]
    typer.echo(json.dumps(data, indent=2))


def _print_summary(summary: BatchSummary) -> None:
    """Plain text where user text goes (a path or a model id may hold `[/bold]`)."""
    console = out_console()
    variants = len(summary.per_variant)
    times = f" ({summary.base_jobs} × {variants} variant{'s' if variants != 1 else ''})" if variants else ""
    console.print(
        Text.assemble(
            ("✓", "green"), f" {plain(summary.path)}: ", (str(summary.jobs), "bold"), f" jobs, valid{times}"
        )
    )
    if variants:
        listed = ", ".join(f"{plain(name)} {count}" for name, count in summary.per_variant.items())
        console.print(f"variants: {listed}", markup=False)
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("model")
    table.add_column("jobs", justify="right")
    for model, count in sorted(summary.per_model.items()):
        table.add_row(Text(plain(model)), str(count))
    console.print(table)
    priorities = ", ".join(f"{label} {count}" for label, count in summary.per_priority.items())
    console.print(f"priority: {priorities}", markup=False)
    console.print(
        f"input tokens (estimate, ~4 characters a token): ~{summary.estimated_input_tokens:,}", markup=False
    )
