"""Child processes never outlive the conductor: no orphan keeps calling the API."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process the instant its parent dies (Linux), and
    keep a watchdog thread as a fallback elsewhere."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="anvil-lifeline", daemon=True).start()


def _watch_parent(parent: int, interval_s: float = 0.5) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(interval_s)
