"""Checks made before a run writes anything or spends anything: where results go, where the
journal lives, Ray for `--backend ray`. Each failure is a `UsageError` (exit 2) naming what is
wrong. And the one adjustment made before: agents fitted to the open-file limit (or --agents)."""

from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path

from anvil_cli.config.settings import Settings
from anvil_cli.engine.journal.rows import JOURNAL_NAME
from anvil_cli.engine.process.fdlimit import agents_within_fd_limit, raise_nofile_limit
from anvil_cli.engine.result_cache import CACHE_NAME
from anvil_cli.errors import UsageError
from anvil_cli.securefile import refuse_links


def check_output_path(path: Path, flag: str = "-o") -> None:
    """`-o PATH` (or `flag` PATH) must be a file Anvil can create or replace: checked before any
    call is paid for."""
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory; name a file to write the results to")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: cannot write in {parent} (permission denied)")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{flag} {path}: the file exists and cannot be replaced (permission denied)")


def check_state_dir(state_dir: Path) -> None:
    """The state dir holds prompts and results: refuse one that others could write to or that
    belongs to someone else, and a path that is a dangling link or not a directory."""
    if state_dir.is_symlink() and not state_dir.exists():
        raise UsageError(f"state dir {state_dir}: a symbolic link to nothing ({os.readlink(state_dir)})")
    if not state_dir.exists():
        return  # created 0700 when the first run is written
    if not state_dir.is_dir():
        raise UsageError(f"state dir {state_dir}: exists and is not a directory")
    info = state_dir.stat()
    if info.st_uid != os.geteuid():
        raise UsageError(
            f"state dir {state_dir}: belongs to another user (uid {info.st_uid}); use your own (--state-dir)"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UsageError(
            f"state dir {state_dir}: writable by other users (mode {stat.filemode(info.st_mode)}); "
            f"run `chmod go-w {state_dir}` or choose another (--state-dir)"
        )
    for name in (JOURNAL_NAME, CACHE_NAME):
        refuse_links(state_dir / name)


def require_ray() -> None:
    """`--backend ray` without the extra: a usage error before anything is written."""
    if importlib.util.find_spec("ray") is None:
        raise UsageError("--backend ray needs Ray on this machine: pip install 'anvil-cli[ray]'")


def fit_agents_to_fd_limit(settings: Settings) -> tuple[Settings, str | None]:
    """Every agent holds a socket: raise the open-file limit to the hard limit, and if even that
    cannot carry the agents asked for, cap them (and say so) rather than fail calls."""
    soft = raise_nofile_limit()
    asked = settings.scaling.agent_limit()
    fits = agents_within_fd_limit(asked, soft)
    if fits >= asked:
        return settings, None
    note = (
        f"the open-file limit ({soft:,}) carries at most {fits:,} agents per process: agents capped at"
        f" {fits:,} instead of {asked:,} (raise it with `ulimit -n` to run more)"
    )
    return agents_capped(settings, fits), note


def agents_capped(settings: Settings, agents: int) -> Settings:
    """At most `agents` agents (scaling.max_agents and max_concurrent_jobs); the floor
    (scaling.min_agents) follows them down if need be."""
    floor = min(agents, settings.scaling.min_agents)
    scaling = settings.scaling.model_copy(
        update={"max_agents": agents, "max_concurrent_jobs": agents, "min_agents": floor}
    )
    return settings.model_copy(update={"scaling": scaling})
