"""Which Claude models each provider serves, and the id it knows each by.

The Anthropic API and Microsoft Foundry take Anvil's ids as they are (`claude-sonnet-4-6`).
Amazon Bedrock and Google Vertex AI name models their own way, and serve only some: the tables
below hold the ids Anvil knows (read on 2026-12-05 from Anthropic's "Claude on Amazon Bedrock"
and "Claude on Vertex AI" pages). A model missing here is still served when the endpoint's
`models:` maps it (`models: {claude-opus-4-8: us.anthropic.claude-opus-4-8-v1}`), and a mapping
there replaces the default below.

Bedrock's newer models are called through a cross-region inference profile, whose prefix is
the region's geography (`us.` in us-east-1, `eu.` in eu-west-1, `jp.` in Tokyo and Osaka,
`apac.` elsewhere in Asia-Pacific), or `global.` where the model has no profile there.
"""

from __future__ import annotations

# Anvil id -> (Bedrock base model id, the inference profiles it has)
_BEDROCK: dict[str, tuple[str, tuple[str, ...]]] = {
    "claude-opus-4-6": ("anthropic.claude-opus-4-6-v1", ("global", "us", "eu", "jp", "apac")),
    "claude-sonnet-4-6": ("anthropic.claude-sonnet-4-6", ("global", "us", "eu", "jp")),
    "claude-sonnet-4-5": ("anthropic.claude-sonnet-4-5-20250929-v1:0", ("global", "us", "eu", "jp")),
    "claude-opus-4-5": ("anthropic.claude-opus-4-5-20251101-v1:0", ("global", "us", "eu")),
    "claude-haiku-4-5": ("anthropic.claude-haiku-4-5-20251001-v1:0", ("global", "us", "eu")),
    "claude-opus-4-1": ("anthropic.claude-opus-4-1-20250805-v1:0", ("us",)),
    # unverified: following Opus 4.6's naming (a `models:` mapping overrides them)
    "claude-opus-4-7": ("anthropic.claude-opus-4-7-v1", ("global", "us", "eu")),
    "claude-opus-4-8": ("anthropic.claude-opus-4-8-v1", ("global", "us", "eu")),
}

# Anvil id -> Vertex AI publisher model id
_VERTEX: dict[str, str] = {
    "claude-opus-4-6": "claude-opus-4-6",
    "claude-sonnet-4-6": "claude-sonnet-4-6",
    "claude-sonnet-4-5": "claude-sonnet-4-5@20250929",
    "claude-opus-4-5": "claude-opus-4-5@20251101",
    "claude-haiku-4-5": "claude-haiku-4-5@20251001",
    "claude-opus-4-1": "claude-opus-4-1@20250805",
    "claude-opus-4-7": "claude-opus-4-7",  # unverified, as above
    "claude-opus-4-8": "claude-opus-4-8",
}

# providers that take Anvil's ids as they are and serve every model
SAME_IDS = ("anthropic", "foundry")


def bedrock_geography(region: str) -> str:
    """The inference-profile prefix of an AWS region (`us-east-1` -> `us`)."""
    if region.startswith(("us-", "ca-")):
        return "us"
    if region.startswith("eu-"):
        return "eu"
    if region in ("ap-northeast-1", "ap-northeast-3"):
        return "jp"
    if region.startswith("ap-"):
        return "apac"
    return "global"


def default_models(provider: str, region: str | None) -> dict[str, str]:
    """Anvil id -> the provider's id, for every model Anvil knows the provider serves (empty for
    the providers that serve every model by its own id)."""
    if provider == "bedrock":
        geography = bedrock_geography(region or "")
        out = {}
        for model, (base, profiles) in _BEDROCK.items():
            prefix = geography if geography in profiles else "global" if "global" in profiles else None
            out[model] = f"{prefix}.{base}" if prefix else base
        return out
    if provider == "vertex":
        return dict(_VERTEX)
    return {}


def serves_all(provider: str) -> bool:
    """Whether the provider serves any model by Anvil's id (no table to consult)."""
    return provider in SAME_IDS


def provider_model_id(provider: str, model: str, region: str | None = None) -> str | None:
    """The id `provider` knows `model` by (Bedrock: the inference profile of `region`), or None
    when Anvil does not know the provider to serve it."""
    if serves_all(provider):
        return model
    return default_models(provider, region).get(model)
