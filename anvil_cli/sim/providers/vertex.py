"""Google Vertex AI's wire format, as `AsyncAnthropicVertex` speaks it.

`POST [/v1]/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict`
answers a message as JSON, `:streamRawPredict` streams the same SSE events as the Anthropic API,
and `models/count-tokens:rawPredict` counts tokens. The body has no `model` (it is in the path)
and must carry `anthropic_version`. A request needs `Authorization: Bearer <token>` (any token).
Errors of the platform (authentication, an unknown model, quota) are Google's
`{"error": {"code", "message", "status"}}`; the model's own errors pass through in the
Anthropic API's shape. No `anthropic-ratelimit-*` headers and no `retry-after`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from anvil_cli.sim.answers.responses import stream_error_event
from anvil_cli.sim.errors import error_body
from anvil_cli.sim.http import json_response, new_request_id
from anvil_cli.sim.providers.flow import Host, Wire, answer
from anvil_cli.sim.providers.models import vertex_model

PREFIX = "/projects/{project}/locations/{region}/publishers/anthropic/models/{target}"
SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
UNAUTHENTICATED = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential."
)
EXHAUSTED = (
    "Resource exhausted. Please try again later. Please refer to "
    "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details."
)

# The Anthropic API's status -> Google's status name and message, where the platform answers
GOOGLE_ERRORS: dict[int, tuple[str, str]] = {
    401: ("UNAUTHENTICATED", UNAUTHENTICATED),
    403: ("PERMISSION_DENIED", "Permission denied on resource project (simulated)."),
    404: ("NOT_FOUND", "Requested entity was not found (simulated)."),
    429: ("RESOURCE_EXHAUSTED", EXHAUSTED),
}


def google_error(code: int, status: str, message: str) -> web.Response:
    """A Google API error: `{"error": {"code": ..., "message": ..., "status": ...}}`."""
    return json_response({"error": {"code": code, "message": message, "status": status}}, code)


class VertexWire(Wire):
    """Vertex AI's authentication and errors; its stream is the Anthropic API's SSE."""

    def authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("authorization", "")
        return auth[:7].lower() == "bearer " and bool(auth[7:].strip())

    def unauthenticated(self) -> web.Response:
        return google_error(401, *GOOGLE_ERRORS[401])

    def unknown_model(self, request: web.Request, model_id: str) -> web.Response:
        where = "projects/{project}/locations/{region}".format_map(request.match_info)
        message = (
            f"Publisher Model `{where}/publishers/anthropic/models/{model_id}` was not found "
            "or your project does not have access to it."
        )
        return google_error(404, "NOT_FOUND", message)

    def error(self, status: int, message: str | None) -> web.Response:
        google = GOOGLE_ERRORS.get(status)
        if google is not None:
            return google_error(status, *google)
        return json_response(error_body(status, new_request_id(), message), status)

    def check(self, body: Mapping[str, Any]) -> str | None:
        return None if "anthropic_version" in body else "anthropic_version: Field required"

    def headers(self, msg: Mapping[str, Any]) -> dict[str, str]:
        return {}

    def stream_headers(self) -> dict[str, str]:
        return dict(SSE_HEADERS)

    def frame(self, events: list[bytes], msg: Mapping[str, Any]) -> list[bytes]:
        return events

    def stream_failure(self) -> bytes:
        return stream_error_event()


def add_routes(app: web.Application, host: Host) -> None:
    """The publisher model routes, with and without the `/v1` the default base URL ends in."""
    wire = VertexWire()

    async def predict(request: web.Request) -> web.StreamResponse:
        model_id, _, method = request.match_info["target"].rpartition(":")
        if model_id == "count-tokens" and method == "rawPredict":
            if host.core.config.require_auth and not wire.authorized(request):
                return wire.unauthenticated()
            return await host.count_tokens(request)
        if method not in ("rawPredict", "streamRawPredict"):
            return google_error(404, "NOT_FOUND", f"Method not found: {method or '(none)'} (simulated).")
        stream = method == "streamRawPredict"
        return await answer(host, wire, request, model_id, vertex_model(model_id), stream=stream)

    app.router.add_post(PREFIX, predict)
    app.router.add_post("/v1" + PREFIX, predict)
