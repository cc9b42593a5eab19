"""Limits a sandboxed tool call cannot set on itself: its job directory's size, its processes.

**Bytes per job directory.** A job's directory must outlive each call (a later call reads what
an earlier one wrote), so it is a directory on the host's disk, bind-mounted into the sandbox,
and no kernel quota applies to it without privileges. What holds instead: the directory is
measured while each call runs (every `QUOTA_POLL_S`, in a thread) and once more when it ends;
past the quota the call's whole sandbox is killed, the call fails, and the directory is
emptied. Every entry counts its allocated blocks plus `ENTRY_BYTES`, so many empty files count
too; a tree that cannot be measured (a path too long, a directory it made unreadable) counts as
over. Between two measurements a call can write at most what the disk takes in `QUOTA_POLL_S`,
each file bounded by the file-size limit. Its private /tmp is a tmpfs of the same size, which
the kernel bounds exactly.

**Processes.** RLIMIT_NPROC, set by the shim inside the sandbox's new user namespace, counts
that namespace's processes only (Linux >= 5.14 counts per user namespace) and is enforced for
any user but root: the kernel exempts processes whose real uid is the host's root. When Anvil
runs as root, each call joins a pids cgroup of its own (`pids.max`) where one is writable
(cgroup v1 `pids`, or v2 with the pids controller); where none is, `PidsCgroups.available` is
False and the limit is RLIMIT_NPROC's alone, which root ignores.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from anvil_cli.engine.process.lifeline import pid_alive

ENTRY_BYTES = 512  # what each file, directory or link counts on top of its blocks
QUOTA_POLL_S = 0.5
CGROUP_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))


def usage_over(root: Path, quota_bytes: int) -> bool:
    """Whether the tree under `root` holds more than `quota_bytes`; stops counting once it does.
    Symlinks are counted, never followed."""
    total = 0
    pending = [root]
    while pending:
        top = pending.pop()
        try:
            with os.scandir(top) as entries:
                for entry in entries:
                    try:
                        st = entry.stat(follow_symlinks=False)
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # removed while we looked
                    total += st.st_blocks * 512 + ENTRY_BYTES
                    if total > quota_bytes:
                        return True
                    if is_dir:
                        pending.append(Path(entry.path))
        except FileNotFoundError:
            continue
        except OSError:
            return True  # what cannot be measured cannot be allowed
    return False


def empty_dir(path: Path) -> None:
    """Remove everything in `path` (a job directory over its quota), keeping `path` itself."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


async def watch_quota(path: Path, quota_bytes: int, kill: Callable[[], object]) -> None:
    """`kill()` as soon as `path` holds more than `quota_bytes` (never, if it stays under)."""
    while not await asyncio.to_thread(usage_over, path, quota_bytes):
        await asyncio.sleep(QUOTA_POLL_S)
    kill()


async def emptied(path: Path, quota_bytes: int) -> bytes:
    """Empty a job directory found over its quota (its call killed); what the call's error says."""
    await asyncio.to_thread(empty_dir, path)
    return (
        f"\n[the job's working directory passed its quota of {quota_bytes} bytes"
        " (run.tool_workdir_quota_mb): the call was killed and the directory emptied]"
    ).encode()


CGROUP_PREFIX = "anvil-tool-"


class PidsCgroups:
    """Per-call pids cgroups (`anvil-tool-PID-RANDOM`, PID this process's); for a root Anvil only."""

    def __init__(self, roots: tuple[Path, ...] = CGROUP_ROOTS) -> None:
        self.parent: Path | None = None
        if os.geteuid() == 0:
            self.parent = next((r for r in roots if _pids_capable(r)), None)

    @property
    def available(self) -> bool:
        return self.parent is not None

    def make(self, max_processes: int) -> Path | None:
        """A fresh cgroup allowing `max_processes` (None without cgroups). Raises OSError where
        one cannot be made: the call is not started without its limit."""
        if self.parent is None:
            return None
        path = self.parent / f"{CGROUP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
        try:
            path.mkdir(mode=0o755)
            (path / "pids.max").write_text(str(max_processes))
        except OSError as exc:
            remove_cgroup(path)
            raise OSError(f"no pids cgroup for the call's process limit: {exc}") from exc
        return path

    def sweep(self) -> int:
        """Remove the cgroups left by processes that are gone (a worker killed mid-call); never
        one of a live process, whose call may be about to join it. Returns how many."""
        removed = 0
        for path in self.parent.glob(CGROUP_PREFIX + "*") if self.parent is not None else ():
            pid = path.name[len(CGROUP_PREFIX) :].split("-")[0]
            if pid.isdigit() and not pid_alive(int(pid)) and remove_cgroup(path):
                removed += 1
        return removed


def _pids_capable(root: Path) -> bool:
    if not os.access(root, os.W_OK):
        return False
    if (root / "cgroup.controllers").exists():  # v2: pids must be enabled for children
        try:
            return "pids" in (root / "cgroup.subtree_control").read_text().split()
        except OSError:
            return False
    return (root / "tasks").exists()  # v1: a pids hierarchy (its root has no pids.max)


def join_prefix(cgroup: Path | None) -> list[str]:
    """A prefix for a command line that moves the process into `cgroup` before it execs the
    rest (so everything it starts is counted there)."""
    if cgroup is None:
        return []
    return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(cgroup / "cgroup.procs")]


def remove_cgroup(path: Path | None) -> bool:
    """Remove a call's cgroup; False while a process is still in it."""
    if path is None:
        return True
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


async def release_cgroup(path: Path | None, tries: int = 100) -> None:
    """Remove a call's cgroup once the killed sandbox's processes are gone (the kernel reaps a
    dead pid namespace asynchronously); one still busy after that is left (empty cgroups cost
    nothing)."""
    for _ in range(tries):
        if remove_cgroup(path):
            return
        await asyncio.sleep(0.02)
