"""Checks of resolved endpoints made before anything runs (`anvil validate`, `anvil run`): the
provider's SDK extra installed, the `models:` keys known, every model a batch asks for served
by every endpoint, and each credential variable kept out of other processes' environments.

Each finding is a `Finding` (the settings path it is about, a message); `anvil validate`
places it at its file and line, `anvil run` refuses to start on an error (exit 2).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from anvil_cli.config.endpoint import Endpoint
from anvil_cli.config.providers import credential_variables, missing_extra
from anvil_cli.config.settings import Settings
from anvil_cli.errors import UsageError
from anvil_cli.jobs.job import COMPLEXITIES


@dataclass(frozen=True)
class Finding:
    """One thing wrong (or worth a warning) about an endpoint, at a settings path."""

    path: str  # e.g. `endpoints[1].models.claude-x`
    message: str


def endpoint_errors(
    settings: Settings, endpoints: tuple[Endpoint, ...], models: Collection[str] = ()
) -> list[Finding]:
    """What stops a run: an extra not installed, a `models:` key that is no model, a model of
    `models` (the batch's) an endpoint cannot serve. Nothing without an `endpoints:` section."""
    if not settings.endpoints:
        return []
    found = []
    known = set(settings.model_ids())
    for i, endpoint in enumerate(endpoints):
        extra = missing_extra(endpoint.provider, endpoint.auth_token is not None)
        if extra:
            found.append(Finding(f"endpoints[{i}].provider", f"{_name(i, endpoint)}: {extra}"))
        for model in settings.endpoints[i].models:
            if model not in known:
                message = (
                    f"{_name(i, endpoint)}: {model!r} is not a model Anvil knows (a key of models:"
                    " is an Anvil model id; add others under prices:)"
                )
                found.append(Finding(f"endpoints[{i}].models.{model}", message))
        for model in sorted(set(models)):
            if model in known and not endpoint.serves(model):
                found.append(Finding(f"endpoints[{i}]", _unserved(i, endpoint, model)))
    return found


def batch_models(per_model: Mapping[str, int], settings: Settings) -> set[str]:
    """The models a batch's jobs are called with (`auto`: each complexity's routing model)."""
    models = {m for m in per_model if m != "auto"}
    if "auto" in per_model:
        models |= {getattr(settings.routing, level) for level in COMPLEXITIES}
    return models


def endpoint_warnings(
    settings: Settings, endpoints: tuple[Endpoint, ...], environ: Mapping[str, str] | None = None
) -> list[Finding]:
    """What a run survives but the user should know: `provider.base_url` (it applies to none), a
    fallback model an endpoint cannot serve, and a credential variable still in this process's
    environment (`environ`, default os.environ): the vault did not take it, so every process
    Anvil starts (tools included) inherits it."""
    if not settings.endpoints:
        return []
    environ = os.environ if environ is None else environ
    found = []
    if settings.provider.base_url:
        message = "applies to no endpoint of the endpoints: section (give each its own base_url)"
        found.append(Finding("provider.base_url", message))
    fallbacks = {m for chain in settings.routing.fallbacks.values() for m in chain}
    for i, endpoint in enumerate(endpoints):
        for model in sorted(fallbacks):
            if model in settings.model_ids() and not endpoint.serves(model):
                found.append(Finding("routing.fallbacks", _unserved(i, endpoint, model)))
        entry = settings.endpoints[i]
        for name in credential_variables(entry.provider, entry.api_key_env, entry.auth_token_env):
            if name in environ:
                message = (
                    f"{_name(i, endpoint)}: {name} is in the environment of every process Anvil starts, tools"
                    " included (the secrets vault did not take it: see docs/configuration.md, Endpoints)"
                )
                found.append(Finding(f"endpoints[{i}]", message))
    return found


def check_endpoints(
    settings: Settings, endpoints: tuple[Endpoint, ...], models: Collection[str] = ()
) -> None:
    """Raise UsageError (exit 2) listing `endpoint_errors`, if any."""
    errors = endpoint_errors(settings, endpoints, models)
    if errors:
        raise UsageError("\n".join(f"{f.path}: {f.message}" for f in errors))


def _name(index: int, endpoint: Endpoint) -> str:
    return f"endpoints[{index}] ({endpoint.name})"


def _unserved(index: int, endpoint: Endpoint, model: str) -> str:
    return (
        f"{_name(index, endpoint)}: {endpoint.provider} does not serve {model} by a model id Anvil knows;"
        f" map it under models: ({model}: <the {endpoint.provider} model id>)"
    )
