"""Spend the journal could not record: calls in flight (or settled) when the journal stopped
taking writes (a full disk) were paid, or may have been, but no row says so. Their amount is
kept in a small file of the state dir, written in place of bytes set aside when the run began
(so a full disk still takes it), and the resumed run journals it as an `unjournaled_spend`
event that counts toward the whole run's spend: the budget holds across the failure.

The amount is what the governor had settled plus what calls in flight had reserved (their
worst case, since their outcome is unknown), less what the journal holds: never less than what
was really paid."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from anvil_cli.securefile import refuse_links

CARRY_NAME = "unjournaled-spend.json"
SLOT_BYTES = 4096  # set aside at the start of every run: the failure may come with a full disk
EVENT = "unjournaled_spend"


def set_aside(state_dir: Path) -> None:
    """Make sure the file exists with its bytes allocated (a run calls this while the disk and
    the journal still take writes). Best effort: a run goes on without it."""
    path = state_dir / CARRY_NAME
    with contextlib.suppress(OSError):
        refuse_links(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            if os.fstat(fd).st_size < SLOT_BYTES:
                os.pwrite(fd, b" " * SLOT_BYTES, 0)
                os.fsync(fd)
        finally:
            os.close(fd)


def record(state_dir: Path, run_id: str, usd: float) -> bool:
    """Keep `usd` unjournaled for `run_id`, in place; False if even that could not be written."""
    payload = json.dumps({"run_id": run_id, "usd": round(usd, 6)}).encode()
    if len(payload) > SLOT_BYTES:
        return False
    try:
        fd = os.open(state_dir / CARRY_NAME, os.O_WRONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        os.pwrite(fd, payload.ljust(SLOT_BYTES), 0)
        os.fsync(fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def pending(state_dir: Path, run_id: str) -> float:
    """What a failure left unjournaled for `run_id` (0 when nothing was, or for another run)."""
    try:
        refuse_links(state_dir / CARRY_NAME)
        text = (state_dir / CARRY_NAME).read_bytes().strip()
        data = json.loads(text) if text else {}
    except (OSError, ValueError):
        return 0.0
    if not isinstance(data, dict) or data.get("run_id") != run_id:
        return 0.0
    usd = data.get("usd")
    return float(usd) if isinstance(usd, int | float) and usd > 0 else 0.0


def clear(state_dir: Path) -> None:
    """The amount is journaled now: blank the slot (keeping its bytes for the next failure)."""
    with contextlib.suppress(OSError):
        fd = os.open(state_dir / CARRY_NAME, os.O_WRONLY | os.O_NOFOLLOW)
        try:
            os.pwrite(fd, b" " * SLOT_BYTES, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
