"""The fork server that worker processes start from.

Workers fork from a clean process that has already imported and warmed the SDK (importing it
takes about a second), not from a conductor that has threads. `anvil run` starts the fork
server before anything else, so that second overlaps with the CLI's own start-up and with
loading the batch.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing import forkserver
from multiprocessing.context import BaseContext

PRELOAD = "anvil_cli.engine.warm"


def worker_context() -> BaseContext:
    """The multiprocessing context for workers and the governor's Manager (idempotent)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([PRELOAD])
    forkserver.ensure_running()
    return ctx
