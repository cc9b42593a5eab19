"""The fork server that worker processes start from.

Workers fork from a clean process that has already imported and warmed the SDK (importing it
takes about a second), not from a conductor that has threads. `anvil run` starts the fork
server before anything else, so that second overlaps with the CLI's own start-up and with
loading the batch.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from multiprocessing import forkserver, resource_tracker
from multiprocessing.context import BaseContext

from anvil_cli.config.endpoint import API_ENV
from anvil_cli.engine.process.signals import stop_signals_blocked
from anvil_cli.jobs.toolspec import SECRET_ENV

PRELOAD = "anvil_cli.engine.process.warm"


_lock = threading.Lock()


def worker_context() -> BaseContext:
    """The multiprocessing context for workers and the governor's Manager (idempotent)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([PRELOAD])
    ensure_forkserver()
    return ctx


def ensure_forkserver() -> None:
    """Start the fork server, or start it again if it died (call before every start of a child:
    multiprocessing would restart a dead one itself, but with this process's environment).

    The fork server starts without the API key and control token in its environment, so no
    worker, Manager or tool can read them from /proc/<pid>/environ, nor the API's address and
    headers: workers get all of them over their pipe (`WorkerConfig.endpoint`). Its death harms
    no child: the backend and the governor's keeper watch their processes by pid, not through
    the fork server.

    It starts with SIGINT and SIGTERM blocked and keeps them so: a signal sent to the whole
    process group is the conductor's to act on (see `signals`), and the fork server has no
    handler of its own. (The resource tracker is started first: it unblocks them when it starts.)"""
    with _lock:
        names = (*SECRET_ENV, *API_ENV)
        saved = {name: os.environ.pop(name) for name in names if name in os.environ}
        try:
            resource_tracker.ensure_running()
            with stop_signals_blocked():
                forkserver.ensure_running()
        finally:
            os.environ.update(saved)
