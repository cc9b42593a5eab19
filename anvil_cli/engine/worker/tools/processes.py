"""A tool call's process: started in its own session (so its own process group) through the
rlimit shim, fed its input, its output drained, and its whole group killed when the call ends.

The group is killed on timeout, on cancellation, at worker stop (`ToolProcesses.kill_all`), and
also when the command exits, so a call leaves nothing behind (a `sleep 300 &` it started dies
with it). Reading ends when the command has exited and its pipes are closed; a process that
escaped the group with setsid and kept the pipes open is cut off by the caller's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from anvil_cli.engine.worker.tools import quota as sandbox_limits
from anvil_cli.engine.worker.tools.limits import QUOTA_SIGNAL, ToolLimits, hard_limit, rlimit_plan, shim_argv
from anvil_cli.engine.worker.tools.outcome import Capture, Finished
from anvil_cli.engine.worker.tools.sandbox import sandboxed_command

CHUNK_BYTES = 64 * 1024
BWRAP_SIGNALLED = 128  # a sandboxed command killed by signal N: bwrap exits 128 + N


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
        return sum(kill_group(pgid) for pgid in tuple(self._groups))


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
class Call:
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
                kill = functools.partial(kill_group, self.pgid)
                guard = tasks.create_task(sandbox_limits.watch_quota(self.workdir, quota, kill))
            await pipes.exited.wait()
            kill_group(self.pgid)  # what it left running, which may hold the pipes open
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


async def spawn(argv: Sequence[str], limits: ToolLimits, cwd: Path | None, env: Mapping[str, str]) -> Call:
    """Start `argv` under `limits` (and in its sandbox, if any), in a new session."""
    if not argv:
        raise ValueError("empty command")
    loop = asyncio.get_running_loop()
    status_r, status_w = os.pipe()
    command, cgroup = shim_argv(argv, rlimit_plan(limits, hard_limit), status_w, env), None
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
    return Call(transport, protocol, status_r, cwd, cgroup)


async def _abandon(starting: asyncio.Future[tuple[asyncio.SubprocessTransport, _Protocol]]) -> None:
    """A command whose call was cancelled while it started: wait for the start (through any
    further cancellation), then kill its group and drop its pipes."""
    while not starting.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(starting)
    if starting.cancelled() or starting.exception() is not None:
        return
    transport, _ = starting.result()
    kill_group(transport.get_pid())
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
    """SIGKILL a process group; False if it is already gone. Also the conductor's way to clean
    up after a lost worker. Called after its leader was reaped too: the id cannot name another
    group while a member of this one lives, and once none does it could only be reused after
    the pid counter wrapped around."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True
