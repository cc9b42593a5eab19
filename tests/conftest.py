"""Shared fixtures. Every test runs in its own empty directory with no ANVIL_* / ANTHROPIC_* variables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in `tmp_path` so nothing touches the repo or $HOME, with a clean Anvil environment."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("ANVIL_", "ANTHROPIC_")):
            monkeypatch.delenv(name)
