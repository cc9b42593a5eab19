"""Files that may hold prompts or results are created 0600."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from anvil_cli.errors import UsageError

SIDE_SUFFIXES = ("-wal", "-shm", "-journal")  # the files SQLite keeps beside a database


def refuse_links(path: Path) -> None:
    """A state file, or a file SQLite keeps beside it, that is a symbolic link is refused: Anvil
    never writes or chmods through a link planted in its state dir (a dangling one included)."""
    for candidate in (path, *(Path(f"{path}{suffix}") for suffix in SIDE_SUFFIXES)):
        if candidate.is_symlink():
            target = os.readlink(candidate)
            where = "to nothing" if not candidate.exists() else f"to {target}"
            raise UsageError(
                f"{candidate} is a symbolic link {where} ({target}); Anvil does not follow links in its "
                "state dir: remove it (or point --state-dir at the real directory)"
            )


def _chmod_private(path: Path) -> None:
    """chmod 0600 without following a link and without opening the file for I/O (an O_PATH
    descriptor: closing it releases no POSIX lock this process holds on the database)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    try:
        os.chmod(f"/proc/self/fd/{fd}", 0o600)
    finally:
        os.close(fd)


def private_sqlite(path: Path) -> None:
    """Make sure the SQLite database at `path` is private (0600) before SQLite opens it.

    A new file is created empty with mode 0600 (SQLite then gives its -wal and -shm files the
    same mode). An existing file is only chmod-ed, never opened: opening and closing any
    descriptor of a database releases every POSIX lock this process holds on it, which would
    let another process reset the WAL under a live connection and lose its commits.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    refuse_links(path)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        _chmod_private(path)
        return
    os.close(fd)
    for suffix in SIDE_SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            _chmod_private(Path(f"{path}{suffix}"))
