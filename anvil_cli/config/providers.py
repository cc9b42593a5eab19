"""What Anvil knows of each provider an `endpoints:` entry may name: its address, the variables
its credentials come from, and the SDK extra its client needs. Pure: no environment is read here.

Read from the installed SDK's own clients (`anthropic/lib/bedrock`, `lib/vertex`, `lib/foundry`),
which compute the same addresses when given no `base_url`:
* bedrock: `https://bedrock-runtime.{region}.amazonaws.com`; a Bedrock API key
  (`AWS_BEARER_TOKEN_BEDROCK`) goes as a bearer token, otherwise requests are SigV4-signed with
  AWS credentials (botocore);
* vertex: `https://{region}-aiplatform.googleapis.com/v1` (`global`, `us`, `eu`: their own
  hosts); an access token as a bearer token, otherwise Application Default Credentials (google-auth);
* foundry: `https://{resource}.services.ai.azure.com/anthropic/`, an API key
  (`ANTHROPIC_FOUNDRY_API_KEY`).
"""

from __future__ import annotations

import importlib.util

ANTHROPIC_KEY_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
BEDROCK_KEY_ENV = "AWS_BEARER_TOKEN_BEDROCK"  # a Bedrock API key, as the SDK reads it
AWS_KEY_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
FOUNDRY_KEY_ENV = "ANTHROPIC_FOUNDRY_API_KEY"
VERTEX_PROJECT_ENV = ("ANTHROPIC_VERTEX_PROJECT_ID", "GOOGLE_CLOUD_PROJECT")

# the Python packages each provider's SDK client imports, and the extra that installs them
_EXTRAS = {"bedrock": ("boto3", "botocore"), "vertex": ("google.auth",)}


def default_base_url(provider: str, region: str | None, resource: str | None) -> str | None:
    """The address the SDK's client computes for this provider (None: it needs more to say)."""
    if provider == "anthropic":
        return "https://api.anthropic.com"
    if provider == "bedrock" and region:
        return f"https://bedrock-runtime.{region}.amazonaws.com"
    if provider == "vertex" and region:
        if region == "global":
            return "https://aiplatform.googleapis.com/v1"
        if region in ("us", "eu"):
            return f"https://aiplatform.{region}.rep.googleapis.com/v1"
        return f"https://{region}-aiplatform.googleapis.com/v1"
    if provider == "foundry" and resource:
        return f"https://{resource}.services.ai.azure.com/anthropic/"
    return None


def credential_variables(
    provider: str, api_key_env: str | None, auth_token_env: str | None
) -> tuple[str, ...]:
    """Every variable an endpoint's credential may be read from: the ones it names, else its
    provider's usual ones. These are secrets: the vault keeps them out of every process's
    environment (`config/vault.py`)."""
    named = tuple(n for n in (api_key_env, auth_token_env) if n)
    if named:
        return named
    if provider == "anthropic":
        return ANTHROPIC_KEY_ENV
    if provider == "bedrock":
        return (BEDROCK_KEY_ENV, *AWS_KEY_ENV)
    if provider == "foundry":
        return (FOUNDRY_KEY_ENV,)
    return ()  # vertex: Application Default Credentials, a file the worker reads


def missing_extra(provider: str, has_token: bool) -> str | None:
    """What to install when this provider's SDK client cannot work here, else None. Bedrock
    needs botocore even with an API key (its responses' event streams); Vertex needs
    google-auth only without a token (Application Default Credentials)."""
    if provider not in _EXTRAS or (provider == "vertex" and has_token):
        return None
    absent = [name for name in _EXTRAS[provider] if not _installed(name)]
    if not absent:
        return None
    return f"the {provider} client needs {', '.join(absent)}: pip install 'anvil-cli[{provider}]'"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken one
        return False
