"""The `anvil run` command."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add `anvil run` to the app."""
    _ = app
