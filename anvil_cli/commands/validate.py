"""The `anvil validate` command."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add `anvil validate` to the app."""
    _ = app
