"""Small helpers shared by the HTTP handlers: ids, JSON replies, auth, body reading."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from anvil_cli.sim.errors import error_body

JSON_TYPE = "application/json"


def new_request_id() -> str:
    return "req_sim" + os.urandom(10).hex()


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return web.Response(body=payload, status=status, headers=headers, content_type=JSON_TYPE)


def error_response(
    status: int,
    request_id: str,
    message: str | None = None,
    headers: Mapping[str, str] | None = None,
    details: dict[str, Any] | None = None,
) -> web.Response:
    all_headers = {"request-id": request_id, **(headers or {})}
    return json_response(error_body(status, request_id, message, details), status, all_headers)


def authorized(request: web.Request) -> bool:
    """An `x-api-key` or a `Authorization: Bearer` credential is present (any value is accepted)."""
    if request.headers.get("x-api-key"):
        return True
    auth = request.headers.get("authorization", "")
    return auth[:7].lower() == "bearer " and bool(auth[7:].strip())


async def read_json(request: web.Request) -> tuple[Any, bytes] | str:
    """(parsed body, raw bytes), or a problem message when the body is not JSON."""
    raw = await request.read()
    try:
        return json.loads(raw), raw
    except ValueError as exc:
        return f"Request body is not valid JSON: {exc}"


def model_of(body: Any) -> str | None:
    model = body.get("model") if isinstance(body, Mapping) else None
    return model if isinstance(model, str) and model else None
