"""Serving the API from a daemon thread with its own event loop, beside the conductor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from aiohttp import web

from anvil_cli.engine.process.fdlimit import raise_nofile_limit
from anvil_cli.errors import UsageError
from anvil_cli.views.api.address import require_loopback
from anvil_cli.views.api.controller import Controller
from anvil_cli.views.api.guard import (
    KEEPALIVE_TIMEOUT_S,
    TALLY,
    ConnectionGate,
    ErrorTally,
    GuardedHandler,
    connection_cap,
    loop_errors,
    tally_logger,
)
from anvil_cli.views.api.handlers import build_app

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 2.5
HANDLER_GRACE_S = 0.5
CONTROLLER_THREADS = 4
BACKLOG = 128

log = logging.getLogger("anvil_cli.views.api")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def listen(host: str, port: int) -> socket.socket:
    """A bound TCP socket on (host, port); port 0 picks a free one. UsageError if impossible."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise UsageError(f"cannot serve the API on {host}:{port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot serve the API on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class ApiServer:
    """The HTTP API of one run: `server = ApiServer(ctl, host, port, token).start()`, `server.stop()`.

    A non-loopback `host` is refused unless `allow_remote` (the token is the user's own). It holds
    under a flood of connections (see `api.guard`): at most `max_connections` open (default: what
    the open-file limit leaves room for), ones without a complete request for `idle_timeout_s`
    closed, errors counted, not printed."""

    def __init__(
        self,
        controller: Controller,
        host: str,
        port: int,
        token: str,
        *,
        allow_remote: bool = False,
        max_connections: int | None = None,
        idle_timeout_s: float = KEEPALIVE_TIMEOUT_S,
    ) -> None:
        self.controller = controller
        self.host = host
        self.port = port
        self.allow_remote = allow_remote
        self._token = token
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.errors = ErrorTally(_say)
        self.gate = ConnectionGate(max_connections or connection_cap(_nofile_soft()))
        self.idle_timeout_s = idle_timeout_s

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}"

    def start(self, sock: socket.socket | None = None) -> ApiServer:
        """Listen (on `sock` when the caller bound it already) and serve from a daemon thread;
        returns once listening (raises UsageError if not)."""
        if not self.allow_remote:
            require_loopback(self.host)
        if not self._token:
            raise UsageError("the API needs a token")
        sock = sock if sock is not None else listen(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._executor = ThreadPoolExecutor(CONTROLLER_THREADS, thread_name_prefix="anvil-api-call")
        self._loop = asyncio.new_event_loop()
        self._stopping = asyncio.Event()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(sock, ready), name="anvil-api", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S) or self._error is not None:
            error = self._error
            self.stop()
            raise UsageError(f"the API server did not start on {self.url}: {error or 'timed out'}")
        return self

    def _run(self, sock: socket.socket, ready: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(loop_errors(self.errors))
        try:
            loop.run_until_complete(self._serve(sock, ready))
        except Exception as exc:
            # Broad on purpose: this is the top of the server's thread. What stops the loop before
            # it serves (OSError from create_server, an error of aiohttp's setup, a bug) must reach
            # start(), which waits on `ready` and raises it as a UsageError; an escaped one would
            # leave start() believing the server is up. One after start() returned has no caller
            # left to report it: it is logged with its traceback (which holds no token: the
            # token is never part of an error's message, and a traceback shows no locals).
            self._error = exc
            if ready.is_set():
                log.error("the API server stopped serving", exc_info=exc)
        finally:
            loop.close()
            sock.close()
            ready.set()

    async def _serve(self, sock: socket.socket, ready: threading.Event) -> None:
        assert self._executor is not None and self._stopping is not None
        app = build_app(self.controller, self._token, self._executor)
        app.middlewares.insert(0, self.gate.middleware())
        app[TALLY] = self.errors
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=HANDLER_GRACE_S)
        await runner.setup()
        server = runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        logger = tally_logger(self.errors)

        def connection() -> GuardedHandler:
            return GuardedHandler(
                server,
                self.gate,
                loop=loop,
                keepalive_timeout=self.idle_timeout_s,
                logger=logger,
                access_log=None,
            )

        listener = await loop.create_server(connection, sock=sock, backlog=BACKLOG)
        try:
            ready.set()
            await self._stopping.wait()
        finally:
            listener.close()
            await runner.cleanup()
            self.errors.flush()

    def stop(self) -> None:
        """Stop serving and free the port. Idempotent; returns within a few seconds."""
        with self._lock:
            thread, loop, stopping = self._thread, self._loop, self._stopping
            self._thread = None
            if thread is not None and loop is not None and stopping is not None:
                with contextlib.suppress(RuntimeError):  # the loop has already closed
                    loop.call_soon_threadsafe(stopping.set)
                thread.join(STOP_TIMEOUT_S)
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _nofile_soft() -> int:
    """The open-file limit, raised to the hard limit first (the conductor's own, idempotent)."""
    raise_nofile_limit()
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
