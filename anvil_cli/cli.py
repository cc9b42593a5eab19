"""The `anvil` command line: parses, builds settings once, delegates, maps errors to exit codes."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import typer

from anvil_cli.commands import check, compare, plan, report, run, simulate, status, validate
from anvil_cli.exitcodes import EXIT_CODES_HELP

DISTRIBUTION = "anvil-cli"
HELP_OPTIONS = ["-h", "--help"]

app = typer.Typer(
    name="anvil",
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain help, as click writes it: no `<bool>` after flags (typer's Rich panels put one there),
    # re-filled to the terminal (at most 80 columns), nothing boxed or cut off in a CI log
    rich_markup_mode=None,
    context_settings={"help_option_names": HELP_OPTIONS},
)


def anvil_version() -> str:
    """The installed package's version (its metadata), or "unknown" when it is not installed."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"anvil {anvil_version()}")
        raise typer.Exit(0)


@app.callback(
    invoke_without_command=True,
    help="Run batches of Claude agent jobs as fast as the rate limits allow.\n\n" + EXIT_CODES_HELP,
)
def root(
    ctx: typer.Context,
    show_version: bool = typer.Option(
        False, "--version", "-V", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    if ctx.invoked_subcommand is None:  # bare `anvil`: the help, on stdout, and exit 0 (as gh does)
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


validate.register(app)
simulate.register(app)
run.register(app)
status.register(app)
plan.register(app)
report.register(app)
compare.register(app)
check.register(app)


def main() -> None:
    app(prog_name="anvil")  # also as `python -m anvil_cli`
