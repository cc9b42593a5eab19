"""The API's error envelope and the error type of each status."""

from __future__ import annotations

from typing import Any

ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

MESSAGES: dict[str, str] = {
    "invalid_request_error": "Invalid request (simulated).",
    "authentication_error": "invalid x-api-key",
    "billing_error": "Your credit balance is too low (simulated).",
    "permission_error": "Your API key does not have permission to use the specified resource (simulated).",
    "not_found_error": "Not found (simulated).",
    "timeout_error": "Request timed out (simulated).",
    "request_too_large": "Request exceeds the maximum allowed number of bytes (simulated).",
    "rate_limit_error": "Number of requests has exceeded your rate limit (simulated).",
    "api_error": "Internal server error (simulated).",
    "overloaded_error": "Overloaded",
}

SPEND_CAP_CODE = "enforced_spend_limit_reached"


def error_type(status: int) -> str:
    """The `error.type` the real API uses for `status` (api_error for unlisted codes)."""
    return ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def error_body(
    status: int,
    request_id: str,
    message: str | None = None,
    details: dict[str, Any] | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """`{"type": "error", "error": {...}, "request_id": ...}` for `status`."""
    kind = kind or error_type(status)
    error: dict[str, Any] = {"type": kind, "message": message or MESSAGES.get(kind, "Error (simulated).")}
    if details:
        error["details"] = details
    return {"type": "error", "error": error, "request_id": request_id}
