"""The bounds on one tool call (`ToolLimits`) and the shim that sets its resource limits.

Resource limits are set by a small Python shim that the command is started through:
`python -I -S -c SHIM ... argv` calls setrlimit and then execvp. The limits are in place before
the command's first instruction (`prlimit(pid)` after spawn races with it), and no Python runs
between fork and exec (`preexec_fn` is unsafe in a process with threads). The shim reports a
failed exec (missing command, no permission) on a close-on-exec status pipe, as subprocess
does, so "could not be started" is never confused with the command's own exit code 127.
"""

from __future__ import annotations

import resource
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from anvil_cli.engine.worker.tools.sandbox import Sandbox

CPU_GRACE_S = 1  # SIGXCPU at the soft limit, SIGKILL one CPU second later
# A call whose job directory passed its quota reports as killed by SIGXFSZ (file size exceeded).
QUOTA_SIGNAL = signal.SIGXFSZ

# `python -I -S -c _SHIM status_fd lc_ctype count which:soft:hard... argv...`: sets the rlimits,
# undoes what Python did at start-up (LC_CTYPE set in a C locale, SIGPIPE and SIGXFSZ ignored)
# and execs argv; a failed exec is written to status_fd, which a successful one closes.
_SHIM = """\
import os, resource, signal, sys
fd, ctype, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
argv = sys.argv[4 + count:]
try:
    os.set_inheritable(fd, False)
    if ctype == "-":
        os.environ.pop("LC_CTYPE", None)
    else:
        os.environ["LC_CTYPE"] = ctype[1:]
    for spec in sys.argv[4:4 + count]:
        which, soft, hard = map(int, spec.split(":"))
        resource.setrlimit(which, (soft, hard))
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    os.execvp(argv[0], argv)
except (OSError, ValueError) as exc:
    os.write(fd, f"{exc}: {argv[0]!r}".encode())
    os._exit(127)
"""


@dataclass(frozen=True)
class ToolLimits:
    """Bounds on one tool call; None leaves a resource as the worker has it."""

    max_output_bytes: int = 1024 * 1024
    max_stderr_bytes: int = 64 * 1024
    cpu_s: int | None = 300
    memory_bytes: int | None = 4 * 1024**3  # RLIMIT_AS: address space, reservations included
    file_size_bytes: int | None = 1024**3
    core_dump_bytes: int | None = 0  # a command killed by a limit leaves no core file behind
    max_processes: int | None = None  # RLIMIT_NPROC: set only inside a sandbox (engine/worker/tools/quota.py)
    workdir_quota_bytes: int | None = None  # what the job's directory may hold (engine/worker/tools/quota.py)
    sandbox: Sandbox | None = None  # run the command in a bubblewrap sandbox (engine/worker/tools/sandbox.py)

    def __post_init__(self) -> None:
        values = (
            self.max_output_bytes,
            self.max_stderr_bytes,
            self.cpu_s,
            self.memory_bytes,
            self.file_size_bytes,
            self.core_dump_bytes,
            self.max_processes,
            self.workdir_quota_bytes,
        )
        if any(v is not None and v < 0 for v in values):
            raise ValueError(f"tool limits must not be negative: {self}")


def rlimit_plan(limits: ToolLimits, current_hard: Callable[[int], int]) -> list[tuple[int, int, int]]:
    """(rlimit, soft, hard) to set in the child; never above the hard limit it inherits."""
    wanted = (
        (resource.RLIMIT_CPU, limits.cpu_s, CPU_GRACE_S),
        (resource.RLIMIT_AS, limits.memory_bytes, 0),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes, 0),
        (resource.RLIMIT_CORE, limits.core_dump_bytes, 0),
        # per real uid outside a user namespace (it would count all the user's processes)
        (resource.RLIMIT_NPROC, limits.max_processes if limits.sandbox is not None else None, 0),
    )
    plan = []
    for which, value, grace in wanted:
        if value is None:
            continue
        soft, hard = value, value + grace
        ceiling = current_hard(which)
        if ceiling != resource.RLIM_INFINITY:
            soft, hard = min(soft, ceiling), min(hard, ceiling)
        plan.append((which, soft, hard))
    return plan


def hard_limit(which: int) -> int:
    """The hard limit this process has (and a child inherits) for rlimit `which`."""
    return resource.getrlimit(which)[1]


def shim_argv(
    argv: Sequence[str], plan: Sequence[tuple[int, int, int]], status_fd: int, env: Mapping[str, str]
) -> list[str]:
    """The command line that applies `plan` and then execs `argv`. The shim is Python, which
    sets LC_CTYPE at start-up in a C locale; it is told the value the command must see."""
    ctype = "+" + env["LC_CTYPE"] if "LC_CTYPE" in env else "-"
    specs = [f"{which}:{soft}:{hard}" for which, soft, hard in plan]
    return [sys.executable, "-I", "-S", "-c", _SHIM, str(status_fd), ctype, str(len(specs)), *specs, *argv]
