"""`anvil compare`: two runs, or the variants of one run, side by side, from the journal."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from anvil_cli.commands.common import (
    CONFIG_HELP,
    domain_errors,
    err_console,
    journal_for_reading,
    out_console,
    set_in,
    settings_from,
)
from anvil_cli.errors import UsageError
from anvil_cli.session.preflight import check_output_path
from anvil_cli.views.compare.model import DEFAULT_PASS_RATE, build_comparison


def compare_command(
    runs: list[str] | None = typer.Argument(
        None,
        metavar="[RUN_A [RUN_B]]",
        help="Two run ids or prefixes; or one run, to compare its variants (none: the latest run's).",
    ),
    variants: tuple[str, str] | None = typer.Option(
        None, "--variants", metavar="A B", help="Two variants of the run to compare (default: all of them)."
    ),
    pass_rate: float = typer.Option(
        DEFAULT_PASS_RATE,
        "--pass-rate",
        metavar="RATE",
        help="Name the cheapest side (by cost per job) whose pass rate is at least this (0..1).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    html: Path | None = typer.Option(
        None, "--html", metavar="FILE", help="Also write it as one self-contained HTML page, mode 0600."
    ),
    config: Path | None = typer.Option(None, "--config", "-c", metavar="FILE", help=CONFIG_HELP),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", metavar="DIR", help="Where the journal lives (default .anvil)."
    ),
) -> None:
    """Compare two runs (jobs matched by id), or the variants of one run (matched by the id the
    batch gave them; without a run, the latest run's variants): jobs, succeeded and failed, pass
    rate and mean score of their checks, cost in all and per job, the judges' cost, re-asks,
    latency p50/p95 and tokens side by side, with each difference (B − A, and B / A); the jobs
    that flipped from pass to fail and back, the jobs only one side has, and the cheapest side
    whose pass rate is at least --pass-rate.

    Exit 2 for an unknown run or variant, or arguments that do not fit."""
    runs = runs or []
    overrides: dict[str, Any] = {}
    set_in(overrides, "state_dir", str(state_dir) if state_dir else None)
    with domain_errors():
        if len(runs) > 2:
            raise UsageError("name at most two runs (anvil compare RUN_A RUN_B)")
        if len(runs) == 2 and variants is not None:
            raise UsageError("--variants compares the variants of one run: name one run with it")
        settings = settings_from(config, overrides)
        if html is not None:
            try:
                check_output_path(html)  # before the journal is read; no directory is created
            except UsageError as exc:
                raise UsageError(f"cannot write the page: {exc}") from None
        with journal_for_reading(settings) as journal:
            comparison = build_comparison(journal, runs, variants, pass_rate=pass_rate)
        if html is not None:
            # imported here, as `render_text` below: the page and text views load for `anvil
            # compare` only, not for every command's start-up
            from anvil_cli.views.compare.render_html import write_html

            write_html(comparison, html)
    if json_out:
        sys.stdout.write(json.dumps(comparison.to_json(), indent=2) + "\n")
    else:
        from anvil_cli.views.compare.render_text import render_text

        out_console().print(render_text(comparison))
    if html is not None:
        err_console().print(f"wrote the comparison to {html}", markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `anvil compare` to the app."""
    summary = "Compare two runs, or the variants of one, side by side."
    app.command("compare", short_help=summary)(compare_command)
