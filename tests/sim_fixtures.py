"""Fixtures and helpers for the simulator's tests: servers started in a thread, always stopped.

Import the `fixture_*` functions into a test module to use the fixtures by their short names.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import anthropic
import pytest

import anvil_cli.sim.app as sim_app
import anvil_cli.sim.server as sim_server
from anvil_cli.sim import SimConfig, SimServer

HAIKU = "claude-haiku-4-5"
SimFactory = Callable[..., SimServer]
ClientFor = Callable[[SimServer], anthropic.Anthropic]
_REAL_SLEEP = asyncio.sleep


@pytest.fixture(name="sim_factory")
def fixture_sim_factory() -> Iterator[SimFactory]:
    """`sim_factory(rpm=..., ...)` starts a simulator in a thread; all are stopped at teardown."""
    servers: list[SimServer] = []

    def start(**overrides: Any) -> SimServer:
        server = SimServer(replace(SimConfig(), **overrides)).start_thread()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(name="sim")
def fixture_sim(sim_factory: SimFactory) -> SimServer:
    """A simulator with default settings (no limits, no faults, no latency)."""
    return sim_factory()


@pytest.fixture(name="client_for")
def fixture_client_for() -> Iterator[ClientFor]:
    """`client_for(server)`: an SDK client without retries, closed at teardown."""
    clients: list[anthropic.Anthropic] = []

    def make(server: SimServer) -> anthropic.Anthropic:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="test-key", max_retries=0)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture(name="client")
def fixture_client(sim: SimServer, client_for: ClientFor) -> anthropic.Anthropic:
    return client_for(sim)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def create(client: anthropic.Anthropic, text: str = "hello", **kwargs: Any) -> Any:
    """A small non-streaming request."""
    params: dict[str, Any] = {"model": HAIKU, "max_tokens": 200, "messages": user(text)}
    params.update(kwargs)
    return client.messages.create(**params)


def raw_create(client: anthropic.Anthropic, text: str = "hello", **kwargs: Any) -> Any:
    """Like `create`, but returns the raw response (headers) via `with_raw_response`."""
    params: dict[str, Any] = {"model": HAIKU, "max_tokens": 200, "messages": user(text)}
    params.update(kwargs)
    return client.messages.with_raw_response.create(**params)


class SimSleeps:
    """Stands in for the simulator's `asyncio.sleep` (its latency, slow fault, streamed tokens):
    records every delay it is asked for and answers at once, no clock involved. After `hold(n)`,
    delayed answers instead wait until `n` of them are waiting, then all go (a barrier: `n`
    requests are in flight together however slowly the machine sends them)."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._hold = 0
        self._waiting = 0
        self._released: asyncio.Event | None = None  # made on the simulator's loop, on first use

    def hold(self, n: int) -> None:
        self._hold = n

    async def sleep(self, delay: float, result: Any = None) -> Any:
        self.delays.append(delay)
        if not self._hold:
            await _REAL_SLEEP(0)
            return result
        if self._released is None:
            self._released = asyncio.Event()
        self._waiting += 1
        if self._waiting >= self._hold:
            self._released.set()
        await self._released.wait()
        return result


class _AsyncioWithSleep:
    """The `asyncio` module as `anvil_cli.sim.app` sees it, with `sleep` replaced."""

    def __init__(self, sleep: Callable[..., Any]) -> None:
        self.sleep = sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


@pytest.fixture(name="sim_sleeps")
def fixture_sim_sleeps(monkeypatch: pytest.MonkeyPatch) -> SimSleeps:
    """Simulators started during the test sleep through a `SimSleeps` (see there)."""
    sleeps = SimSleeps()
    monkeypatch.setattr(sim_app, "asyncio", _AsyncioWithSleep(sleeps.sleep))
    return sleeps


class SimClock:
    """The simulator's time, moved only by the test: `sim_clock.advance(0.1)`."""

    def __init__(self, now: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(name="sim_clock")
def fixture_sim_clock(monkeypatch: pytest.MonkeyPatch) -> SimClock:
    """Simulators started in a thread during the test read this clock (for rate limits and for
    the Message Batches clock), so buckets refill and batches progress only when the test says,
    not while a loaded machine is slow."""
    clock = SimClock()
    real_app = sim_app.SimApp
    monkeypatch.setattr(sim_server, "SimApp", lambda core: real_app(core, clock=clock, wall=clock))
    return clock


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _lower(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def raw_post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """POST JSON without any SDK (to send what the SDK never would); (status, headers, body),
    the header names in lower case."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **headers})
    try:
        with _NO_PROXY.open(request, timeout=10) as response:
            return response.status, _lower(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, _lower(exc.headers.items()), exc.read()
