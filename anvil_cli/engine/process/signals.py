"""Ctrl-C and SIGTERM: the first asks for a clean stop, the second aborts at once.

They are the conductor's alone. Sent to the whole process group (Ctrl-C at a terminal;
`timeout`, systemd, `docker stop` and CI runners send SIGTERM to every process), they reach the
workers, the governor and the fork server too, which leave them to the conductor: it stops them
itself, in order, and they exit with it (`lifeline.die_with`).
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


def _leave_to_conductor(_signum: int, _frame: FrameType | None) -> None:
    """Nothing: the conductor got the same signal and will stop this process."""


def leave_stop_to_conductor() -> None:
    """In a child of the conductor (a worker, the governor): SIGINT and SIGTERM do nothing here.
    A handler, not SIG_IGN, so a command this process runs (a tool) gets the default back on
    exec; unblocked, since the fork server these children start from holds them blocked."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _leave_to_conductor)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """SIGINT and SIGTERM held back in this thread (not lost: another thread takes them, or this
    one once the block ends): a process started meanwhile begins with them blocked, before it
    has a handler (the fork server keeps them so, never having one)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


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
