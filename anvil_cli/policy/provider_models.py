"""The ids Amazon Bedrock and Google Vertex AI know Anvil's models by, and each provider's
default address: pure data, shared by the workers (what to send) and config checks (what an
endpoint can serve).

An endpoint's own `models:` mapping wins over this catalog; a model missing here is one the
provider does not serve as far as Anvil knows (`provider_model_id` answers None). The Anthropic
API and Microsoft Foundry know the models by Anvil's own ids.

Bedrock serves current models on demand through cross-region inference profiles: given the
endpoint's region, the id gets its geography's prefix (`us.`, `eu.`, `apac.`; `global.` for
other regions), as the Bedrock console lists them.
"""

from __future__ import annotations

from typing import Final

# Anvil model id -> Bedrock foundation model id (without a geography prefix)
BEDROCK_MODELS: Final[dict[str, str]] = {
    "claude-haiku-4-5": "anthropic.claude-haiku-4-5-20251001-v1:0",
    "claude-sonnet-4-5": "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "claude-sonnet-4-6": "anthropic.claude-sonnet-4-6",
    "claude-opus-4-1": "anthropic.claude-opus-4-1-20250805-v1:0",
    "claude-opus-4-5": "anthropic.claude-opus-4-5-20251101-v1:0",
    "claude-opus-4-6": "anthropic.claude-opus-4-6-v1",
    "claude-opus-4-7": "anthropic.claude-opus-4-7-v1",
    "claude-opus-4-8": "anthropic.claude-opus-4-8-v1",
}

# Anvil model id -> Vertex AI publisher model id
VERTEX_MODELS: Final[dict[str, str]] = {
    "claude-haiku-4-5": "claude-haiku-4-5@20251001",
    "claude-sonnet-4-5": "claude-sonnet-4-5@20250929",
    "claude-sonnet-4-6": "claude-sonnet-4-6",
    "claude-opus-4-1": "claude-opus-4-1@20250805",
    "claude-opus-4-5": "claude-opus-4-5@20251101",
    "claude-opus-4-6": "claude-opus-4-6",
    "claude-opus-4-7": "claude-opus-4-7",
    "claude-opus-4-8": "claude-opus-4-8",
}

# AWS region prefix -> the geography of Bedrock's cross-region inference profiles
_BEDROCK_GEOGRAPHY: Final[dict[str, str]] = {"us-": "us", "eu-": "eu", "ap-": "apac"}

SAME_IDS: Final = ("anthropic", "foundry")  # providers that take Anvil's ids as they are


def bedrock_profile(model_id: str, region: str | None) -> str:
    """`model_id` as the inference profile of `region`'s geography (the id itself without a region)."""
    if region is None:
        return model_id
    geography = next((g for prefix, g in _BEDROCK_GEOGRAPHY.items() if region.startswith(prefix)), "global")
    return f"{geography}.{model_id}"


def provider_model_id(provider: str, model: str, region: str | None = None) -> str | None:
    """The id `provider` knows `model` by (Bedrock: the inference profile of `region`), or None
    when the catalog says the provider does not serve it."""
    if provider in SAME_IDS:
        return model
    if provider == "bedrock":
        base = BEDROCK_MODELS.get(model)
        return bedrock_profile(base, region) if base is not None else None
    if provider == "vertex":
        return VERTEX_MODELS.get(model)
    return None


def default_base_url(provider: str, region: str | None = None, resource: str | None = None) -> str | None:
    """Where the SDK's client for `provider` calls when given no base URL (as the SDK builds it);
    None when it needs what is missing (a region, a Foundry resource)."""
    if provider == "anthropic":
        return "https://api.anthropic.com"
    if provider == "bedrock":
        return f"https://bedrock-runtime.{region}.amazonaws.com" if region else None
    if provider == "vertex":
        if not region:
            return None
        special = {"global": "aiplatform", "us": "aiplatform.us.rep", "eu": "aiplatform.eu.rep"}
        return f"https://{special.get(region, f'{region}-aiplatform')}.googleapis.com/v1"
    if provider == "foundry":
        return f"https://{resource}.services.ai.azure.com/anthropic/" if resource else None
    return None
