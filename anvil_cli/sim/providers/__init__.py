"""The simulator in cloud providers' wire formats: Amazon Bedrock, Google Vertex AI and
Microsoft Foundry.

Same answers, directives, limits and stats as the Anthropic API routes (one `SimCore`); only
the paths, authentication, error shapes, headers and stream framing are the provider's.
Foundry's is the Anthropic API's own format behind Azure's gateway (`foundry.py`, registered
by the application with its Messages handler).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from anvil_cli.sim.providers import bedrock, vertex
from anvil_cli.sim.providers.flow import Host


def add_routes(app: web.Application, host: Host, serves: Callable[[str], bool]) -> None:
    """Register Bedrock's and Vertex AI's Messages routes (those `serves`) on the application."""
    if serves("bedrock"):
        bedrock.add_routes(app, host)
    if serves("vertex"):
        vertex.add_routes(app, host)
