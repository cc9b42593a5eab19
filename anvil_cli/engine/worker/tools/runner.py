"""Run one tool call inside the worker's event loop, bounded in time, output and resources.

Each call is a subprocess in its own session (so its own process group) whose group is killed
whenever the call ends: on timeout, on cancellation, at worker stop (`ToolProcesses.kill_all`),
and also when the command exits, so a call leaves nothing behind (a `sleep 300 &` it started
dies with it). Reading ends when the command has exited and its pipes are closed; a process
that escaped the group with setsid and kept the pipes open is cut off by the timeout.

Output policy: stdout keeps its first `max_output_bytes`, stderr its last `max_stderr_bytes`
(the end of an error is what explains it); the rest is read and thrown away, so the command is
never blocked on a full pipe and finishes as it would have, and the result says how much was
cut. Memory stays at the bound plus a few 64 KiB buffers whatever the command writes; time
spent draining is bounded by the timeout.

Resource limits are set by a small Python shim that the command is started through:
`python -I -S -c SHIM ... argv` calls setrlimit and then execvp. The limits are in place before
the command's first instruction (`prlimit(pid)` after spawn races with it), and no Python runs
between fork and exec (`preexec_fn` is unsafe in a process with threads). The shim reports a
failed exec (missing command, no permission) on a close-on-exec status pipe, as subprocess
does, so "could not be started" is never confused with the command's own exit code 127.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import resource
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anvil_cli.engine.worker.tools import quota as sandbox_limits
from anvil_cli.engine.worker.tools.sandbox import Sandbox, sandboxed_command

CHUNK_BYTES = 64 * 1024
DETAIL_CHARS = 2000  # of stderr (or stdout) quoted in an error result
CPU_GRACE_S = 1  # SIGXCPU at the soft limit, SIGKILL one CPU second later
# A call whose job directory passed its quota reports as killed by SIGXFSZ (file size exceeded).
QUOTA_SIGNAL = signal.SIGXFSZ
BWRAP_SIGNALLED = 128  # a sandboxed command killed by signal N: bwrap exits 128 + N

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


class ToolProcesses:
    """The process groups of this worker's running tool calls, so a stop can kill them all.
    `on_change(pgid, running)` tells another party too (the conductor, which kills the groups of
    a worker that died)."""

    def __init__(self, on_change: Callable[[int, bool], None] | None = None) -> None:
        self._groups: set[int] = set()
        self._on_change = on_change

    def add(self, pgid: int) -> None:
        self._groups.add(pgid)
        if self._on_change is not None:
            self._on_change(pgid, True)

    def remove(self, pgid: int) -> None:
        if pgid in self._groups and self._on_change is not None:
            self._on_change(pgid, False)
        self._groups.discard(pgid)

    def pgids(self) -> frozenset[int]:
        """The groups registered now."""
        return frozenset(self._groups)

    def kill_all(self) -> int:
        """SIGKILL every group; synchronous and safe in a signal handler or at exit. Returns
        how many groups were signalled. The calls themselves see their command killed."""
        return sum(_kill_group(pgid) for pgid in tuple(self._groups))


def tool_result(tool_use_id: str, content: str, *, error: bool = False) -> dict[str, Any]:
    """A `tool_result` content block."""
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id, "content": content}
    if error:
        block["is_error"] = True
    return block


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


def shim_argv(
    argv: Sequence[str], plan: Sequence[tuple[int, int, int]], status_fd: int, env: Mapping[str, str]
) -> list[str]:
    """The command line that applies `plan` and then execs `argv`. The shim is Python, which
    sets LC_CTYPE at start-up in a C locale; it is told the value the command must see."""
    ctype = "+" + env["LC_CTYPE"] if "LC_CTYPE" in env else "-"
    specs = [f"{which}:{soft}:{hard}" for which, soft, hard in plan]
    return [sys.executable, "-I", "-S", "-c", _SHIM, str(status_fd), ctype, str(len(specs)), *specs, *argv]


class Capture:
    """A stream's bytes kept up to `limit` (its head, or its tail), and how many there were."""

    def __init__(self, limit: int, *, keep_tail: bool = False) -> None:
        self.limit, self.keep_tail = limit, keep_tail
        self.kept = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.keep_tail:
            self.kept += chunk
            del self.kept[: max(0, len(self.kept) - self.limit)]
        elif len(self.kept) < self.limit:
            self.kept += chunk[: self.limit - len(self.kept)]

    @property
    def cut(self) -> bool:
        return self.total > len(self.kept)

    def text(self) -> str:
        return self.kept.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Finished:
    """What a command that ran to its end left: exit code, output, a failed exec's reason."""

    returncode: int
    stdout: Capture
    stderr: Capture
    start_error: str | None = None


