"""The aiohttp application: Messages, count_tokens and the `/_sim` control endpoints.

With simulated endpoints (`SimConfig.endpoints`), each is a sub-application of its own under
`/e/{name}/` (its core: limits, cache, stats), serving the same routes (or only its provider's),
and dropping every connection while it is off (`sim/switches.py`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import web

from anvil_cli.policy.pricing.table import model_class
from anvil_cli.policy.tokens import estimate_input_tokens
from anvil_cli.sim import providers
from anvil_cli.sim.answers.directives import DirectiveError, request_directives
from anvil_cli.sim.answers.responses import stream_body, stream_error_event, stream_head
from anvil_cli.sim.batches import api as batch_api
from anvil_cli.sim.batches.store import BatchStore
from anvil_cli.sim.core import Outcome, SimCore
from anvil_cli.sim.http import error_response, json_response, model_of, new_request_id, read_json
from anvil_cli.sim.providers import foundry
from anvil_cli.sim.validation import check_count_tokens, check_message
from anvil_cli.sim.wire import ANTHROPIC, MessagesWire

SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}

klass_of = lru_cache(maxsize=1024)(model_class)


class SimApp:
    """Handlers bound to one simulator's state."""

    def __init__(
        self,
        core: SimCore,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        provider: str | None = None,
    ) -> None:
        self.core = core
        self.clock = clock
        self.wall = wall
        self.provider = provider  # the one wire format served (a simulated endpoint's), None: all
        self.prefix = f"/e/{core.name}" if core.name else ""
        cfg = core.config
        batch_dir = Path(cfg.batch_dir) if cfg.batch_dir else None
        self.batches = BatchStore.opened(cfg.batch_seconds_per_request, batch_dir, wall())
        self.limited = any(v is not None for v in (cfg.rpm, cfg.itpm, cfg.otpm))
        self.endpoints = [
            SimApp(endpoint, clock, wall, cfg.endpoints[name].provider)
            for name, endpoint in core.endpoints.items()
        ]
        if core.switches is not None and not core.name:
            core.switches.restart(clock())  # timed outages count from the simulator's start

    def serves(self, provider: str) -> bool:
        return self.provider is None or self.provider == provider

    def build(self) -> web.Application:
        middlewares = [self.outage] if self.core.name else []
        app = web.Application(client_max_size=256 * 1024 * 1024, middlewares=middlewares)
        if self.serves("anthropic"):
            app.router.add_post("/v1/messages", self.messages)
            app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
            batch_api.add_routes(app, self)
        if self.serves("foundry"):
            foundry.add_routes(app, self.messages_as, self.count_tokens_as)
        providers.add_routes(app, self, self.serves)  # Bedrock's and Vertex AI's wire formats
        app.router.add_get("/_sim/stats", self.stats)
        if not self.core.name:
            app.router.add_post("/_sim/reset", self.reset)
            app.router.add_post("/_sim/endpoints/{name}/{state:on|off}", self.switch)
            for endpoint in self.endpoints:
                app.add_subapp(endpoint.prefix, endpoint.build())
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        return app

    # -- a simulated endpoint that is off ---------------------------------------------------------

    def is_off(self) -> bool:
        """This simulated endpoint is off now (the unprefixed routes never are)."""
        return self.core.is_off(self.clock())

    @web.middleware
    async def outage(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """While this endpoint is off, every connection to it (but its stats) is dropped at once."""
        if self.is_off() and not request.path.startswith(self.prefix + "/_sim/"):
            self.core.stats.refuse()
            _abort(request)
        response: web.StreamResponse = await handler(request)
        return response

    # -- helpers ---------------------------------------------------------------------------------

    def limit_headers(self, model: str | None) -> dict[str, str]:
        if not self.limited or model is None:
            return {}
        return self.core.limiter.headers(klass_of(model), self.clock(), datetime.now(UTC))

    def fail(
        self,
        status: int,
        request_id: str,
        message: str | None = None,
        model: str | None = None,
        outcome: Outcome | None = None,
        wire: MessagesWire = ANTHROPIC,
    ) -> web.Response:
        """An error answer to a Messages call, counted in the stats."""
        self.core.stats.record(status, model)
        headers = {**wire.ids(request_id), **wire.rate_headers(self.limit_headers(model))}
        details = None
        if outcome is not None:
            details = outcome.details
            if outcome.retry_after_s is not None:
                headers.update(wire.retry_headers(outcome.retry_after_s))
        return error_response(status, request_id, message, headers, details)

    def allowed(self, request: web.Request, wire: MessagesWire = ANTHROPIC) -> bool:
        return not self.core.config.require_auth or wire.authorized(request)

    # -- Messages --------------------------------------------------------------------------------

    async def messages(self, request: web.Request) -> web.StreamResponse:
        return await self.messages_as(request, ANTHROPIC)

    async def messages_as(self, request: web.Request, wire: MessagesWire) -> web.StreamResponse:
        """A Messages call in the Anthropic API's format, answered as `wire` does."""
        stats = self.core.stats
        stats.begin()
        try:
            return await self._messages(request, wire)
        finally:
            stats.end()

    async def _messages(self, request: web.Request, wire: MessagesWire) -> web.StreamResponse:
        request_id = new_request_id()
        if not self.allowed(request, wire):
            self.core.stats.record(401)
            return wire.unauthenticated(request_id)
        parsed = await read_json(request)
        if isinstance(parsed, str):
            return self.fail(400, request_id, parsed, wire=wire)
        body, raw = parsed
        model = model_of(body)
        problem = check_message(body)
        if problem:
            return self.fail(400, request_id, problem, model, wire=wire)
        outcome = self.core.answer(body, self.clock(), b"@sim{" in raw, b"cache_control" in raw)
        if outcome.kind == "drop":
            return self.drop(request, model)
        if outcome.kind == "error":
            return self.fail(outcome.status, request_id, outcome.message, model, outcome, wire)
        if body.get("stream"):
            return await self.stream(request, request_id, model, outcome, wire)
        total_s = outcome.delay_s + outcome.token_delay_s
        if total_s > 0:
            await asyncio.sleep(total_s)
        if self.is_off():  # went off while this call was in flight: cut (already paid)
            return self.drop(request, model)
        self.core.stats.record(200, model, outcome.slowed)
        headers = {**wire.ids(request_id), **wire.rate_headers(self.limit_headers(model))}
        return json_response(outcome.body, headers=headers)

    def drop(self, request: web.Request, model: str | None) -> web.StreamResponse:
        """Close the connection without an answer."""
        self.core.stats.record("dropped", model)
        _abort(request)

    async def stream(
        self,
        request: web.Request,
        request_id: str,
        model: str | None,
        outcome: Outcome,
        wire: MessagesWire = ANTHROPIC,
    ) -> web.StreamResponse:
        msg: Mapping[str, Any] = outcome.body or {}
        await self.pause(outcome.delay_s)
        if self.is_off():  # went off while this call was in flight: cut (already paid)
            return self.drop(request, model)
        headers = {**wire.ids(request_id), **SSE_HEADERS, **wire.rate_headers(self.limit_headers(model))}
        response = web.StreamResponse(status=200, headers=headers)
        await response.prepare(request)
        self.core.stats.record(200, model, outcome.slowed)
        events = stream_head(msg)
        tail = stream_body(msg)
        if outcome.stream_error:
            self.core.stats.stream_error()
            tail = [*tail[: len(tail) // 2], stream_error_event()]
        try:
            await self.write_events(response, events, tail, outcome.token_delay_s)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away mid-stream; nothing left to do
        return response

    async def pause(self, seconds: float) -> None:
        """Wait `seconds` (a latency) before answering; nothing when 0."""
        if seconds > 0:
            await asyncio.sleep(seconds)

    @staticmethod
    async def write_events(
        response: web.StreamResponse, head: list[bytes], tail: list[bytes], token_delay_s: float
    ) -> None:
        if token_delay_s <= 0:
            await response.write(b"".join(head + tail))
            return
        await response.write(b"".join(head))
        pause_s = token_delay_s / max(1, len(tail))
        for event in tail:
            await asyncio.sleep(pause_s)
            await response.write(event)

    # -- count_tokens and control ----------------------------------------------------------------

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        return await self.count_tokens_as(request, ANTHROPIC)

    async def count_tokens_as(self, request: web.Request, wire: MessagesWire) -> web.StreamResponse:
        """`count_tokens` in the Anthropic API's format, authenticated as `wire` does."""
        request_id = new_request_id()
        if not self.allowed(request, wire):
            return wire.unauthenticated(request_id)
        parsed = await read_json(request)
        if isinstance(parsed, str):
            return error_response(400, request_id, parsed)
        body, raw = parsed
        problem = check_count_tokens(body)
        try:
            directives = request_directives(body, b"@sim{" in raw) if not problem else None
        except DirectiveError as exc:
            problem = str(exc)
        if problem or directives is None:
            return error_response(400, request_id, problem)
        tokens = directives.input_tokens
        count = tokens if tokens is not None else estimate_input_tokens(body)
        return json_response({"input_tokens": count}, headers={"request-id": request_id})

    async def stats(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.core.snapshot(self.clock()))

    async def reset(self, request: web.Request) -> web.StreamResponse:
        self.core.reset()
        if self.core.switches is not None:
            self.core.switches.restart(self.clock())
        return json_response({"reset": True})

    async def switch(self, request: web.Request) -> web.StreamResponse:
        """`POST /_sim/endpoints/{name}/off` (or `/on`): throw that endpoint's switch."""
        name, off = request.match_info["name"], request.match_info["state"] == "off"
        switches = self.core.switches
        if switches is None or not switches.known(name):
            return error_response(404, new_request_id(), f"No simulated endpoint {name!r}")
        switches.throw(name, off)
        return json_response({"endpoint": name, "off": off})

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        return error_response(404, new_request_id(), f"Not found: {request.method} {request.path}")


def _abort(request: web.Request) -> NoReturn:
    """Close the client's connection without an answer, and end the handler."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError
