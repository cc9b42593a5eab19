"""`anvil simulate`: a local stand-in for the Anthropic API, with its rate limits and faults."""

from typing import TYPE_CHECKING, Any

from anvil_cli.sim.config import TIERS, SimConfig, with_tier
from anvil_cli.sim.digest import messages_digest, request_digest

if TYPE_CHECKING:
    from anvil_cli.sim.server import SimServer, serve_forever

__all__ = [
    "TIERS",
    "SimConfig",
    "SimServer",
    "messages_digest",
    "request_digest",
    "serve_forever",
    "with_tier",
]


def __getattr__(name: str) -> Any:
    """The server (and aiohttp) load only when used, keeping `anvil --help` fast."""
    if name in ("SimServer", "serve_forever"):
        from anvil_cli.sim.server import SimServer, serve_forever

        return SimServer if name == "SimServer" else serve_forever
    raise AttributeError(name)
