"""The `anvil simulate` command."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add `anvil simulate` to the app."""
    _ = app
