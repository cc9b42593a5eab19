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

from anvil_cli.config import Settings, load_settings
from anvil_cli.engine.journal import Journal
from anvil_cli.errors import AnvilError, InputError, UsageError

T = TypeVar("T")

CONFIG_HELP = (
    "Config file (default: ./anvil.yaml when present). Precedence: flags > ANVIL_* env > file > defaults."
)


def err_console() -> Console:
    return Console(stderr=True, no_color="NO_COLOR" in os.environ, highlight=False)


def out_console() -> Console:
    return Console(no_color="NO_COLOR" in os.environ, highlight=False)


def set_in(overrides: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict, skipping flags the user did not give."""
    if value is None:
        return
    node = overrides
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def settings_from(config: Path | None, overrides: dict[str, Any]) -> Settings:
    return load_settings(config, overrides=overrides)


def report_error(exc: AnvilError) -> None:
    console = err_console()
    if isinstance(exc, InputError):
        for problem in exc.problems:
            console.print(f"[red]error[/red]: {problem}", markup=True, soft_wrap=True)
        n = len(exc.problems)
        console.print(f"{n} problem{'s' if n != 1 else ''} found; nothing was run.")
    else:
        console.print(f"[red]error[/red]: {exc}", soft_wrap=True)


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
