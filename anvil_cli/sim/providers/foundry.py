"""Microsoft Foundry's wire format, as `AsyncAnthropicFoundry` speaks it.

Foundry serves the Anthropic Messages API at `https://{resource}.services.ai.azure.com/anthropic/`:
`POST /anthropic/v1/messages` (JSON and SSE) and `/anthropic/v1/messages/count_tokens`, the
Anthropic API's bodies, answers and error envelope. What Azure's gateway in front of it does is
its own: a key in `api-key` (the SDK also sends `x-api-key`) or an Entra ID token as
`Authorization: Bearer`; none is refused in Azure's `{"error": {"code", "message"}}` shape. Quota
is Azure's (per subscription and model), so instead of `anthropic-ratelimit-*` the simulator sends
Azure's `x-ratelimit-{limit,remaining}-{requests,tokens}` and, on a 429, `retry-after` and
`retry-after-ms` (as Azure AI services do; not checked against a live Foundry resource).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from anvil_cli.sim.http import authorized, json_response
from anvil_cli.sim.wire import MessagesWire

PREFIX = "/anthropic"
ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
    "valid key for an active subscription and use a correct regional API endpoint for your resource."
)
Handler = Callable[[web.Request, MessagesWire], Awaitable[web.StreamResponse]]


class FoundryWire(MessagesWire):
    """Azure's gateway in front of the Anthropic API."""

    def authorized(self, request: web.Request) -> bool:
        return bool(request.headers.get("api-key", "").strip()) or authorized(request)

    def unauthenticated(self, request_id: str) -> web.Response:
        return json_response({"error": {"code": "401", "message": ACCESS_DENIED}}, 401, self.ids(request_id))

    def ids(self, request_id: str) -> dict[str, str]:
        return {"request-id": request_id, "apim-request-id": str(uuid.uuid4())}

    def rate_headers(self, limits: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for dimension in ("requests", "tokens"):
            for part in ("limit", "remaining"):
                value = limits.get(f"anthropic-ratelimit-{dimension}-{part}")
                if value is not None:
                    out[f"x-ratelimit-{part}-{dimension}"] = value
        return out

    def retry_headers(self, wait_s: float) -> dict[str, str]:
        return {**super().retry_headers(wait_s), "retry-after-ms": str(max(1, round(wait_s * 1000)))}


FOUNDRY = FoundryWire()


def add_routes(app: web.Application, messages: Handler, count_tokens: Handler) -> None:
    """`/anthropic/v1/messages` and `/anthropic/v1/messages/count_tokens`."""

    async def create(request: web.Request) -> web.StreamResponse:
        return await messages(request, FOUNDRY)

    async def count(request: web.Request) -> web.StreamResponse:
        return await count_tokens(request, FOUNDRY)

    app.router.add_post(PREFIX + "/v1/messages", create)
    app.router.add_post(PREFIX + "/v1/messages/count_tokens", count)
