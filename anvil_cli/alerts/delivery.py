"""Delivery of alerts to the user's `alerts.command`: the I/O half of alerting (the rules, which
decide, are in `anvil_cli.alerts.rules` and start nothing).

The command runs in a background thread with the change as JSON on stdin, in its own process
group (a timeout kills all of it), without the API key or the control token in its environment.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
from typing import Final

from anvil_cli.alerts.rules import AlertChange
from anvil_cli.jobs.toolspec import scrubbed_env

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S: Final = 10.0


def deliver(command: str, change: AlertChange, *, timeout_s: float = COMMAND_TIMEOUT_S) -> threading.Thread:
    """Run the user's `alerts.command` with the change as JSON on stdin, in a background thread.

    Never blocks the caller and never raises: a failing, missing or slow command (killed after
    `timeout_s`) is logged. Returns the thread (tests join it)."""
    payload = json.dumps(change.to_event()).encode()
    thread = threading.Thread(
        target=_run_command, args=(command, payload, timeout_s), name="anvil-alert", daemon=True
    )
    thread.start()
    return thread


def _run_command(command: str, payload: bytes, timeout_s: float) -> None:
    try:
        proc = subprocess.Popen(  # the user's own command from their config, like a git hook
            command,
            shell=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: a timeout kills all of it
            env=scrubbed_env(),  # no API key or control token for the user's hook
        )
    except OSError as exc:
        log.warning("alert command %r could not run: %s", command, exc)
        return
    try:
        _, stderr = proc.communicate(payload, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        log.warning("alert command %r timed out after %gs", command, timeout_s)
        return
    if proc.returncode != 0:
        tail = stderr.decode(errors="replace").strip()[-300:]
        log.warning("alert command %r exited %d: %s", command, proc.returncode, tail)
