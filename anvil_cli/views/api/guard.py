"""Holding the API up under a flood of connections nobody authenticated.

Every open connection costs the conductor a file descriptor, and the conductor needs its
descriptors for the journal, its workers' pipes and the results file. So: at most `cap`
connections are open (past it the oldest idle one, which has no request being handled, is closed
to make room; with none idle the new one is closed at once); a connection that sends no complete
request within `KEEPALIVE_TIMEOUT_S` of connecting, or of its last answer, is closed (idle, or a
slow loris dribbling its headers); aiohttp's own error answers (a request it cannot parse, an
unhandled error) carry the same security headers as every other answer; and the errors a
flood provokes are counted (`/metrics`), never printed one traceback each: at most one summary
line a minute reaches stderr.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Final, cast

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from anvil_cli.engine.process.fdlimit import RESERVED_FDS
from anvil_cli.views.web import SECURITY_HEADERS

KEEPALIVE_TIMEOUT_S: Final = 15.0  # no complete request this long after connecting or answering: closed
MAX_CONNECTIONS: Final = 512  # open at once, at most (a dashboard holds one or two)
MIN_CONNECTIONS: Final = 16
SUMMARY_EVERY_S: Final = 60.0  # at most one line on stderr this often


def connection_cap(nofile_soft: int) -> int:
    """Connections the API may hold open in a process allowed `nofile_soft` descriptors: half of
    what the conductor does not need for itself, at most MAX_CONNECTIONS."""
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, (nofile_soft - RESERVED_FDS) // 2))


def secure(response: web.StreamResponse) -> web.StreamResponse:
    """The security headers every answer carries; data is never cached."""
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


class ErrorTally:
    """Errors met serving connections (unparseable requests, dropped or refused connections):
    counted; reported on stderr by `write` at most once every `every_s`, as one line."""

    def __init__(
        self,
        write: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        every_s: float = SUMMARY_EVERY_S,
    ) -> None:
        self.total = 0
        self._write = write
        self._clock = clock
        self._every_s = every_s
        self._unreported: dict[str, int] = {}
        self._reported_at: float | None = None
        self._lock = threading.Lock()

    def record(self, kind: str) -> None:
        """One error of `kind` (a type name: never a message, which may quote the request)."""
        with self._lock:
            self.total += 1
            self._unreported[kind] = self._unreported.get(kind, 0) + 1
            now = self._clock()
            if self._reported_at is None or now - self._reported_at >= self._every_s:
                self._report(now)

    def flush(self) -> None:
        """Report what has not been reported yet (when the server stops)."""
        with self._lock:
            if self._unreported:
                self._report(self._clock())

    def _report(self, now: float) -> None:
        n = sum(self._unreported.values())
        kinds = ", ".join(f"{k} x{v}" for k, v in sorted(self._unreported.items(), key=lambda kv: -kv[1]))
        self._write(
            f"API: {n} connection error(s) ({kinds}); not printed one by one:"
            " anvil_api_connection_errors_total in /metrics counts them"
        )
        self._unreported.clear()
        self._reported_at = now


TALLY: Final = web.AppKey("anvil_connection_errors", ErrorTally)  # the app's tally, for /metrics


class _TallyLog(logging.Handler):
    """aiohttp's server logger, counted instead of printed."""

    def __init__(self, tally: ErrorTally) -> None:
        super().__init__(logging.WARNING)
        self.tally = tally

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        self.tally.record(type(exc).__name__ if exc is not None else "error")


def tally_logger(tally: ErrorTally) -> logging.Logger:
    """A logger of its own (outside logging's tree: nothing propagates to the root's stderr)."""
    logger = logging.Logger("anvil_cli.views.api.connections", logging.WARNING)
    logger.addHandler(_TallyLog(tally))
    return logger


def loop_errors(tally: ErrorTally) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """The API loop's exception handler: e.g. asyncio's "socket.accept() out of system resource",
    which it would otherwise print with a traceback on every try."""

    def handle(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        tally.record(type(exc).__name__ if exc is not None else "loop error")

    return handle


class ConnectionGate:
    """At most `cap` connections open; a new one past it closes the oldest idle one (no request
    being handled), or is itself closed at once when every one is busy. Loop thread only."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.evicted = 0
        self.refused = 0
        self._open: dict[RequestHandler, None] = {}  # oldest first
        self._busy: dict[RequestHandler, int] = {}

    def admit(self, handler: RequestHandler) -> bool:
        """Make room for `handler`; False if there is none (the caller closes it)."""
        while len(self._open) >= self.cap:
            idle = next((h for h in self._open if h not in self._busy), None)
            if idle is None:
                self.refused += 1
                return False
            del self._open[idle]
            self.evicted += 1
            idle.force_close()
        self._open[handler] = None
        return True

    def lost(self, handler: RequestHandler) -> None:
        self._open.pop(handler, None)
        self._busy.pop(handler, None)

    def middleware(self) -> Middleware:
        """Marks a connection busy while one of its requests is handled (not to be evicted)."""

        @web.middleware
        async def busy(request: web.Request, handler: Handler) -> web.StreamResponse:
            proto = request.protocol
            if not isinstance(proto, RequestHandler):
                return await handler(request)
            self._busy[proto] = self._busy.get(proto, 0) + 1
            try:
                return await handler(request)
            finally:
                left = self._busy.get(proto, 1) - 1
                if left > 0:
                    self._busy[proto] = left
                else:
                    self._busy.pop(proto, None)

        return busy


class GuardedHandler(RequestHandler):
    """aiohttp's connection protocol, admitted by the gate; its own error answers (a request it
    cannot parse, an unhandled error) are `{"error": reason}` with the security headers."""

    __slots__ = ("_gate",)

    def __init__(self, manager: web.Server, gate: ConnectionGate, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._gate.admit(self):
            cast(asyncio.Transport, transport).abort()  # no room: closed at once, holding nothing
            return
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._gate.lost(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport is None:  # refused in connection_made
            return
        super().data_received(data)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs (counted) or raises if answered
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        body = {"error": f"{status} {reason}: the request could not be handled"}
        response = web.json_response(body, status=status)
        response.force_close()
        return secure(response)
