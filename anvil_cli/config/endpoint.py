"""Where API calls go and with what credential: resolved once, in the driver, for every backend.

Workers (local processes, Ray actors on other machines) never read API settings from their own
environment: they are handed an `Endpoint` and build their SDK client from it alone.

Precedence, highest first:
1. base URL: `provider.base_url` (config file, `ANVIL_PROVIDER__BASE_URL`), then
   `ANTHROPIC_BASE_URL`, then https://api.anthropic.com;
2. credential: the key given to `anvil run` (tests), then `ANTHROPIC_API_KEY`, then
   `ANTHROPIC_AUTH_TOKEN` (a bearer token, as the SDK reads it; the key wins when both are set);
3. extra headers: `ANTHROPIC_CUSTOM_HEADERS` ("Name: value" lines, as the SDK reads them).
`provider.base_url` and the `ANTHROPIC_*` variables make this one implicit endpoint only.

With an `endpoints:` section, each entry is one `Endpoint`, in order (`resolve_endpoints`):
* base URL: the entry's `base_url`, else its provider's address (`config/providers.py`: the
  Anthropic API; Bedrock's and Vertex's from the region; Foundry's from the resource);
  `ANTHROPIC_BASE_URL` (and the SDK's `ANTHROPIC_BEDROCK_BASE_URL`...) do not apply;
* credential, from the environment (the vault's secrets included), never from the file:
  anthropic: `api_key_env` or `auth_token_env`, else ANTHROPIC_API_KEY, else ANTHROPIC_AUTH_TOKEN;
  foundry: `api_key_env` (default ANTHROPIC_FOUNDRY_API_KEY) or `auth_token_env` (an Entra ID token);
  bedrock: `api_key_env`/`auth_token_env` (a Bedrock API key), else AWS_BEARER_TOKEN_BEDROCK,
  else AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), else none: the worker
  signs with the AWS credential chain of its own machine (profile files, an instance role);
  vertex: `auth_token_env`/`api_key_env` (an access token), else none: the worker's Application
  Default Credentials; its project: `project_id`, else ANTHROPIC_VERTEX_PROJECT_ID, else
  GOOGLE_CLOUD_PROJECT;
* models: the provider's ids of the models Anvil knows it serves (`config/provider_models.py`),
  with the entry's `models:` over them.
Errors name the entry and the field (`endpoints[1] (bedrock-east): ...`), never a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from anvil_cli.config.provider_models import default_models, serves_all
from anvil_cli.config.providers import (
    AWS_KEY_ENV,
    BEDROCK_KEY_ENV,
    FOUNDRY_KEY_ENV,
    VERTEX_PROJECT_ENV,
    default_base_url,
)
from anvil_cli.config.settings import EndpointSettings, Settings
from anvil_cli.errors import UsageError

DEFAULT_BASE_URL = "https://api.anthropic.com"
# What the SDK would read from a process's environment; the driver reads them, workers never.
API_ENV = ("ANTHROPIC_BASE_URL", "ANTHROPIC_CUSTOM_HEADERS")


class EndpointError(UsageError):
    """An `endpoints:` entry that cannot be resolved: which one (`index`) and which field."""

    def __init__(self, index: int, name: str, field: str, message: str) -> None:
        self.index, self.field = index, field
        super().__init__(f"endpoints[{index}] ({name}): {field}: {message}")


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
        if self.api_key:
            return "api_key"
        return "auth_token" if self.auth_token else "aws" if self.aws_credentials else "none"

    @property
    def label(self) -> str:
        """How messages name it: `org-a (bedrock)`; the implicit endpoint: its address."""
        return f"{self.name} ({self.provider})" if self.name else self.base_url

    def serves(self, model: str) -> bool:
        """Whether calls for `model` can go here: the Anthropic API and Foundry serve every
        model by its id; Bedrock and Vertex the ones Anvil knows or `models:` maps."""
        return serves_all(self.provider) or model in dict(self.models)

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
    that section, the one endpoint of the ANTHROPIC_* variables (`resolve_endpoint`). Raises
    UsageError naming the entry and the field (a variable not set, a bad URL, no project).
    `api_key` (`anvil run`'s, for tests) and `hint` apply to the implicit endpoint only."""
    if not settings.endpoints:
        return (resolve_endpoint(settings, env, api_key, hint),)
    return tuple(named_endpoint(i, entry, env) for i, entry in enumerate(settings.endpoints))


