"""What makes an answer to a Messages call in the Anthropic API's format the Anthropic API's:
its authentication, its identifying and rate-limit headers. Microsoft Foundry serves the same
API behind Azure's gateway, which differs in exactly these (`providers/foundry.py`)."""

from __future__ import annotations

from aiohttp import web

from anvil_cli.sim.http import authorized, error_response
from anvil_cli.sim.rate_limits import retry_after_header


class MessagesWire:
    """The Anthropic API's: `x-api-key` or a bearer token, `anthropic-ratelimit-*`, `retry-after`."""

    def authorized(self, request: web.Request) -> bool:
        return authorized(request)

    def unauthenticated(self, request_id: str) -> web.Response:
        return error_response(401, request_id, "invalid x-api-key")

    def ids(self, request_id: str) -> dict[str, str]:
        """The headers naming the answer."""
        return {"request-id": request_id}

    def rate_headers(self, limits: dict[str, str]) -> dict[str, str]:
        """The headers sent for the model's pool, given its `anthropic-ratelimit-*` headers."""
        return limits

    def retry_headers(self, wait_s: float) -> dict[str, str]:
        """The headers of a 429 that says to wait `wait_s`."""
        return {"retry-after": retry_after_header(wait_s)}


ANTHROPIC = MessagesWire()
