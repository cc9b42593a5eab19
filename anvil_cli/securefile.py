"""Files that may hold prompts or results are created 0600."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def private_sqlite(path: Path) -> None:
    """Make sure the SQLite database at `path` is private (0600) before SQLite opens it.

    A new file is created empty with mode 0600 (SQLite then gives its -wal and -shm files the
    same mode). An existing file is only chmod-ed, never opened: opening and closing any
    descriptor of a database releases every POSIX lock this process holds on it, which would
    let another process reset the WAL under a live connection and lose its commits.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
        return
    os.close(fd)
    for side in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(side, 0o600)
