"""Which endpoint `--mode batches` uses: the Message Batches API is the Anthropic API's only
(Bedrock's and Vertex's clients raise "not supported"), so the first `provider: anthropic`
endpoint of `endpoints:`, and the others sit the run out; none at all is bad input."""

from __future__ import annotations

from collections.abc import Sequence

from anvil_cli.config.endpoint import Endpoint
from anvil_cli.config.settings import Settings
from anvil_cli.errors import UsageError

BATCHES_PROVIDER = "anthropic"


def require_batches_endpoint(settings: Settings) -> None:
    """Refuse `--mode batches` before anything is written when `endpoints:` lists no Anthropic
    API endpoint (without `endpoints:` the one endpoint of ANTHROPIC_* variables is Anthropic's)."""
    if not settings.endpoints or any(e.provider == BATCHES_PROVIDER for e in settings.endpoints):
        return
    listed = ", ".join(f"{e.name} ({e.provider})" for e in settings.endpoints)
    raise UsageError(
        "--mode batches needs an endpoint with provider: anthropic (the Message Batches API is"
        f" the Anthropic API's only), and endpoints: lists none: {listed}."
        " Add one, or run with --mode messages"
    )


def batches_endpoint(endpoints: Sequence[Endpoint]) -> tuple[Endpoint, str | None]:
    """The endpoint Message Batches go to, and a note naming the endpoints left out (None when
    the run has only the one)."""
    chosen = next((e for e in endpoints if e.provider == BATCHES_PROVIDER), None)
    if chosen is None:
        listed = ", ".join(f"{e.name or 'the default'} ({e.provider})" for e in endpoints)
        raise UsageError(
            f"--mode batches needs an endpoint with provider: anthropic; this run has none: {listed}"
        )
    unused = [e for e in endpoints if e is not chosen]
    if not unused:
        return chosen, None
    names = ", ".join(f"{e.name} ({e.provider})" for e in unused)
    return chosen, f"Message Batches run on endpoint {chosen.name}; not used in batches mode: {names}"