# Why a tool call failed (`ToolOutcome.error_kind`): it could not be started (not found, not
# executable), it exited non-zero, a signal (a limit, a kill) ended it, it ran out of time, or its
# output was longer than `max_output_bytes` (the model gets the head, but not all it asked for).
NOT_STARTED, EXIT, KILLED, TIMEOUT, OUTPUT_CUT = "not_started", "exit", "killed", "timeout", "output_cut"
TOOL_ERROR_KINDS = (NOT_STARTED, EXIT, KILLED, TIMEOUT, OUTPUT_CUT)


@dataclass(frozen=True)
class ToolOutcome:
    """One tool call's `tool_result` block (what the model gets), and why it failed, if it did."""

    block: dict[str, Any]
    error_kind: str | None = None  # one of TOOL_ERROR_KINDS
    error_message: str | None = None  # what went wrong, as the model was told it


def _failed(tool_use_id: str, kind: str, message: str) -> ToolOutcome:
    return ToolOutcome(tool_result(tool_use_id, message, error=True), kind, message)


def judge(tool_use_id: str, done: Finished) -> ToolOutcome:
    """The outcome of a command that ran to its end."""
    if done.start_error is not None:
        return _failed(tool_use_id, NOT_STARTED, f"the tool could not be started: {done.start_error}")
    if done.returncode != 0:
        detail = (done.stderr.text().strip() or done.stdout.text().strip())[-DETAIL_CHARS:]
        code = f"exit code {done.returncode}{_signal_name(done.returncode)}"
        return _failed(tool_use_id, KILLED if done.returncode < 0 else EXIT, f"{code}: {detail}")
    content = done.stdout.text()
    if done.stdout.cut:
        kept, total = len(done.stdout.kept), done.stdout.total
        cut = f"output cut: the tool wrote {total} bytes, the first {kept} are shown"
        return ToolOutcome(tool_result(tool_use_id, f"{content}\n[{cut}]"), OUTPUT_CUT, cut)
    return ToolOutcome(tool_result(tool_use_id, content))


