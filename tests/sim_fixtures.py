"""Fixtures and helpers for the simulator's tests: servers started in a thread, always stopped.

Import the `fixture_*` functions into a test module to use the fixtures by their short names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import anthropic
import pytest

from anvil_cli.sim import SimConfig, SimServer

HAIKU = "claude-haiku-4-5"
SimFactory = Callable[..., SimServer]
ClientFor = Callable[[SimServer], anthropic.Anthropic]


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
