"""Run a command and measure its whole process tree: CPU exactly, memory by sampling.

CPU. The benchmark process makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so
a process of the tree whose parent exits first (a fork server's workers, a Manager) is
re-parented to the benchmark instead of to init. The benchmark reaps every such orphan with
`wait4`, and a process's rusage from `wait4` includes every descendant it reaped itself, so
the sum of the `wait4` rusages of the tree's roots is the user+sys time of every process the
tree ever had, short-lived ones included. Sampling /proc/<pid>/stat (the max per pid) gives a
lower bound kept as a cross-check.

Memory. /proc is scanned every `sample_s`: the tree is every process descended from a child
the benchmark started (children it had before, such as a simulator, are left out). Peak RSS is
the largest sum of VmRSS over the live tree (forked processes share pages, so this overstates
what the tree really holds); peak PSS (from smaps_rollup) splits shared pages between sharers.

Processes run in their own session; whatever is still alive when the measurement ends, times
out or is interrupted (Ctrl-C) is killed by pid and reaped.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

PR_SET_CHILD_SUBREAPER = 36
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def become_subreaper() -> None:
    """Orphans of our descendants are re-parented to this process (Linux >= 3.4). Idempotent."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


@contextlib.contextmanager
def raised_nofile() -> Iterator[None]:
    """Soft RLIMIT_NOFILE at the hard limit inside the block (for a simulator started in it,
    which keeps it); restored afterwards, so programs under test get the caller's own limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield None
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _ppids() -> dict[int, int]:
    """pid -> parent pid of every process, from /proc."""
    found: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                found[int(entry)] = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return found


def _stat(pid: int) -> tuple[int, int] | None:
    """(utime + stime in ticks, RSS in kB) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return int(fields[11]) + int(fields[12]), int(fields[21]) * PAGE_KB
    except (OSError, IndexError, ValueError):
        return None