def named_endpoint(
    index: int, entry: EndpointSettings, env: Mapping[str, str], simulated_key: str | None = None
) -> Endpoint:
    """Entry `index` of `endpoints:` as an Endpoint (EndpointError when it cannot be). With
    `simulated_key` (`--simulate`) it takes that key instead of its own: no variable need be set."""
    at = _Entry(index, entry)
    base_url, origin = _named_base_url(at)
    try:
        _check_url(base_url, origin)
    except UsageError as exc:
        raise at.error("base_url", str(exc)) from None
    shape = Endpoint(
        base_url,
        origin,
        name=entry.name,
        provider=entry.provider,
        region=entry.region,
        project_id=entry.project_id,
        models=tuple({**default_models(entry.provider, entry.region), **entry.models}.items()),
    )
    if simulated_key is not None:
        if entry.provider == "vertex":  # a bearer token, as an access token goes
            return replace(shape, project_id=entry.project_id or "anvil-simulated", auth_token=simulated_key)
        return replace(shape, api_key=simulated_key)
    if entry.provider == "vertex":
        return replace(shape, project_id=_vertex_project(at, env), auth_token=_vertex_token(at, env))
    if entry.provider == "bedrock":
        return _bedrock_credential(shape, at, env)
    return _key_or_token(shape, at, env)


@dataclass(frozen=True)
class _Entry:
    index: int
    entry: EndpointSettings

    def error(self, field: str, message: str) -> EndpointError:
        return EndpointError(self.index, self.entry.name, field, message)

    def variable(self, env: Mapping[str, str], name: str, field: str) -> str:
        """The value of the variable `name` (named by `field`): set, and printable."""
        value = env.get(name)
        if not value:
            raise self.error(field, f"the variable {name} is not set")
        if any(c.isspace() or not c.isprintable() for c in value):
            raise self.error(field, f"{name} contains whitespace or control characters (not shown here)")
        return value


def _named_base_url(at: _Entry) -> tuple[str, str]:
    entry = at.entry
    if entry.base_url:
        return entry.base_url, f"endpoints[{at.index}].base_url"
    url = default_base_url(entry.provider, entry.region, entry.resource)
    if url is None:  # foundry without its resource (the schema requires bedrock's and vertex's region)
        raise at.error("resource", "a foundry endpoint needs its resource (or a base_url)")
    return url, "default" if entry.provider == "anthropic" else f"the {entry.provider} default"


def _key_or_token(shape: Endpoint, at: _Entry, env: Mapping[str, str]) -> Endpoint:
    """anthropic and foundry: a key, or a bearer token, from the variable named or the usual one."""
    entry = at.entry
    if entry.api_key_env:
        return replace(shape, api_key=at.variable(env, entry.api_key_env, "api_key_env"))
    if entry.auth_token_env:
        return replace(shape, auth_token=at.variable(env, entry.auth_token_env, "auth_token_env"))
    usual = (
        ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN") if entry.provider == "anthropic" else (FOUNDRY_KEY_ENV,)
    )
    for name in usual:
        if env.get(name):
            value = at.variable(env, name, "api_key_env")
            if name.endswith("_TOKEN"):
                return replace(shape, auth_token=value)
            return replace(shape, api_key=value)
    unset = " nor ".join(usual)
    raise at.error("api_key_env", f"no credential: name the variable holding its key ({unset} is not set)")


def _bedrock_credential(shape: Endpoint, at: _Entry, env: Mapping[str, str]) -> Endpoint:
    """A Bedrock API key, else AWS keys from the environment, else none (the worker's AWS chain)."""
    entry = at.entry
    if entry.api_key_env or entry.auth_token_env:
        field = "api_key_env" if entry.api_key_env else "auth_token_env"
        return replace(
            shape, api_key=at.variable(env, entry.api_key_env or entry.auth_token_env or "", field)
        )
    if env.get(BEDROCK_KEY_ENV):
        return replace(shape, api_key=at.variable(env, BEDROCK_KEY_ENV, "api_key_env"))
    key_id, secret, session = AWS_KEY_ENV
    if not env.get(key_id) and not env.get(secret):
        return shape  # the AWS credential chain of the worker's machine: profiles, an instance role
    aws = (
        at.variable(env, key_id, "AWS credentials"),
        at.variable(env, secret, "AWS credentials"),
        at.variable(env, session, "AWS credentials") if env.get(session) else None,
    )
    return replace(shape, aws_credentials=aws)


def _vertex_project(at: _Entry, env: Mapping[str, str]) -> str:
    if at.entry.project_id:
        return at.entry.project_id
    for name in VERTEX_PROJECT_ENV:
        if env.get(name):
            return env[name]
    raise at.error(
        "project_id", f"no Google Cloud project: set project_id (or {' or '.join(VERTEX_PROJECT_ENV)})"
    )


def _vertex_token(at: _Entry, env: Mapping[str, str]) -> str | None:
    """An access token from the variable named; none: the worker's Application Default Credentials."""
    named = at.entry.auth_token_env or at.entry.api_key_env
    if not named:
        return None
    return at.variable(env, named, "auth_token_env" if at.entry.auth_token_env else "api_key_env")


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
