"""The simulator in cloud providers' wire formats: Amazon Bedrock and Google Vertex AI.

Same answers, directives, limits and stats as the Anthropic API routes (one `SimCore`); only
the paths, authentication, error shapes, headers and stream framing are the provider's.
"""

from __future__ import annotations

from aiohttp import web

from anvil_cli.sim.providers import bedrock, vertex
from anvil_cli.sim.providers.flow import Host


def add_routes(app: web.Application, host: Host) -> None:
    """Register Bedrock's and Vertex AI's Messages routes on the simulator's application."""
    bedrock.add_routes(app, host)
    vertex.add_routes(app, host)
