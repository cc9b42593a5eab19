"""Which simulated model a Bedrock or Vertex AI model id names (None: one they would not serve).

Bedrock: `anthropic.claude-sonnet-4-6-v1:0`, a dated id (`anthropic.claude-haiku-4-5-20251001-v1:0`),
an inference profile with a geography prefix (`us.`, `eu.`, `apac.`, `global.`, ...) or the ARN of
one (`arn:aws:bedrock:...:inference-profile/us.anthropic....`). Vertex AI: `claude-sonnet-4-6`,
`claude-sonnet-4-5@20250929`. Either names a model of the built-in price table, or none.
"""

from __future__ import annotations

import re

from anvil_cli.policy.pricing.table import builtin_prices

_BEDROCK = re.compile(
    r"^(?:[a-z-]+\.)?anthropic\.(?P<name>claude-[a-z0-9-]+?)(?:-\d{8})?(?:-v\d+(?::\d+)?)?$"
)
_VERTEX = re.compile(r"^(?P<name>claude-[a-z0-9-]+?)(?:-\d{8})?(?:@[0-9a-z-]+)?$")


def _known(name: str) -> str | None:
    return name if name in builtin_prices().models else None


def bedrock_model(model_id: str) -> str | None:
    """The model a Bedrock model id (or inference profile, or its ARN) names."""
    tail = model_id.rpartition("/")[2] if model_id.startswith("arn:") else model_id
    match = _BEDROCK.match(tail)
    return _known(match["name"]) if match else None


def vertex_model(model_id: str) -> str | None:
    """The model a Vertex AI publisher model id (with or without `@version`) names."""
    match = _VERTEX.match(model_id)
    return _known(match["name"]) if match else None
