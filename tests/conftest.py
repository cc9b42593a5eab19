"""Shared fixtures. Every test runs in its own empty directory with no ANVIL_* / ANTHROPIC_* variables."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the commands the tests start, however pytest itself was started.

    A shell without job control starts background jobs (`pytest &` in a script) with SIGINT
    ignored, children inherit that, and a test pressing Ctrl-C at `anvil status --watch` would
    wait for nothing. Python installs its own handler only where SIGINT was not ignored.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in `tmp_path` so nothing touches the repo or $HOME, with a clean Anvil environment."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("ANVIL_", "ANTHROPIC_")):
            monkeypatch.delenv(name)
