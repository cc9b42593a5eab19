"""Ctrl-C and SIGTERM: the first asks for a clean stop, the second aborts at once."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any


class SignalState:
    """Counts SIGINT/SIGTERM received while installed; the conductor polls `count`."""

    def __init__(self, on_first: Callable[[], None] | None = None) -> None:
        self.count = 0
        self._on_first = on_first
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        name = signal.Signals(signum).name
        if self.count == 1:
            print(
                f"\n{name}: stopping: no new jobs; waiting for calls in flight (again to abort at once)",
                file=sys.stderr,
                flush=True,
            )
            if self._on_first is not None:
                self._on_first()
        elif self.count == 2:
            print(
                f"\n{name}: aborting; calls in flight will run again on resume", file=sys.stderr, flush=True
            )

    def install(self) -> SignalState:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __enter__(self) -> SignalState:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()