def role(pid: int, parent_role: str | None) -> str:
    """What a process of an `anvil run` tree is, from its command line (and its parent's role):
    conductor, fork server, worker (forked by the fork server), Manager (spawned), resource
    tracker; anything else by its first argument."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return "?"
    line = b" ".join(argv).decode(errors="replace")
    if "forkserver import main" in line and parent_role != "conductor":
        return "worker"  # forked by the fork server (or orphaned by it: re-parented to us)
    for needle, name in (
        ("forkserver import main", "fork server"),
        ("resource_tracker import main", "resource tracker"),
        ("spawn import spawn_main", "spawned (Manager)"),
        ("anvil_cli", "conductor"),
    ):
        if needle in line:
            return name
    return Path(argv[0].decode(errors="replace")).name or "?"


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return 0


@dataclass
class TreeRun:
    """What one measured command did."""

    argv: list[str]
    started_at: float = 0.0  # epoch seconds, just before the spawn
    ended_at: float = 0.0  # epoch seconds, when the main process was reaped
    returncode: int | None = None
    timed_out: bool = False
    cpu_user_s: float = 0.0  # exact: the wait4 rusage of every process of the tree
    cpu_sys_s: float = 0.0
    cpu_sampled_s: float = 0.0  # lower bound: max per pid of /proc samples
    peak_rss_mb: float = 0.0  # largest sum of RSS over the live tree
    peak_pss_mb: float = 0.0  # largest sum of PSS over the live tree
    procs: int = 0  # processes seen in the tree
    orphans: int = 0  # of which re-parented to us (their parent died first)
    outlived_s: float = 0.0  # how long the last process outlived the main one
    killed: list[int] = field(default_factory=list)  # pids we had to kill at the end
    roles: dict[int, str] = field(default_factory=dict)  # pid -> what it is (`role`)
    cpu_by_pid: dict[int, float] = field(default_factory=dict)  # sampled CPU s (a lower bound)
    rss_by_pid: dict[int, float] = field(default_factory=dict)  # peak RSS MB
    stdout: str = ""
    stderr: str = ""

    def by_role(self) -> dict[str, tuple[int, float, float]]:
        """role -> (processes, sampled CPU s, largest peak RSS MB of one of them)."""
        out: dict[str, tuple[int, float, float]] = {}
        for pid, role in self.roles.items():
            n, cpu, rss = out.get(role, (0, 0.0, 0.0))
            out[role] = (n + 1, cpu + self.cpu_by_pid.get(pid, 0.0), max(rss, self.rss_by_pid.get(pid, 0.0)))
        return out

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s

    @property
    def wall_s(self) -> float:
        return self.ended_at - self.started_at


class TreeMeter:
    """`with TreeMeter(argv, env=..., cwd=..., timeout_s=...) as m: run = m.wait()`."""

    def __init__(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        timeout_s: float,
        sample_s: float = 0.2,
        linger_s: float = 20.0,
    ) -> None:
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.timeout_s = timeout_s
        self.sample_s = sample_s
        self.linger_s = linger_s  # how long processes may outlive the main one before we kill them
        self.run = TreeRun(argv=list(argv))
        self._proc: subprocess.Popen[bytes] | None = None
        self._me = os.getpid()
        self._before: set[int] = set()  # our children before the spawn: not part of the tree
        self._seen: set[int] = set()
        self._ticks: dict[int, int] = {}
        self._tree: set[int] = set()
        self._out = cwd / f".{os.getpid()}.{id(self)}.stdout"
        self._err = cwd / f".{os.getpid()}.{id(self)}.stderr"

    # -- running --------------------------------------------------------------------------------

    def __enter__(self) -> TreeMeter:
        become_subreaper()
        self._before = {pid for pid, ppid in _ppids().items() if ppid == self._me}
        with self._out.open("wb") as out, self._err.open("wb") as err:
            self.run.started_at = time.time()
            self._proc = subprocess.Popen(
                self.argv, env=self.env, cwd=self.cwd, stdout=out, stderr=err, start_new_session=True
            )
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def wait(self) -> TreeRun:
        """Sample until the main process and every process of its tree have exited."""
        run = self.run
        deadline = run.started_at + self.timeout_s
        while run.returncode is None:
            self._sample()
            self._reap()
            if run.returncode is None and time.time() > deadline:
                run.timed_out = True
                self._kill_all()
            elif run.returncode is None:
                time.sleep(self.sample_s)
        linger_deadline = time.time() + self.linger_s
        while self._sample():  # processes that outlive the main one (each still counts)
            self._reap()
            run.outlived_s = time.time() - run.ended_at
            if time.time() > linger_deadline:
                self._kill_all()
            time.sleep(min(self.sample_s, 0.05))
        self._reap()
        run.cpu_sampled_s = sum(self._ticks.values()) / CLK_TCK
        run.procs = len(self._seen)
        run.stdout = self._out.read_text(errors="replace")
        run.stderr = self._err.read_text(errors="replace")
        return run

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.run.returncode is None or self._sample():
            self._kill_all()
            for _ in range(100):
                alive = self._sample()
                self._reap()
                if not alive and self.run.returncode is not None:
                    break
                time.sleep(0.05)
        for path in (self._out, self._err):
            with contextlib.suppress(OSError):
                path.unlink()

    # -- internals ------------------------------------------------------------------------------

    def _sample(self) -> bool:
        """Scan /proc: the live tree, its CPU and memory. True while any process of it lives."""
        ppids = _ppids()
        children: dict[int, list[int]] = {}
        for pid, ppid in ppids.items():
            children.setdefault(ppid, []).append(pid)
        roots = [p for p in children.get(self._me, []) if p not in self._before]
        order: list[int] = []  # parents before their children
        stack = list(roots)
        while stack:
            pid = stack.pop()
            order.append(pid)
            stack.extend(children.get(pid, []))
        tree = set(order)
        rss = pss = 0
        for pid in order:
            got = _stat(pid)
            if got is None:
                continue
            ticks, rss_kb = got
            self._ticks[pid] = max(self._ticks.get(pid, 0), ticks)
            if pid not in self.run.roles:
                self.run.roles[pid] = role(pid, self.run.roles.get(ppids.get(pid, 0)))
            self.run.cpu_by_pid[pid] = self._ticks[pid] / CLK_TCK
            self.run.rss_by_pid[pid] = max(self.run.rss_by_pid.get(pid, 0.0), rss_kb / 1024)
            rss += rss_kb
            pss += _pss_kb(pid) if rss_kb else 0
        self.run.peak_rss_mb = max(self.run.peak_rss_mb, rss / 1024)
        self.run.peak_pss_mb = max(self.run.peak_pss_mb, pss / 1024)
        self._seen |= tree
        self._tree = tree
        return bool(tree)

    def _reap(self) -> None:
        """wait4 every exited child of ours in the tree (the main process and orphans)."""
        for pid in [p for p in self._tree if p not in self._before] + [self.pid]:
            try:
                got, status, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:  # not our child (yet), or already reaped
                continue
            if got == 0:
                continue
            self.run.cpu_user_s += usage.ru_utime
            self.run.cpu_sys_s += usage.ru_stime
            if pid == self.pid:
                assert self._proc is not None
                self.run.returncode = self._proc.returncode = os.waitstatus_to_exitcode(status)
                self.run.ended_at = time.time()
            else:
                self.run.orphans += 1

    def _kill_all(self) -> None:
        for pid in sorted(self._tree | ({self.pid} if self.run.returncode is None else set())):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                self.run.killed.append(pid)
