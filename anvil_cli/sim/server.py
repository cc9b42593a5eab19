"""Running the simulator: in the foreground (CLI), in a thread, or in a child process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import socket
import threading
import urllib.request
from collections.abc import Callable
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from aiohttp import web

from anvil_cli.sim.app import SimApp
from anvil_cli.sim.config import SimConfig
from anvil_cli.sim.core import SimCore

__all__ = ["SimConfig", "SimServer", "serve_forever"]

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 4.0
PARENT_POLL_S = 0.5
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def new_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed, else the default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on (host, port); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Stop serving once the parent process has died (we were re-parented)."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(PARENT_POLL_S)
    stop.set()


async def _serve(
    config: SimConfig,
    sock: socket.socket,
    stop: asyncio.Event,
    on_ready: Callable[[str], None] | None,
    parent_pid: int | None = None,
) -> None:
    runner = web.AppRunner(
        SimApp(SimCore(config)).build(), access_log=None, handle_signals=False, shutdown_timeout=1.0
    )
    await runner.setup()
    watcher = asyncio.ensure_future(_watch_parent(parent_pid, stop)) if parent_pid is not None else None
    try:
        await web.SockSite(runner, sock, backlog=1024).start()
        if on_ready is not None:
            on_ready(url_of(sock, config.host))
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        await runner.cleanup()


def serve_forever(
    config: SimConfig, on_ready: Callable[[str], None] | None = None, parent_pid: int | None = None
) -> None:
    """Serve in the current thread until SIGINT or SIGTERM (or until process `parent_pid` dies);
    `on_ready(base_url)` once listening."""
    sock = bind(config.host, config.port)
    loop = new_loop()
    try:
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, ValueError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        loop.run_until_complete(_serve(config, sock, stop, on_ready, parent_pid))
    finally:
        loop.close()
        sock.close()


def _child_main(config: SimConfig, conn: Connection, parent_pid: int) -> None:
    """Entry point of `start_process` children (importable, so spawn-safe)."""
    from anvil_cli.config.vault import set_not_dumpable

    set_not_dumpable()  # the embedded simulator holds the run's simulated key and its requests
    try:
        serve_forever(config, on_ready=conn.send, parent_pid=parent_pid)
    except OSError as exc:
        conn.send(f"error: {exc}")
    finally:
        conn.close()


class SimServer:
    """A simulator for tests and benchmarks: `with SimServer(cfg).start_thread() as sim: ...`."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.base_url = ""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._process: Any = None  # multiprocessing.Process of the spawn context
        self._lock = threading.Lock()

    # -- starting ---------------------------------------------------------------------------------

    def start_thread(self) -> SimServer:
        """Serve from an event loop in a daemon thread; returns once listening."""
        sock = bind(self.config.host, self.config.port)
        self.base_url = url_of(sock, self.config.host)
        ready = threading.Event()
        self._loop = new_loop()
        self._thread = threading.Thread(
            target=self._run_thread, args=(sock, ready), name="anvil-sim", daemon=True
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            self.stop()
            raise RuntimeError("simulator thread did not start")
        return self

    def _run_thread(self, sock: socket.socket, ready: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            self._stop_event = asyncio.Event()
            loop.run_until_complete(_serve(self.config, sock, self._stop_event, lambda _url: ready.set()))
        finally:
            loop.close()
            sock.close()
            ready.set()

    def start_process(self) -> SimServer:
        """Serve from a spawned child process (exits when this process dies); returns once listening."""
        ctx = multiprocessing.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=_child_main, args=(self.config, sender, os.getpid()), name="anvil-sim", daemon=True
        )
        self._process.start()
        sender.close()
        try:
            message = receiver.recv() if receiver.poll(START_TIMEOUT_S) else "error: no answer from child"
        except EOFError:
            message = "error: child exited before listening"
        finally:
            receiver.close()
        if message.startswith("error"):
            self.stop()
            raise RuntimeError(f"simulator process did not start ({message})")
        self.base_url = message
        return self

    # -- using and stopping -----------------------------------------------------------------------

    def _call(self, method: str, path: str) -> Any:
        data = b"" if method == "POST" else None
        request = urllib.request.Request(self.base_url + path, method=method, data=data)
        with _NO_PROXY.open(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        """The counters served at `GET /_sim/stats`."""
        result: dict[str, Any] = self._call("GET", "/_sim/stats")
        return result

    def reset(self) -> None:
        """Clear stats, attempt counters, cached prefixes and bucket levels; timed endpoint
        outages count from now, switches thrown by hand are forgotten."""
        self._call("POST", "/_sim/reset")

    def endpoint_url(self, name: str) -> str:
        """The base URL of simulated endpoint `name` (Foundry's clients add `/anthropic`)."""
        return f"{self.base_url}/e/{name}"

    def endpoint_off(self, name: str) -> None:
        """Turn simulated endpoint `name` off: its connections are dropped until `endpoint_on`."""
        self._call("POST", f"/_sim/endpoints/{name}/off")

    def endpoint_on(self, name: str) -> None:
        """Turn simulated endpoint `name` back on."""
        self._call("POST", f"/_sim/endpoints/{name}/on")

    def stop(self) -> None:
        """Stop serving and free the port. Idempotent; returns within a few seconds."""
        with self._lock:
            self._stop_thread()
            self._stop_process()

    def _stop_thread(self) -> None:
        thread, loop, event = self._thread, self._loop, self._stop_event
        self._thread = None
        if thread is None or loop is None:
            return
        if event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(event.set)
        thread.join(STOP_TIMEOUT_S)

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.is_alive():
            process.terminate()  # SIGTERM: graceful
            process.join(STOP_TIMEOUT_S / 2)
        if process.is_alive():
            process.kill()
            process.join(STOP_TIMEOUT_S / 2)
        process.close()

    def __enter__(self) -> SimServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
