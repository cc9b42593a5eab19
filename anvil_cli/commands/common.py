"""Helpers every command shares: settings from flags, errors to exit codes, consoles."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from anvil_cli.config.load import load_settings
from anvil_cli.config.settings import Settings
from anvil_cli.engine.journal.store import Journal
from anvil_cli.errors import (
    MAX_PRINTED_PROBLEMS,
    AnvilError,
    InputError,
    Problem,
    UsageError,
    more_line,
)
from anvil_cli.input_limits import plain

T = TypeVar("T")

CONFIG_HELP = (
    "Config file (default: ./anvil.yaml when present). Precedence: flags > ANVIL_* env > file > defaults."
)


def _unwrapped_off_a_terminal(console: Console) -> Console:
    """Off a terminal (CI logs, pipes, files) a printed line stays one line, however long, so
    grep finds it whole; tables and panels still fit the width (COLUMNS, else 80)."""
    console.soft_wrap = not console.is_terminal
    return console


def err_console() -> Console:
    return _unwrapped_off_a_terminal(Console(stderr=True, no_color="NO_COLOR" in os.environ, highlight=False))


def out_console() -> Console:
    return _unwrapped_off_a_terminal(Console(no_color="NO_COLOR" in os.environ, highlight=False))


def set_in(overrides: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict, skipping flags the user did not give."""
    if value is None:
        return
    node = overrides
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def settings_from(config: Path | None, overrides: dict[str, Any], *, variables: bool = False) -> Settings:
    """The settings of a command; `variables`: the variables they name must be set (`run`)."""
    return load_settings(config, overrides=overrides, variables=variables)


def problem_lines(problems: list[Problem], total: int | None = None) -> tuple[list[str], list[str]]:
    """The report of `problems` as plain text: (one line per problem, at most MAX_PRINTED_PROBLEMS,
    escaped for a terminal; the closing lines: "... and N more problems" and the count)."""
    total = max(total or 0, len(problems))
    lines = [plain(str(p)) for p in problems[:MAX_PRINTED_PROBLEMS]]
    more = more_line(len(lines), total)
    found = f"{total:,} problem{'s' if total != 1 else ''} found; nothing was run."
    return lines, [more, found] if more else [found]


def report_error(exc: AnvilError) -> None:
    """Print an error; user text in it is never read as Rich markup (an id may be `[/bold]`)."""
    console = err_console()
    if isinstance(exc, InputError):
        lines, closing = problem_lines(exc.problems, exc.total)
        for line in lines:
            console.print(Text.assemble(("error", "red"), ": ", line), soft_wrap=True)
        for line in closing:
            console.print(line, markup=False, soft_wrap=True)
    else:
        console.print(Text.assemble(("error", "red"), ": ", plain(str(exc))), soft_wrap=True)


@contextmanager
def domain_errors() -> Iterator[None]:
    """Turn Anvil's errors into messages and exit codes at the edge (ANVIL_DEBUG=1: traceback)."""
    try:
        yield
    except AnvilError as exc:
        if os.environ.get("ANVIL_DEBUG"):
            raise
        report_error(exc)
        raise typer.Exit(int(exc.exit_code)) from None


def journal_for_reading(settings: Settings) -> Journal:
    """The journal in the settings' state dir, for commands that only read it (never created)."""
    journal = Journal.open_existing(settings.state_dir)
    if journal is None:
        raise UsageError(f"no journal in {settings.state_dir}: nothing has run here yet")
    return journal


def is_tty() -> bool:
    return sys.stderr.isatty()
