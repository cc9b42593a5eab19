"""Where settings come from: the config file, `ANVIL_*` variables, flags; each value remembers its origin.

Every value read is tagged with an `Origin` (a file and line, an environment variable, or the
command line) so that a problem found later can say exactly where the bad value came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from anvil_cli.errors import Problem
from anvil_cli.yamlpos import NodeLoader, error_position, line_of, parse_scalar, to_python, walk_lines

ENV_PREFIX = "ANVIL_"
FLAGS = "command line"
# settings that are lists of sections: `ANVIL_ENDPOINTS__0__NAME` numbers their entries
LIST_SECTIONS = ("endpoints",)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where one setting's value came from."""

    file: str
    line: int | None = None
    env_var: str | None = None


@dataclass(slots=True)
class Layer:
    """One source's values as a nested dict, and the origin of each dotted path in it."""

    values: dict[str, Any]
    origins: dict[str, Origin]
    problems: list[Problem]


def empty_layer() -> Layer:
    return Layer({}, {}, [])


# -- the config file ---------------------------------------------------------------------------


def read_file_layer(path: Path) -> Layer:
    """Read a config file; a missing, unreadable, non-UTF-8 or malformed file yields problems."""
    name = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Layer({}, {}, [Problem(name, "config file not found")])
    except IsADirectoryError:
        return Layer({}, {}, [Problem(name, "is a directory, not a config file")])
    except OSError as exc:
        return Layer({}, {}, [Problem(name, f"cannot read config file: {exc.strerror or exc}")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        msg = f"not valid UTF-8 (byte offset {exc.start}): save the file as UTF-8"
        return Layer({}, {}, [Problem(name, msg, line=line)])
    return _parse_file_text(name, text)


def _parse_file_text(name: str, text: str) -> Layer:
    loader = NodeLoader(text)
    try:
        node = loader.get_single_node()
        value = to_python(loader, node) if node is not None else None
    except yaml.YAMLError as exc:
        pos = error_position(exc)
        return Layer({}, {}, [Problem(name, pos.message, line=pos.line, column=pos.column)])
    finally:
        loader.dispose()
    if value is None or node is None:
        return Layer({}, {}, [])  # an empty document means "all defaults"
    if not isinstance(value, dict):
        got = type(value).__name__
        return Layer({}, {}, [Problem(name, f"expected a mapping of settings, got {got}", line=1)])
    lines: dict[str, int] = {}
    problems: list[Problem] = []
    for path, line, first in walk_lines(node, max_depth=6):
        lines[path] = line
        if first is not None:
            msg = f"duplicate key (first at line {first}); the last one would win"
            problems.append(Problem(name, msg, line=line, field=path))
    origins = {p: Origin(name, line) for p, line in lines.items()}
    origins[""] = Origin(name, line_of(node))
    return Layer(value, origins, problems)


# -- environment variables ---------------------------------------------------------------------


def read_env_layer(env: Mapping[str, str], top_level: set[str]) -> Layer:
    """`ANVIL_SCALING__WORKERS=4` → {"scaling": {"workers": 4}}; values are parsed as YAML scalars.

    A value written as YAML or JSON flow text is a list or a mapping: `ANVIL_ENDPOINTS='[{name:
    a, api_key_env: KEY_A}]'`, `ANVIL_SHARED_LIMITS='{org: {endpoints: [a, b]}}'` (a mapping
    only when the text starts with `{`: `echo a: b` stays text). The entries of a list of
    sections (`endpoints`) are numbered from 0: `ANVIL_ENDPOINTS__0__NAME=a`; a number sets that
    field of the file's entry, or adds one right after the last (`merge_layers`).

    Variables whose first part is not a settings section (e.g. `ANVIL_DEBUG`) belong to
    something else and are ignored, unless the name is a likely misspelling of a section.
    """
    layer = empty_layer()
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or len(var) == len(ENV_PREFIX):
            continue
        parts = [p.lower() for p in var[len(ENV_PREFIX) :].split("__")]
        if parts[0] not in top_level:
            _maybe_misspelt(var, parts[0], top_level, layer)
            continue
        if any(not p for p in parts):
            layer.problems.append(Problem(_env_name(var), "empty name part: use '__' between levels"))
            continue
        _set_env_value(layer, var, parts, env[var])
    return layer


def _env_name(var: str) -> str:
    return f"environment variable {var}"


def _maybe_misspelt(var: str, head: str, top_level: set[str], layer: Layer) -> None:
    import difflib

    close = difflib.get_close_matches(head, sorted(top_level), n=1, cutoff=0.8)
    if close:
        want = ENV_PREFIX + close[0].upper()
        msg = f"unknown setting {head!r}; did you mean {close[0]!r} ({want}...)?"
        layer.problems.append(Problem(_env_name(var), msg))


def _set_env_value(layer: Layer, var: str, parts: list[str], raw: str) -> None:
    value = parse_scalar(raw) if raw.strip() else None  # not YAML: the text, for the schema to judge
    if isinstance(value, dict) and not raw.lstrip().startswith("{"):
        value = raw  # `echo a: b` is a command, not a mapping
    parts = _env_model_keys(parts)
    if parts[0] in LIST_SECTIONS and len(parts) > 1 and not parts[1].isdigit():
        msg = f"{parts[0]} is a list: number its entries from 0 ({ENV_PREFIX}{parts[0].upper()}__0__...)"
        layer.problems.append(Problem(_env_name(var), msg))
        return
    target = layer.values
    for part in parts[:-1]:
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            msg = f"conflicts with another variable setting {part!r}"
            layer.problems.append(Problem(_env_name(var), msg))
            return
        target = child
    target[parts[-1]] = value
    origin = Origin(_env_name(var), env_var=var)
    layer.origins[_path_of(parts)] = origin
    if parts[0] in LIST_SECTIONS and len(parts) > 2:  # a field missing from the entry: its first variable
        layer.origins.setdefault(_path_of(parts[:2]), origin)


def _path_of(parts: list[str]) -> str:
    """The dotted path of `parts` as schema errors name it: `endpoints[0].name`."""
    if parts[0] in LIST_SECTIONS and len(parts) > 1:
        return ".".join([f"{parts[0]}[{parts[1]}]", *parts[2:]])
    return ".".join(parts)


# keys naming a model (a model id cannot hold `-` in a variable name: CLAUDE_HAIKU_4_5)
_MODEL_KEYED = ("rate_limits", "prices", "models")


def _env_model_keys(parts: list[str]) -> list[str]:
    """`RATE_LIMITS__CLAUDE_HAIKU_4_5__...`, `ENDPOINTS__0__MODELS__CLAUDE_SONNET_4_6`: the model id."""
    from anvil_cli.policy.pricing.table import known_models

    out = list(parts)
    for i, part in enumerate(parts[:-1]):
        key = parts[i + 1]
        if part in _MODEL_KEYED and key != "default" and key.replace("_", "-") in known_models():
            out[i + 1] = key.replace("_", "-")
    return out


# -- flags -------------------------------------------------------------------------------------


def flags_layer(overrides: Mapping[str, Any]) -> Layer:
    """Command-line overrides as a layer; a None value means "flag not given" and is dropped."""
    layer = empty_layer()
    layer.values = _drop_none(overrides, "", layer.origins)
    return layer


def _drop_none(values: Mapping[str, Any], prefix: str, origins: dict[str, Origin]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            value = _drop_none(value, path, origins)
            if not value:
                continue
        elif value is None:
            continue
        out[str(key)] = value
        origins[path] = Origin(FLAGS)
    return out


# -- merging -----------------------------------------------------------------------------------


def merge_layers(layers: list[Layer]) -> Layer:
    """Later layers win, key by key (nested mappings are merged, other values replaced)."""
    merged = empty_layer()
    for layer in layers:
        values = dict(layer.values)
        for name in LIST_SECTIONS:  # entries numbered by variables: over the list below, by number
            if _is_numbered(values.get(name)):
                below = merged.values.get(name)
                below = below if isinstance(below, list) else []
                merged.values[name] = _numbered_list(name, values.pop(name), below, merged)
        merged.values = _deep_merge(merged.values, values)
        merged.problems.extend(layer.problems)
        for path, origin in layer.origins.items():
            merged.origins[path] = origin
    return merged


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _is_numbered(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(str(k).isdigit() for k in value)


def _numbered_list(name: str, numbered: dict[str, Any], below: list[Any], merged: Layer) -> list[Any]:
    """`{"0": {...}, "1": {...}}` over the list `below`: entry i's fields set over its entry there,
    entries right after its last added. A gap (ANVIL_ENDPOINTS__3__ with 2 entries) is a problem."""
    out = list(below)
    for index in sorted(numbered, key=int):
        i, entry = int(index), numbered[index]
        if i < len(out) and isinstance(out[i], dict) and isinstance(entry, Mapping):
            out[i] = _deep_merge(out[i], entry)
        elif i <= len(out):
            out[i : i + 1] = [entry]
        else:
            msg = f"{name}[{i}]: there is no {name}[{len(out)}]; number the entries from 0 without gaps"
            merged.problems.append(Problem(_env_name(f"{ENV_PREFIX}{name.upper()}__{i}__..."), msg))
    return out


def origin_of(origins: dict[str, Origin], path: str) -> Origin:
    """The origin of `path` (or of its nearest ancestor that has one)."""
    probe = path
    while probe:
        if probe in origins:
            return origins[probe]
        cut = max(probe.rfind("."), probe.rfind("["))  # `endpoints[1].region` → `endpoints[1]` → `endpoints`
        probe = probe[:cut] if cut > 0 else ""
    file_origin = origins.get("")
    return file_origin or Origin("settings")
