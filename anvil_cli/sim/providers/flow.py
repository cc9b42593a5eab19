"""One Messages call arriving in a cloud provider's wire format, answered by the simulator's core.

The provider routes (`bedrock.py`, `vertex.py`) say where the model id and the stream flag are
and how their answers look (a `Wire`); everything else (directives, limits, faults, stats, the
reply) is the same `SimCore.answer` the Anthropic route uses. The provider-only body fields
(`anthropic_version`, `anthropic_beta`) are dropped and the resolved model put in, so a request
has the same digest, attempt counter and rate-limit pool whichever route it came by.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiohttp import web

from anvil_cli.sim.answers.responses import stream_body, stream_head
from anvil_cli.sim.core import Outcome, SimCore
from anvil_cli.sim.http import json_response, read_json
from anvil_cli.sim.validation import check_message

PROVIDER_FIELDS = ("anthropic_version", "anthropic_beta")


class Host(Protocol):
    """What the provider routes use of the simulator's application (`SimApp`)."""

    core: SimCore
    clock: Callable[[], float]

    def drop(self, request: web.Request, model: str | None) -> web.StreamResponse: ...

    def is_off(self) -> bool: ...

    async def pause(self, seconds: float) -> None: ...

    @staticmethod
    async def write_events(
        response: web.StreamResponse, head: list[bytes], tail: list[bytes], token_delay_s: float
    ) -> None: ...

    async def count_tokens(self, request: web.Request) -> web.StreamResponse: ...


class Wire(ABC):
    """How one provider authenticates, names its errors and frames its answers."""

    @abstractmethod
    def authorized(self, request: web.Request) -> bool:
        """The request carries the credential this provider requires (any value is accepted)."""

    @abstractmethod
    def unauthenticated(self) -> web.Response:
        """The answer to a request without credentials."""

    @abstractmethod
    def unknown_model(self, request: web.Request, model_id: str) -> web.Response:
        """The answer to a model id the provider does not serve."""

    @abstractmethod
    def error(self, status: int, message: str | None) -> web.Response:
        """The provider's answer for what the simulator decided as the API's `status`."""

    @abstractmethod
    def check(self, body: Mapping[str, Any]) -> str | None:
        """A problem with the provider-specific shape of the body, or None."""

    @abstractmethod
    def headers(self, msg: Mapping[str, Any]) -> dict[str, str]:
        """Headers of a non-streamed answer `msg`."""

    @abstractmethod
    def stream_headers(self) -> dict[str, str]:
        """Headers of a streamed answer."""

    @abstractmethod
    def frame(self, events: list[bytes], msg: Mapping[str, Any]) -> list[bytes]:
        """Messages API SSE events as this provider sends them."""

    @abstractmethod
    def stream_failure(self) -> bytes:
        """What ends a stream that fails midway."""


def core_body(body: Mapping[str, Any], model: str, stream: bool) -> dict[str, Any]:
    """The Messages API body the core answers: provider fields dropped, model and stream set."""
    plain = {k: v for k, v in body.items() if k not in PROVIDER_FIELDS and k != "stream"}
    plain["model"] = model
    if stream:
        plain["stream"] = True
    return plain


async def answer(
    host: Host, wire: Wire, request: web.Request, model_id: str, model: str | None, stream: bool
) -> web.StreamResponse:
    """Answer one provider-format Messages call for `model_id` (`model`: the simulated model it names)."""
    stats = host.core.stats
    stats.begin()
    try:
        return await _answer(host, wire, request, model_id, model, stream)
    finally:
        stats.end()


def _failed(host: Host, response: web.Response, model: str | None) -> web.Response:
    host.core.stats.record(response.status, model)
    return response


async def _answer(
    host: Host, wire: Wire, request: web.Request, model_id: str, model: str | None, stream: bool
) -> web.StreamResponse:
    if host.core.config.require_auth and not wire.authorized(request):
        return _failed(host, wire.unauthenticated(), None)
    if model is None:
        return _failed(host, wire.unknown_model(request, model_id), None)
    parsed = await read_json(request)
    if isinstance(parsed, str):
        return _failed(host, wire.error(400, parsed), model)
    body, raw = parsed
    if not isinstance(body, Mapping):
        return _failed(host, wire.error(400, "Request body must be a JSON object"), model)
    plain = core_body(body, model, stream)
    problem = wire.check(body) or check_message(plain)
    if problem:
        return _failed(host, wire.error(400, problem), model)
    outcome = host.core.answer(plain, host.clock(), b"@sim{" in raw, b"cache_control" in raw)
    if outcome.kind == "drop":
        return host.drop(request, model)
    if outcome.kind == "error":
        return _failed(host, wire.error(outcome.status, outcome.message), model)
    if stream:
        return await _stream(host, wire, request, model, outcome)
    await host.pause(outcome.delay_s + outcome.token_delay_s)
    if host.is_off():  # its endpoint went off while this call was in flight: cut (already paid)
        return host.drop(request, model)
    host.core.stats.record(200, model, outcome.slowed)
    msg = outcome.body or {}
    return json_response(msg, headers=wire.headers(msg))


async def _stream(
    host: Host, wire: Wire, request: web.Request, model: str, outcome: Outcome
) -> web.StreamResponse:
    msg: Mapping[str, Any] = outcome.body or {}
    await host.pause(outcome.delay_s)
    if host.is_off():
        return host.drop(request, model)
    response = web.StreamResponse(status=200, headers=wire.stream_headers())
    await response.prepare(request)
    host.core.stats.record(200, model, outcome.slowed)
    head = wire.frame(stream_head(msg), msg)
    tail = stream_body(msg)
    if outcome.stream_error:
        host.core.stats.stream_error()
        tail = [*wire.frame(tail[: len(tail) // 2], msg), wire.stream_failure()]
    else:
        tail = wire.frame(tail, msg)
    try:
        await host.write_events(response, head, tail, outcome.token_delay_s)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away mid-stream; nothing left to do
    return response
