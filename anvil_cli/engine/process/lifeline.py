"""Child processes never outlive the conductor: no orphan keeps calling the API.

Workers and the governor's Manager are forked by the fork server, not by the conductor, so
"my parent died" is the wrong signal: each child watches the conductor's pid itself (a pidfd
where the kernel has them, else polling).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from pathlib import Path

POLL_S = 0.2
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
STARTTIME_FIELD = 22  # of /proc/PID/stat: when the process started, in clock ticks after boot


def pid_alive(pid: int | None) -> bool:
    """Is process `pid` alive (this process included)?"""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_start(pid: int) -> str | None:
    """Who process `pid` is, beyond its number: "<boot id>:<start time>". A pid reused by
    another process (after a reboot, or a state dir restored into a fresh container) has another;
    None where /proc does not say (not Linux, or the process is gone)."""
    try:
        boot = BOOT_ID.read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ": field 3 onwards
    index = STARTTIME_FIELD - 3
    return f"{boot}:{fields[index]}" if len(fields) > index else None


def owner_alive(pid: int | None, start: str | None) -> bool:
    """Is the process recorded as (`pid`, `start`) still running? A live pid that started at
    another time is another process that was given the same number; without a recorded `start`
    (a journal older than the record), a live pid is taken to be the owner."""
    if not pid_alive(pid):
        return False
    if start is None or pid is None:
        return True
    now = process_start(pid)
    return now is None or now == start


def die_with(pid: int) -> None:
    """Exit this process at once (os._exit) when process `pid` exits."""
    fd: int | None = None
    with contextlib.suppress(OSError, AttributeError):
        fd = os.pidfd_open(pid)
    if not pid_alive(pid):
        os._exit(1)
    target = _watch_pidfd if fd is not None else _watch_poll
    arg = fd if fd is not None else pid
    threading.Thread(target=target, args=(arg,), name="anvil-lifeline", daemon=True).start()


def _watch_pidfd(fd: int) -> None:
    select.select([fd], [], [])  # readable when the process exits
    os._exit(1)


def _watch_poll(pid: int) -> None:
    while pid_alive(pid):
        time.sleep(POLL_S)
    os._exit(1)


def wait_exited(handles: list[PidHandle], timeout_s: float) -> None:
    """Wait until every one of `handles` has exited, or `timeout_s` has passed."""
    deadline = time.monotonic() + timeout_s
    for handle in handles:
        while handle.alive():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if handle.fd is not None:
                select.select([handle.fd], [], [], left)
            else:
                time.sleep(min(left, POLL_S))


class PidHandle:
    """A process this one did not fork (the fork server did), watched by pid: whether it is
    alive does not depend on the fork server (whose death makes multiprocessing report every
    child it forked as dead, exit code 255, while they run on). A pidfd where the kernel has
    them: readable once the process exits, and signals go to that process even if its pid is
    reused."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.fd: int | None = None
        with contextlib.suppress(OSError, AttributeError):
            self.fd = os.pidfd_open(pid)

    def alive(self) -> bool:
        if self.fd is None:
            return pid_alive(self.pid)
        return not select.select([self.fd], [], [], 0)[0]

    def kill(self) -> None:
        """SIGKILL it, if it still runs."""
        with contextlib.suppress(ProcessLookupError, OSError):
            if self.fd is not None:
                signal.pidfd_send_signal(self.fd, signal.SIGKILL)
            elif pid_alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
