"""Amazon Bedrock's wire format, as `AsyncAnthropicBedrock` speaks it.

`POST /model/{modelId}/invoke` answers a message as JSON; `/invoke-with-response-stream` streams
the Messages API events in AWS event-stream framing. The body has no `model` (it is in the path)
and no `stream` (it is the route), and must carry `anthropic_version`. Requests are SigV4-signed
(or carry a Bedrock API key as a bearer token): any `Authorization` header is accepted, none is
refused. Errors are AWS's: HTTP status, `x-amzn-ErrorType` and `{"message": ...}`; no
`anthropic-ratelimit-*` headers and no `retry-after` (Bedrock sends neither).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from anvil_cli.sim.providers import eventstream
from anvil_cli.sim.providers.flow import Host, Wire, answer
from anvil_cli.sim.providers.models import bedrock_model

ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
THROTTLED = "Too many requests, please wait before trying again."
INVALID_MODEL = "The provided model identifier is invalid."

# The Anthropic API's status -> (Bedrock's status, exception, its message)
EXCEPTIONS: dict[int, tuple[int, str, str]] = {
    400: (400, "ValidationException", "Malformed input request (simulated)."),
    401: (403, "UnrecognizedClientException", "The security token included in the request is invalid."),
    402: (403, "AccessDeniedException", "You don't have access to the model with the specified model ID."),
    403: (403, "AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: (404, "ResourceNotFoundException", "Could not resolve the foundation model (simulated)."),
    408: (408, "ModelTimeoutException", "Model has timed out in processing the request."),
    413: (400, "ValidationException", "Input is too long for requested model."),
    429: (429, "ThrottlingException", THROTTLED),
    500: (500, "InternalServerException", "The system encountered an unexpected error (simulated)."),
    504: (408, "ModelTimeoutException", "Model has timed out in processing the request."),
    529: (503, "ServiceUnavailableException", "Bedrock is unable to process your request."),
}


def aws_error(status: int, kind: str, message: str) -> web.Response:
    """An AWS JSON-protocol error: `{"message": ...}` with its type in `x-amzn-ErrorType`."""
    headers = {"x-amzn-RequestId": str(uuid.uuid4()), "x-amzn-ErrorType": kind + ERROR_TYPE_SUFFIX}
    return web.json_response({"message": message}, status=status, headers=headers)


def _event_data(event: bytes) -> bytes:
    """The JSON of one `event: ...\\ndata: {...}\\n\\n` SSE event."""
    return event.split(b"\ndata: ", 1)[1].rstrip(b"\n")


def _invocation_metrics(usage: Mapping[str, Any]) -> dict[str, int]:
    return {
        "inputTokenCount": usage["input_tokens"],
        "outputTokenCount": usage["output_tokens"],
        "cacheReadInputTokenCount": usage["cache_read_input_tokens"],
        "cacheWriteInputTokenCount": usage["cache_creation_input_tokens"],
    }


class BedrockWire(Wire):
    """Bedrock's authentication, errors and event-stream framing."""

    def authorized(self, request: web.Request) -> bool:
        return bool(request.headers.get("authorization", "").strip())

    def unauthenticated(self) -> web.Response:
        return aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")

    def unknown_model(self, request: web.Request, model_id: str) -> web.Response:
        return aws_error(400, "ValidationException", INVALID_MODEL)

    def error(self, status: int, message: str | None) -> web.Response:
        default = (400, "ValidationException", "") if status < 500 else (500, "InternalServerException", "")
        code, kind, text = EXCEPTIONS.get(status, default)
        if kind == "ValidationException" and message:
            text = message  # what was wrong with the request, as the API would say
        return aws_error(code, kind, text or "Error (simulated).")

    def check(self, body: Mapping[str, Any]) -> str | None:
        if "anthropic_version" not in body:
            return "Malformed input request: #: required key [anthropic_version] not found"
        for key in ("model", "stream"):
            if key in body:
                return f"Malformed input request: #: extraneous key [{key}] is not permitted"
        return None

    def headers(self, msg: Mapping[str, Any]) -> dict[str, str]:
        usage = msg.get("usage") or {}
        return {
            "x-amzn-RequestId": str(uuid.uuid4()),
            "X-Amzn-Bedrock-Input-Token-Count": str(usage.get("input_tokens", 0)),
            "X-Amzn-Bedrock-Output-Token-Count": str(usage.get("output_tokens", 0)),
        }

    def stream_headers(self) -> dict[str, str]:
        return {
            "content-type": eventstream.CONTENT_TYPE,
            "x-amzn-RequestId": str(uuid.uuid4()),
            "X-Amzn-Bedrock-Content-Type": "application/json",
        }

    def frame(self, events: list[bytes], msg: Mapping[str, Any]) -> list[bytes]:
        framed = []
        for event in events:
            data = _event_data(event)
            if event.startswith(b"event: message_stop"):  # Bedrock adds its metrics to the last event
                stop = {
                    **json.loads(data),
                    "amazon-bedrock-invocationMetrics": _invocation_metrics(msg["usage"]),
                }
                data = json.dumps(stop, separators=(",", ":")).encode()
            framed.append(eventstream.chunk(data))
        return framed

    def stream_failure(self) -> bytes:
        return eventstream.exception("modelStreamErrorException", "Overloaded (simulated).")


def add_routes(app: web.Application, host: Host) -> None:
    """`/model/{model_id}/invoke` and `/model/{model_id}/invoke-with-response-stream`."""
    wire = BedrockWire()

    async def invoke(request: web.Request) -> web.StreamResponse:
        model_id = request.match_info["model_id"]
        return await answer(host, wire, request, model_id, bedrock_model(model_id), stream=False)

    async def invoke_stream(request: web.Request) -> web.StreamResponse:
        model_id = request.match_info["model_id"]
        return await answer(host, wire, request, model_id, bedrock_model(model_id), stream=True)

    app.router.add_post("/model/{model_id}/invoke", invoke)
    app.router.add_post("/model/{model_id}/invoke-with-response-stream", invoke_stream)
