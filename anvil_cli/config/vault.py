"""Secrets held in memory, never in a process's environment.

`/proc/<pid>/environ` shows the environment a process was *started* with: deleting a variable
from `os.environ` later does not erase it there, and every child started before the deletion
inherits it. So an `anvil` command started with the API key or the control token in its
environment hands them to a fresh exec of itself over a pipe (`hand_over`), and that process,
started without them, keeps them here (`secret`). No Anvil process (conductor, fork server,
workers, the governor's Manager, the embedded simulator, tools) then has a secret in its
environment or on its command line.

Every Anvil process also marks itself not dumpable (`PR_SET_DUMPABLE` 0): its `/proc/<pid>/`
files (`environ`, `mem`, `cmdline`'s neighbours) become root's, and same-user processes can
neither read them nor attach a debugger. A root user can still read them: for that, tools run
in a sandbox that does not see Anvil's processes (`engine.sandbox`).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from collections.abc import Mapping

from anvil_cli.jobs.toolspec import SECRET_ENV

FD_VAR = "ANVIL_SECRETS_FD"  # the inherited pipe the secrets arrive on (a number, not a secret)
_PIPE_SAFE_BYTES = 60_000  # written before exec: must fit the pipe's buffer (64 KiB on Linux)
_PR_SET_DUMPABLE = 4

_held: dict[str, str] = {}


def hand_over(environ: Mapping[str, str] | None = None) -> None:
    """Called first by the `anvil` command. If this process was started with secrets in its
    environment, exec the same command again without them, the secrets on a pipe; if it is that
    second process, take them from the pipe. Returns only when the environment holds none."""
    env = os.environ if environ is None else environ
    if FD_VAR in env:
        _receive(env[FD_VAR])
        return
    found = {name: env[name] for name in SECRET_ENV if name in env}
    if not found or not sys.platform.startswith("linux"):
        return
    payload = json.dumps(found).encode()
    if len(payload) > _PIPE_SAFE_BYTES:  # nothing real is this large; keep them rather than hang
        return
    read_end, write_end = os.pipe()
    os.write(write_end, payload)
    os.close(write_end)
    os.set_inheritable(read_end, True)
    child_env = {k: v for k, v in env.items() if k not in SECRET_ENV}
    child_env[FD_VAR] = str(read_end)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, child_env)


def _receive(fd_text: str) -> None:
    os.environ.pop(FD_VAR, None)  # children need not know; the number itself is harmless
    try:
        fd = int(fd_text)
    except ValueError:
        return
    chunks: list[bytes] = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        os.close(fd)
    except OSError:  # not our pipe (a stale variable): no secrets came
        return
    try:
        received = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        return
    if isinstance(received, dict):
        _held.update({k: v for k, v in received.items() if k in SECRET_ENV and isinstance(v, str)})
    for name in SECRET_ENV:  # a variable set again after the hand-over must not be passed on
        os.environ.pop(name, None)


def secret(name: str) -> str | None:
    """A secret handed over at start, else the variable of this process's environment (a
    process not started by the `anvil` command: tests, embedding programs)."""
    return _held.get(name) or os.environ.get(name)


def environ_with_secrets() -> dict[str, str]:
    """This process's environment as the user set it: its variables plus the secrets held."""
    merged = dict(os.environ)
    merged.update(_held)
    return merged


def set_not_dumpable() -> None:
    """Close this process's /proc files and ptrace to other processes of the same user (Linux;
    elsewhere nothing). Inherited by forked children; an exec'd program (a tool) starts afresh."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: nothing to close
        pass
