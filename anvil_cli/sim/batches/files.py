"""The simulator's Message Batches on disk, so a restarted simulator still knows them.

`anvil run --simulate` starts a fresh simulator each time; a run resumed after Ctrl-C or
kill -9 polls the batches it submitted before, so they live in `<state_dir>/sim-batches/`:
one JSON file per batch (directory 0700, files 0600: they hold prompts and answers), written
when the batch is created, canceled or settled, read back when the simulator starts. The
compressed clock is wall-clock based, so a reloaded batch carries on (or has ended) as if the
simulator had never stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Final

KEPT_S: Final = 29 * 24 * 3600.0  # the real API keeps a batch's results 29 days
SUFFIX: Final = ".json"


def save(directory: Path, batch_id: str, data: dict[str, Any]) -> None:
    """Write one batch's `data` atomically (a private temp file, then a rename)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{batch_id}{SUFFIX}"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, separators=(",", ":"))
    os.replace(tmp, path)


def load(directory: Path, now_s: float) -> list[dict[str, Any]]:
    """The batches saved in `directory` (their `data`), oldest first; those created more than
    `KEPT_S` before `now_s` are deleted instead."""
    if not directory.is_dir():
        return []
    found: list[dict[str, Any]] = []
    for path in directory.glob(f"*{SUFFIX}"):
        try:
            data = json.loads(path.read_text())
            created_s = float(data["created_s"])
        except (OSError, ValueError, TypeError, KeyError):
            continue  # not ours: a crash mid-write leaves only a .tmp file (see save)
        if created_s < now_s - KEPT_S:
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        found.append(data)
    return sorted(found, key=lambda d: float(d["created_s"]))
