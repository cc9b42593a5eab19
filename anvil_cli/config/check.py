"""Judge merged settings: schema errors and model-name checks, each traced to where the value came from."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from anvil_cli.config.settings import Settings, is_http_url
from anvil_cli.config.sources import Layer, Origin, origin_of
from anvil_cli.config.vault import environ_with_secrets
from anvil_cli.errors import ConfigError, Problem
from anvil_cli.input_limits import scan_value, short_repr
from anvil_cli.jobs.job import COMPLEXITIES
from anvil_cli.policy.pricing.table import known_models, suggest_model

_GLOB_CHARS = frozenset("*?[")


def check_settings(
    merged: Layer, env: Mapping[str, str] | None = None, *, variables: bool = False
) -> Settings:
    """Validate the merged values; raise ConfigError listing every problem, else return Settings.
    `env`: where the variables the settings name (a webhook's URL and headers) are read (default:
    this process's environment with the secrets the vault holds)."""
    problems = list(merged.problems)
    settings: Settings | None = None
    beyond = _beyond_limits(merged.values, merged.origins)
    if beyond:  # the schema is not shown a 5,000-digit integer or a value nested 600 deep
        raise ConfigError([*problems, *beyond])
    try:
        settings = Settings.model_validate(merged.values)
    except ValidationError as exc:
        problems.extend(_schema_problem(err, merged.origins) for err in exc.errors())
    problems.extend(_model_name_problems(merged.values, merged.origins))
    if problems or settings is None:
        raise ConfigError(problems)
    webhooks = (
        _webhook_problems(settings, environ_with_secrets() if env is None else env, merged.origins)
        if variables
        else []
    )
    if webhooks:
        raise ConfigError(webhooks)
    try:
        if not settings.state_dir.is_absolute():
            settings.state_dir = _absolute(settings.state_dir, "state_dir")
        run = settings.run  # sandbox paths: relative to where anvil starts, like state_dir
        run.tool_read_paths = [_absolute(p, "run.tool_read_paths") for p in run.tool_read_paths]
        run.tool_write_paths = [_absolute(p, "run.tool_write_paths") for p in run.tool_write_paths]
    except _NoHome as exc:
        raise ConfigError([_at(merged.origins, exc.field, str(exc))]) from None
    return settings


class _NoHome(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _absolute(path: Path, field: str) -> Path:
    """`path` made absolute (relative: to where anvil starts; `~` and `~user` expanded)."""
    try:
        path = path.expanduser()
    except RuntimeError:  # `~user` of no such user, or no home directory at all
        raise _NoHome(field, f"{str(path)!r} starts with a home directory that cannot be found") from None
    return path if path.is_absolute() else Path.cwd() / path


def _beyond_limits(values: dict[str, Any], origins: dict[str, Origin]) -> list[Problem]:
    """One problem per top-level setting holding a value beyond `anvil_cli.input_limits` (inf/nan, an
    integer beyond 64 bits, too deep, a lone surrogate from a non-UTF-8 environment)."""
    problems = []
    for key, value in values.items():
        found, _ = scan_value(value, str(key), depth=2)
        if found is not None:
            problems.append(_at(origins, found.path, found.message))
        elif (where := _nul_path(value, str(key))) is not None:  # a path or command would fail mid-run
            problems.append(_at(origins, where, "contains a NUL character"))
    return problems


def _nul_path(value: Any, path: str) -> str | None:
    """Where `value` holds a NUL (it is within the depth limit already, so recursion is safe)."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    children = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, child in children:
        where = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"
        found = _nul_path(key, where) if isinstance(key, str) else None
        found = found or _nul_path(child, where)
        if found:
            return found
    return None


def _webhook_problems(
    settings: Settings, env: Mapping[str, str], origins: dict[str, Origin]
) -> list[Problem]:
    """Each variable `alerts.webhooks` names must be set (a URL: to an http(s) one; a header value:
    without control characters). A problem names the setting and the variable, never its value."""
    problems = []
    for i, hook in enumerate(settings.alerts.webhooks):
        named = [("url_env", hook.url_env)] if hook.url_env else []
        named += [(f"headers.{header}", name) for header, name in hook.headers.items()]
        for field, name in named:
            value = env.get(name)
            message = None
            if not value:
                message = f"the variable {name} is not set"
            elif field == "url_env" and not is_http_url(value):
                message = f"the variable {name} does not hold an http(s) URL (its value is not shown)"
            elif not value.isprintable():
                message = f"the variable {name} contains control characters (its value is not shown)"
            if message:
                problems.append(_at(origins, f"alerts.webhooks[{i}].{field}", message))
    return problems


# -- schema errors -----------------------------------------------------------------------------


def _loc_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path


def _schema_problem(err: ErrorDetails, origins: dict[str, Origin]) -> Problem:
    loc = tuple(err["loc"])
    ctx = err.get("ctx") or {}
    if err["type"] == "cross_field" and "field" in ctx:  # `endpoints.1.name`: a list index is an int
        loc = (*loc, *(int(p) if p.isdigit() else p for p in str(ctx["field"]).split(".")))
    path = _loc_path(loc)
    if err["type"] == "extra_forbidden":
        message = _unknown_key_message(loc)
    elif err["type"] in ("missing", "cross_field"):
        message = err["msg"]
    else:
        message = f"{err['msg']}; got {_shown(err.get('input'))}"
    return _at(origins, path, message)


def _at(origins: dict[str, Origin], path: str, message: str) -> Problem:
    origin = origin_of(origins, path)
    return Problem(origin.file, message, line=origin.line, field=path or None)


def _shown(value: Any) -> str:
    return short_repr(value)


def _unknown_key_message(loc: tuple[int | str, ...]) -> str:
    key = str(loc[-1])
    allowed = _allowed_keys(loc[:-1])
    if not allowed:
        return f"unknown key {short_repr(key)}"
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key {short_repr(key)}; did you mean {close[0]!r}?"
    return f"unknown key {short_repr(key)} (allowed: {', '.join(allowed)})"


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The field names of the settings section at `loc` (dict keys like model ids are skipped)."""
    cls: type[BaseModel] = Settings
    parts = list(loc)
    while parts:
        field = cls.model_fields.get(str(parts.pop(0)))
        if field is None:
            return []
        annotation = field.annotation
        if get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
            if not parts:
                return []
            parts.pop(0)  # the dict key (a model id)
        if not (inspect.isclass(annotation) and issubclass(annotation, BaseModel)):
            return []
        cls = annotation
    return list(cls.model_fields)


# -- model names -------------------------------------------------------------------------------


def _model_pool(values: dict[str, Any]) -> list[str]:
    prices = values.get("prices")
    extra = [str(m) for m in prices] if isinstance(prices, dict) else []
    known = known_models()
    return [*known, *(m for m in extra if m not in known)]


def _model_name_problems(values: dict[str, Any], origins: dict[str, Origin]) -> list[Problem]:
    """Rate-limit keys and routing targets must name known models (checked on the raw values)."""
    pool = _model_pool(values)
    rate_limits = values.get("rate_limits")
    keys = [str(k) for k in rate_limits] if isinstance(rate_limits, dict) else []
    problems = [
        _at(origins, f"rate_limits.{key}", _rate_limit_key_message(key, pool))
        for key in keys
        if key != "default" and not _matches_model(key, pool)
    ]
    routing = values.get("routing")
    if isinstance(routing, dict):
        problems.extend(_routing_problems(routing, pool, origins))
    return problems


def _routing_problems(routing: dict[str, Any], pool: list[str], origins: dict[str, Origin]) -> list[Problem]:
    named: list[tuple[str, Any]] = [(f"routing.{lvl}", routing.get(lvl)) for lvl in COMPLEXITIES]
    fallbacks = routing.get("fallbacks")
    if isinstance(fallbacks, dict):
        for model, chain in fallbacks.items():
            named.append((f"routing.fallbacks.{model}", model))
            if isinstance(chain, list):
                named.extend((f"routing.fallbacks.{model}[{i}]", m) for i, m in enumerate(chain))
    return [
        _at(origins, path, _unknown_model(model, pool))
        for path, model in named
        if isinstance(model, str) and model not in pool
    ]


def _matches_model(key: str, pool: list[str]) -> bool:
    if key in pool:
        return True
    return bool(_GLOB_CHARS & set(key)) and bool(fnmatch.filter(pool, key))


def _rate_limit_key_message(key: str, pool: list[str]) -> str:
    if _GLOB_CHARS & set(key):
        return f"the pattern {short_repr(key)} matches no known model (known: {', '.join(pool)})"
    return _unknown_model(key, pool) + " (a rate_limits key is 'default', a model id or a glob)"


def _unknown_model(model: str, pool: list[str]) -> str:
    close = suggest_model(model, pool) if len(model) <= 200 else None
    if close:
        return f"unknown model {short_repr(model)}; did you mean {close!r}?"
    return f"unknown model {short_repr(model)} (known: {', '.join(pool)}; add others under 'prices:')"
