"""The governor's Manager process started early: spawned as `anvil run` begins, so its
interpreter's start-up (~0.3 s of CPU) overlaps loading the batch and opening the journal,
and taken by the run's governor when the workers start (`take`).

`BaseManager.start` spawns the process and then blocks until it listens; this does the two
halves apart (`begin`, then `ready`), as `BaseManager.start` does them (Python 3.11-3.13)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from multiprocessing import connection, managers, util
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.managers import BaseManager
from typing import Any

_early: dict[int, tuple[BaseManager, Connection, BaseContext]] = {}  # by the starting process's pid


def begin(manager: BaseManager, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> Connection:
    """Spawn `manager`'s server process; returns where it will say its address (`ready`)."""
    m: Any = manager
    reader, writer = connection.Pipe(duplex=False)
    m._process = m._ctx.Process(
        target=type(m)._run_server,
        args=(m._registry, m._address, m._authkey, m._serializer, writer, initializer, initargs),
    )
    m._process.name = type(m).__name__ + "-" + ":".join(str(i) for i in m._process._identity)
    m._process.start()
    writer.close()
    return reader


def ready(manager: BaseManager, reader: Connection) -> None:
    """Wait until the server listens (an EOFError if its process died first)."""
    m: Any = manager
    try:
        m._address = reader.recv()
    finally:
        reader.close()
    m._state.value = managers.State.STARTED  # type: ignore[attr-defined]
    m.shutdown = util.Finalize(
        m,
        type(m)._finalize_manager,
        args=(m._process, m._address, m._authkey, m._state, m._Client, m._shutdown_timeout),
        exitpriority=0,
    )


def keep(manager: BaseManager, reader: Connection, ctx: BaseContext) -> None:
    """Hold a begun Manager for this process's first `take` (a former one is dropped)."""
    drop()
    _early[os.getpid()] = (manager, reader, ctx)


def take(ctx: BaseContext) -> tuple[BaseManager, Connection] | None:
    """The Manager begun early by this process from `ctx`, if any (once)."""
    held = _early.pop(os.getpid(), None)
    if held is None:
        return None
    manager, reader, early_ctx = held
    if early_ctx is not ctx:
        reader.close()
        discard(manager)
        return None
    return manager, reader


def drop() -> None:
    """Stop a Manager begun early and never taken (a run with nothing to do, or refused)."""
    held = _early.pop(os.getpid(), None)
    if held is not None:
        held[1].close()
        discard(held[0])


def discard(manager: BaseManager) -> None:
    """Kill and reap a begun Manager's process."""
    process: Any = getattr(manager, "_process", None)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        process.kill()
        process.join(2)
