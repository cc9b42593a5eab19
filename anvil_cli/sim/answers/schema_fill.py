"""Deterministic tool inputs generated from a tool's JSON `input_schema`."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

MAX_DEPTH = 6
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")


def _pick_type(schema: Mapping[str, Any], rng: random.Random) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        real = [k for k in kind if k != "null"] or ["null"]
        return str(real[0])
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _number(schema: Mapping[str, Any], rng: random.Random, integer: bool) -> int | float:
    low = float(schema.get("minimum", schema.get("exclusiveMinimum", 0)))
    high = float(schema.get("maximum", schema.get("exclusiveMaximum", low + 100)))
    if integer:
        return rng.randint(int(low), max(int(low), int(high)))
    return round(rng.uniform(low, high), 3)


def _string(schema: Mapping[str, Any], rng: random.Random, name: str) -> str:
    text = f"{name or 'value'}-{rng.choice(WORDS)}-{rng.randint(0, 999)}"
    min_len = int(schema.get("minLength", 0))
    max_len = schema.get("maxLength")
    text = text.ljust(min_len, "x")
    return text[: int(max_len)] if isinstance(max_len, int) else text


def _array(schema: Mapping[str, Any], rng: random.Random, name: str, depth: int) -> list[Any]:
    low = int(schema.get("minItems", 1))
    high = int(schema.get("maxItems", max(low, 3)))
    count = rng.randint(low, max(low, high))
    items = schema.get("items")
    item_schema = items if isinstance(items, Mapping) else {}
    return [fill(item_schema, rng, name, depth + 1) for _ in range(count)]


def _object(schema: Mapping[str, Any], rng: random.Random, depth: int) -> dict[str, Any]:
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return {}
    required = set(schema.get("required") or [])
    out: dict[str, Any] = {}
    for key, sub in props.items():
        if key in required or rng.random() < 0.5:
            out[key] = fill(sub if isinstance(sub, Mapping) else {}, rng, key, depth + 1)
    return out


def fill(schema: Mapping[str, Any], rng: random.Random, name: str = "", depth: int = 0) -> Any:
    """A value that satisfies `schema` (the common JSON Schema subset tools use)."""
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return rng.choice(schema["enum"])
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options and isinstance(options[0], Mapping):
            return fill(options[0], rng, name, depth)
    kind = _pick_type(schema, rng)
    if depth > MAX_DEPTH and kind in ("object", "array"):
        return {} if kind == "object" else []
    if kind == "object":
        return _object(schema, rng, depth)
    if kind == "array":
        return _array(schema, rng, name, depth)
    if kind in ("integer", "number"):
        return _number(schema, rng, integer=kind == "integer")
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _string(schema, rng, name)
