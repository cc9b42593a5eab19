"""Every request: bearer token first, and every error answered as JSON (never a traceback)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from anvil_cli.views.api.auth import bearer_matches
from anvil_cli.views.api.bodies import MAX_BODY_BYTES
from anvil_cli.views.api.errors import ApiError


def dumps(data: Any) -> str:
    return json.dumps(data, default=str)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


def _from_http(exc: web.HTTPException, request: web.Request) -> ApiError:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return ApiError(
            405,
            f"{request.method} is not allowed on {request.path} (allowed: {allowed})",
            headers={"Allow": allowed},
        )
    if exc.status == 404:
        return ApiError(404, f"no such endpoint: {request.method} {request.path}")
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return ApiError(413, f"the body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB: send it in parts")
    return ApiError(exc.status, exc.reason)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer `ApiError` and aiohttp's own errors (404, 405, 413) as `{"error": reason}`."""
    try:
        return await handler(request)
    except ApiError as exc:
        error = exc
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = _from_http(exc, request)
    return json_response(error.body(), status=error.status, headers=error.headers)


def require_token(token: str, public: frozenset[str] = frozenset()) -> Middleware:
    """A middleware that answers 401 unless the request carries `Authorization: Bearer <token>`;
    a GET (or HEAD) of exactly one of the `public` paths needs none (the web page and its static
    files: they hold no data, and a browser cannot add the header to the page's own request)."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in ("GET", "HEAD") and request.path in public:
            return await handler(request)
        if not bearer_matches(request.headers.get("Authorization"), token):
            raise ApiError(
                401,
                "missing or wrong bearer token: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": 'Bearer realm="anvil"'},
            )
        return await handler(request)

    return check
