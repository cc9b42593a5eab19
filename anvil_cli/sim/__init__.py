"""`anvil simulate`: a local stand-in for the Anthropic API, with its rate limits and faults."""

from anvil_cli.sim.config import TIERS, SimConfig, with_tier
from anvil_cli.sim.digest import messages_digest, request_digest
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