async def run_tool_async(
    argv: Sequence[str],
    tool_input: Any,
    tool_use_id: str,
    *,
    timeout_s: float,
    limits: ToolLimits,
    cwd: Path | None,
    env: Mapping[str, str],
    processes: ToolProcesses,
) -> ToolOutcome:
    """Run one tool call: `tool_input` as JSON on stdin, stdout as the result. The command gets
    exactly `env` (pass it scrubbed: `toolspec.scrubbed_env`). A failure to start, a non-zero
    exit and a timeout are error results, and cut output a (non-error) result, each with its
    `error_kind`; cancellation kills the command's group, waits for it to exit and propagates."""
    data = json.dumps(tool_input).encode()
    try:
        call = await _spawn(argv, limits, cwd, env)
    except (OSError, ValueError) as exc:  # bad cwd, NUL in an argument, fork failure
        return _failed(tool_use_id, NOT_STARTED, f"the tool could not be started: {exc}")
    processes.add(call.pgid)
    try:
        async with asyncio.timeout(timeout_s):
            done = await call.communicate(data, limits)
    except TimeoutError:
        return _failed(tool_use_id, TIMEOUT, f"the tool timed out after {timeout_s:g} s")
    finally:
        _kill_group(call.pgid)
        processes.remove(call.pgid)
        await call.reap()
    return judge(tool_use_id, done)


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """create_subprocess_exec's protocol, plus `exited`: set when the command exits even if
    a process it started still holds its pipes (Process.wait() waits for those on 3.11)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=CHUNK_BYTES, loop=loop)
        self.exited = asyncio.Event()  # an Event: a cancelled waiter must not cancel the exit

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


@dataclass
class _Call:
    """One started command: its pipes and exit (the protocol), the shim's status pipe, the job
    directory it writes (measured against its quota) and its pids cgroup (root only)."""

    transport: asyncio.SubprocessTransport
    protocol: _Protocol
    status_fd: int
    workdir: Path | None = None
    cgroup: Path | None = None

    @property
    def pgid(self) -> int:
        return self.transport.get_pid()  # a session leader: its pid is its group's id

    async def communicate(self, data: bytes, limits: ToolLimits) -> Finished:
        pipes = self.protocol
        assert pipes.stdin is not None and pipes.stdout is not None and pipes.stderr is not None
        out = Capture(limits.max_output_bytes)
        err = Capture(limits.max_stderr_bytes, keep_tail=True)
        quota = limits.workdir_quota_bytes if self.workdir is not None else None
        over = False
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_feed(pipes.stdin, data))
            tasks.create_task(_drain(pipes.stdout, out))
            tasks.create_task(_drain(pipes.stderr, err))
            guard = None
            if quota is not None and self.workdir is not None:  # past it the group is killed
                kill = functools.partial(_kill_group, self.pgid)
                guard = tasks.create_task(sandbox_limits.watch_quota(self.workdir, quota, kill))
            await pipes.exited.wait()
            _kill_group(self.pgid)  # what it left running, which may hold the pipes open
            if guard is not None:
                over = guard.done() and not guard.cancelled()
                guard.cancel()
        returncode = self.transport.get_returncode()
        assert returncode is not None
        if limits.sandbox is not None and BWRAP_SIGNALLED < returncode <= BWRAP_SIGNALLED + 64:
            returncode = BWRAP_SIGNALLED - returncode  # bwrap reports a death by signal N as 128 + N
        if quota is not None and self.workdir is not None:
            over = over or await asyncio.to_thread(sandbox_limits.usage_over, self.workdir, quota)
            if over:
                await self.protocol.exited.wait()  # killed: nothing of it writes there any more
                err.add(await sandbox_limits.emptied(self.workdir, quota))
                returncode = -QUOTA_SIGNAL
        # Every write end is closed by now (ours after spawn, the child's at exec or exit).
        status = os.read(self.status_fd, 4096).decode("utf-8", errors="replace")
        return Finished(returncode, out, err, status or None)

    async def reap(self) -> None:
        """Wait for the (killed) command to exit, then release the pipes and its cgroup."""
        try:
            await self.protocol.exited.wait()
        finally:
            self.transport.close()
            os.close(self.status_fd)
        await sandbox_limits.release_cgroup(self.cgroup)


async def _spawn(argv: Sequence[str], limits: ToolLimits, cwd: Path | None, env: Mapping[str, str]) -> _Call:
    if not argv:
        raise ValueError("empty command")
    loop = asyncio.get_running_loop()
    status_r, status_w = os.pipe()
    command, cgroup = shim_argv(argv, rlimit_plan(limits, _hard_limit), status_w, env), None
    if limits.sandbox is not None:  # the shim runs inside: its RLIMIT_NPROC counts the sandbox's own
        command, cgroup = sandboxed_command(limits.sandbox, command, cwd or Path.cwd(), limits.max_processes)
    starting = asyncio.ensure_future(
        loop.subprocess_exec(
            lambda: _Protocol(loop),
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            pass_fds=(status_w,),
        )
    )
    try:
        # Cancelled halfway, asyncio would kill the command and wait until its pipes close, which
        # a process it started in the background may hold open for as long as it lives: let the
        # start finish instead (it is quick), kill the whole group, then propagate.
        transport, protocol = await asyncio.shield(starting)
    except asyncio.CancelledError:
        await _abandon(starting)
        os.close(status_r)
        sandbox_limits.remove_cgroup(cgroup)
        raise
    except BaseException:
        os.close(status_r)
        sandbox_limits.remove_cgroup(cgroup)
        raise
    finally:
        os.close(status_w)
    return _Call(transport, protocol, status_r, cwd, cgroup)


async def _abandon(starting: asyncio.Future[tuple[asyncio.SubprocessTransport, _Protocol]]) -> None:
    """A command whose call was cancelled while it started: wait for the start (through any
    further cancellation), then kill its group and drop its pipes."""
    while not starting.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(starting)
    if starting.cancelled() or starting.exception() is not None:
        return
    transport, _ = starting.result()
    _kill_group(transport.get_pid())
    transport.close()


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    if stdin.is_closing():  # the command exited already (its pipe was seen to close)
        return
    try:
        stdin.write(data)
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the command exited, or closed stdin, without reading all of its input
    except RuntimeError:  # uvloop's word for the same, when the pipe closed as we wrote
        if not stdin.is_closing():
            raise


async def _drain(stream: asyncio.StreamReader, capture: Capture) -> None:
    while chunk := await stream.read(CHUNK_BYTES):
        capture.add(chunk)


def kill_group(pgid: int) -> bool:
    """SIGKILL a tool's process group (the conductor's way to clean up after a lost worker)."""
    return _kill_group(pgid)


def _kill_group(pgid: int) -> bool:
    """SIGKILL a process group; False if it is already gone. Called after its leader was reaped
    too: the id cannot name another group while a member of this one lives, and once none does
    it could only be reused after the pid counter wrapped around."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _hard_limit(which: int) -> int:
    return resource.getrlimit(which)[1]


def _signal_name(returncode: int) -> str:
    try:
        return f" ({signal.Signals(-returncode).name})" if returncode < 0 else ""
    except ValueError:
        return ""
