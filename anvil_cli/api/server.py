"""Serving the API from a daemon thread with its own event loop, beside the conductor."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from aiohttp import web

from anvil_cli.api.address import require_loopback
from anvil_cli.api.controller import Controller
from anvil_cli.api.handlers import build_app
from anvil_cli.errors import UsageError

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 2.5
HANDLER_GRACE_S = 0.5
CONTROLLER_THREADS = 4


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

    A non-loopback `host` is refused unless `allow_remote` (the token is the user's own)."""

    def __init__(
        self, controller: Controller, host: str, port: int, token: str, *, allow_remote: bool = False
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
        try:
            loop.run_until_complete(self._serve(sock, ready))
        except Exception as exc:  # reported by start(); nothing to serve
            self._error = exc
        finally:
            loop.close()
            sock.close()
            ready.set()

    async def _serve(self, sock: socket.socket, ready: threading.Event) -> None:
        assert self._executor is not None and self._stopping is not None
        app = build_app(self.controller, self._token, self._executor)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=HANDLER_GRACE_S)
        await runner.setup()
        try:
            await web.SockSite(runner, sock, backlog=128).start()
            ready.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()

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
