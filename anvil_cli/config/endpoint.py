"""Where API calls go and with what credential: resolved once, in the driver, for every backend.

Workers (local processes, Ray actors on other machines) never read API settings from their own
environment: they are handed an `Endpoint` and build their SDK client from it alone.

Precedence, highest first:
1. base URL: `provider.base_url` (config file, `ANVIL_PROVIDER__BASE_URL`), then
   `ANTHROPIC_BASE_URL`, then https://api.anthropic.com;
2. credential: the key given to `anvil run` (tests), then `ANTHROPIC_API_KEY`, then
   `ANTHROPIC_AUTH_TOKEN` (a bearer token, as the SDK reads it; the key wins when both are set);
3. extra headers: `ANTHROPIC_CUSTOM_HEADERS` ("Name: value" lines, as the SDK reads them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from anvil_cli.config.settings import Settings
from anvil_cli.errors import UsageError

DEFAULT_BASE_URL = "https://api.anthropic.com"
# What the SDK would read from a process's environment; the driver reads them, workers never.
API_ENV = ("ANTHROPIC_BASE_URL", "ANTHROPIC_CUSTOM_HEADERS")


@dataclass(frozen=True)
class Endpoint:
    """The API's address, where it came from, one credential, and extra headers (picklable)."""

    base_url: str
    base_url_from: str  # provider.base_url | ANTHROPIC_BASE_URL | default | the embedded simulator
    api_key: str | None = None
    auth_token: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    # From `endpoints:` (the defaults are the one endpoint of ANTHROPIC_* variables):
    name: str = ""  # "" : the run's only endpoint
    provider: str = "anthropic"  # anthropic | bedrock | vertex | foundry
    region: str | None = None  # bedrock, vertex
    project_id: str | None = None  # vertex
    models: tuple[tuple[str, str], ...] = ()  # Anvil model id -> the provider's id, where it differs
    # bedrock without a Bedrock API key: (access key id, secret access key, session token or None),
    # resolved in the driver; None with no api_key: the worker's own AWS credential chain
    aws_credentials: tuple[str, str, str | None] | None = None

    def __repr__(self) -> str:  # the credential and header values stay out of any log or traceback
        names = [name for name, _ in self.headers]
        return (
            f"Endpoint(name={self.name!r}, provider={self.provider!r}, base_url={self.base_url!r}, "
            f"from={self.base_url_from!r}, credential={self.credential_name}, headers={names})"
        )

    @property
    def credential_name(self) -> str:
        return "api_key" if self.api_key else "auth_token" if self.auth_token else "none"

    @property
    def host(self) -> str:
        """`host:port` of the base URL, as a connection error names it."""
        return host_of(self.base_url)

    def describe(self) -> str:
        return f"{self.base_url} (from {self.base_url_from})"

    def secrets(self) -> list[str]:
        """Values that must never appear in an error, a log or the journal."""
        aws = self.aws_credentials or (None, None, None)
        return [s for s in (self.api_key, self.auth_token, aws[1], aws[2]) if s]

    def model_id(self, model: str) -> str:
        """The id this endpoint knows `model` by (its `models:` mapping, else the same)."""
        return dict(self.models).get(model, model)

    def client_kwargs(self) -> dict[str, Any]:
        """Everything the SDK client needs, explicitly, so none of its environment fallbacks
        (ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY, profiles...) can apply."""
        credential = {"api_key": self.api_key} if self.api_key else {"auth_token": self.auth_token}
        return {"base_url": self.base_url, "default_headers": dict(self.headers), **credential}

    def at(self, base_url: str, origin: str) -> Endpoint:
        """The same credential, calling another address (the embedded simulator)."""
        return replace(self, base_url=base_url, base_url_from=origin)


def host_of(url: str) -> str:
    """`host:port` of a URL (the scheme's default port when none is given)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or url
    if port is None:
        port = 443 if parts.scheme == "https" else 80 if parts.scheme == "http" else None
    return f"{host}:{port}" if port is not None else host


def resolve_base_url(settings: Settings, env: Mapping[str, str]) -> tuple[str, str]:
    """(base URL, where it came from): provider.base_url, then ANTHROPIC_BASE_URL, then the default."""
    if settings.provider.base_url:
        return settings.provider.base_url, "provider.base_url"
    if env.get("ANTHROPIC_BASE_URL"):
        return env["ANTHROPIC_BASE_URL"], "ANTHROPIC_BASE_URL"
    return DEFAULT_BASE_URL, "default"


def _headers(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """`ANTHROPIC_CUSTOM_HEADERS`, parsed as the SDK parses it ("Name: value" per line)."""
    out: dict[str, str] = {}
    for line in env.get("ANTHROPIC_CUSTOM_HEADERS", "").split("\n"):
        name, colon, value = line.partition(":")
        if colon and name.strip():
            out[name.strip()] = value.strip()
    return tuple(out.items())


def _check_printable(name: str, value: str) -> None:
    if any(c.isspace() or not c.isprintable() for c in value):
        # e.g. a trailing newline from a .env file: every request would fail with it in the error
        raise UsageError(f"{name} contains whitespace or control characters (not shown here)")


def _check_url(url: str, origin: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{origin} is not an http(s) URL: {url!r} (expected e.g. https://api.anthropic.com)")
    try:
        _ = parts.port
    except ValueError:
        raise UsageError(f"{origin} has an invalid port: {url!r}") from None


def resolve_endpoints(
    settings: Settings, env: Mapping[str, str], api_key: str | None = None, hint: str = ""
) -> tuple[Endpoint, ...]:
    """Every endpoint a run's calls may go to, in the order `endpoints:` lists them; without
    that section, the one endpoint of the ANTHROPIC_* variables (`resolve_endpoint`)."""
    return (resolve_endpoint(settings, env, api_key, hint),)


def resolve_endpoint(
    settings: Settings, env: Mapping[str, str], api_key: str | None = None, hint: str = ""
) -> Endpoint:
    """The run's endpoint. Raises UsageError when the base URL is not a URL, or there is no
    credential (`hint` is added to that message), or it is malformed."""
    base_url, origin = resolve_base_url(settings, env)
    _check_url(base_url, origin)
    key = api_key or env.get("ANTHROPIC_API_KEY") or None
    token = None if key else env.get("ANTHROPIC_AUTH_TOKEN") or None
    if key is None and token is None:
        raise UsageError(f"ANTHROPIC_API_KEY is not set (nor ANTHROPIC_AUTH_TOKEN){hint}")
    _check_printable("ANTHROPIC_API_KEY" if key else "ANTHROPIC_AUTH_TOKEN", key or token or "")
    return Endpoint(base_url, origin, api_key=key, auth_token=token, headers=_headers(env))
