"""The `anvil` command line: parses, builds settings once, delegates, maps errors to exit codes."""

from __future__ import annotations

import typer

from anvil_cli.commands import plan, report, run, simulate, status, validate
from anvil_cli.exitcodes import EXIT_CODES_HELP

app = typer.Typer(
    name="anvil",
    help="Run batches of Claude agent jobs as fast as the rate limits allow.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

validate.register(app)
simulate.register(app)
run.register(app)
status.register(app)
plan.register(app)
report.register(app)


def main() -> None:
    app()
