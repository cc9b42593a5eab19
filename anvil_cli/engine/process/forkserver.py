"""The fork server that worker processes start from, and the run's other helper processes:
how they are started and, when the command ends, stopped.

Workers fork from a clean process that has already imported and warmed the SDK (importing it
takes about a second), not from a conductor that has threads. `anvil run` starts the fork
server before anything else, so that second overlaps with the CLI's own start-up and with
loading the batch. The governor's Manager is spawned instead (`governor_context`): it makes no
calls, so it does not carry the SDK.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing import forkserver, resource_tracker, util
from multiprocessing.context import BaseContext
from typing import Any

from anvil_cli.engine.process.signals import stop_signals_blocked
from anvil_cli.jobs.toolspec import SECRET_ENV

PRELOAD = "anvil_cli.engine.process.warm"
# `config.endpoint.API_ENV`, named here: importing that module (settings, pydantic: ~0.2 s) would
# delay the fork server, which `anvil` starts before the CLI's own imports (a test holds them equal)
API_ENV = ("ANTHROPIC_BASE_URL", "ANTHROPIC_CUSTOM_HEADERS")


STOP_WAIT_S = 5.0  # for each helper to exit once told to, before it is killed

_lock = threading.Lock()
_stop_registered: list[int] = []  # the pid that registered `stop_helpers` at exit (not a child's)
_one_run: list[int] = []  # the pid of an `anvil run` process: it runs once, then exits


def worker_context() -> BaseContext:
    """The multiprocessing context for workers (idempotent)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([PRELOAD])
    ensure_forkserver()
    return ctx


def governor_context() -> BaseContext:
    """The context the governor's Manager starts from: spawned, a fresh interpreter that imports
    only the governor (~40 MB), not forked from the fork server, whose SDK it never uses (a
    fork carries the fork server's ~100 MB). Start its process with `start_clean`."""
    return multiprocessing.get_context("spawn")


def start_clean(start: Callable[[], None]) -> None:
    """Call `start` (which starts a child process of any context) as the fork server is started:
    without the secrets and the API's variables in the environment, SIGINT and SIGTERM blocked
    (the child unblocks them with its handler, `signals.leave_stop_to_conductor`)."""
    ensure_forkserver()  # and the resource tracker, started clean
    with _lock, _secrets_out(), stop_signals_blocked():
        start()


@contextlib.contextmanager
def _secrets_out() -> Iterator[None]:
    names = (*SECRET_ENV, *API_ENV)
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


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
        with _secrets_out():
            resource_tracker.ensure_running()
            with stop_signals_blocked():
                forkserver.ensure_running()
        if os.getpid() not in _stop_registered:
            _stop_registered.append(os.getpid())
            atexit.register(stop_helpers)


def for_one_run() -> None:
    """This process (`anvil run`) runs one run and exits: its fork server is stopped as soon as
    the run's workers are up (`workers_started`), since its copy of the SDK (~100 MB) would sit
    idle to the end. A worker replaced after a crash starts it again (`ensure_forkserver`).
    A process that may run again (a test, a library caller) keeps it for the next run."""
    if os.getpid() not in _one_run:
        _one_run.append(os.getpid())


def workers_started() -> None:
    """The run's workers are up: if this process runs once (`for_one_run`), stop the fork server
    and the resource tracker (Anvil creates no semaphore or shared memory for it to clean up;
    it is there because multiprocessing starts it with the fork server). Both are killed, not
    asked: every worker holds their pipes too, so they would wait for the workers; neither has
    a handler to lose, and their deaths harm no worker. Either starts again on demand."""
    if os.getpid() in _one_run:
        with _lock:
            _stop_forkserver(0.0)
            _stop_tracker(0.0)


def stop_helpers(wait_s: float = STOP_WAIT_S) -> None:
    """Stop the fork server and the resource tracker and wait for them (bounded: killed if they
    do not exit in `wait_s`), so nothing of the run outlives the command. Run at exit (normal
    end, error or Ctrl-C alike); by then the workers and the governor have been stopped and
    joined. Each of the two exits on its own once every holder of its "alive" pipe has closed
    it; closing ours is the request, reaping it the wait. Either is started again on demand."""
    if os.getpid() not in _stop_registered:  # a forked child: they are its parent's
        return
    with _lock:
        _stop_forkserver(wait_s)
        _stop_tracker(wait_s)


def _stop_tracker(wait_s: float) -> None:
    """Stop multiprocessing's resource tracker (hold `_lock`), killed after `wait_s`."""
    tracker: Any = getattr(resource_tracker, "_resource_tracker")  # noqa: B009
    with tracker._lock:
        pid, fd = tracker._pid, tracker._fd
        if pid is not None:
            tracker._pid = tracker._fd = None
            _stop_child(pid, fd, wait_s)


def _stop_forkserver(wait_s: float) -> None:
    """Stop the fork server (hold `_lock`), killed after `wait_s`. The workers it forked run on:
    they are watched by pid (`lifeline.PidHandle`), not through it."""
    server: Any = getattr(forkserver, "_forkserver")  # noqa: B009 (private: no stop API in 3.11)
    pid, fd = server._forkserver_pid, server._forkserver_alive_fd
    if pid is not None:
        server._forkserver_pid = server._forkserver_alive_fd = None
        address, server._forkserver_address = server._forkserver_address, None
        _stop_child(pid, fd, wait_s)
        if isinstance(address, str) and not util.is_abstract_socket_namespace(address):
            with contextlib.suppress(OSError):
                os.unlink(address)


def _stop_child(pid: int, alive_fd: int | None, wait_s: float) -> None:
    """Close our end of a child's "alive" pipe (it exits at EOF), then reap it, killing it
    after `wait_s`."""
    if alive_fd is not None:
        with contextlib.suppress(OSError):
            os.close(alive_fd)
    pidfd = None
    with contextlib.suppress(OSError, AttributeError):
        pidfd = os.pidfd_open(pid)
    try:
        deadline = time.monotonic() + wait_s
        while not _reaped(pid):
            left = deadline - time.monotonic()
            if left <= 0:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                return
            if pidfd is not None:
                select.select([pidfd], [], [], left)
            else:
                time.sleep(min(left, 0.01))
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _reaped(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:  # reaped already (or not ours)
        return True
