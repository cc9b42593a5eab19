"""Deterministic values generated from a JSON Schema: tool inputs (`input_schema`) and
structured answers (`output_config.format.schema`).

The subset covered: `type` (a list: its first non-null type), object (`properties`, `required`
always, other properties at random, `minProperties`, `additionalProperties`), array (`items`,
`prefixItems`, `minItems`, `maxItems`, `uniqueItems`), `enum`, `const`, `anyOf` / `oneOf` (the
first option), `allOf` (merged), string (`minLength`, `maxLength`, the common `format`s),
number and integer (`minimum`, `maximum`, their exclusive forms, an integral `multipleOf`),
boolean, null, and `$ref` to a JSON pointer in the same document (`#/$defs/X`). Not covered:
`pattern`, `not`, `if`/`then`, `dependentRequired` and the like."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any, TypeGuard

MAX_DEPTH = 6  # past it, only required properties and minimum item counts are filled
HARD_DEPTH = 24  # past it, objects and arrays are left empty (a schema with no finite value)
EXCLUSIVE_STEP = 0.001  # a number just inside an exclusive bound
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")
FORMATS = {
    "date": "2026-01-01",
    "date-time": "2026-01-01T00:00:00Z",
    "time": "12:00:00Z",
    "duration": "P1D",
    "email": "sim@example.com",
    "hostname": "example.com",
    "uri": "https://example.com/sim",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
}


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def bounds(schema: Mapping[str, Any], integer: bool) -> tuple[float | None, float | None]:
    """The inclusive range a number of `schema` may take (None: unbounded on that side)."""
    lows: list[float] = []
    highs: list[float] = []
    if _is_number(schema.get("minimum")):
        lows.append(float(schema["minimum"]))
    if _is_number(schema.get("maximum")):
        highs.append(float(schema["maximum"]))
    step = 1.0 if integer else EXCLUSIVE_STEP
    if _is_number(schema.get("exclusiveMinimum")):
        edge = float(schema["exclusiveMinimum"])
        lows.append(math.floor(edge) + 1.0 if integer else edge + step)
    if _is_number(schema.get("exclusiveMaximum")):
        edge = float(schema["exclusiveMaximum"])
        highs.append(math.ceil(edge) - 1.0 if integer else edge - step)
    return (max(lows) if lows else None), (min(highs) if highs else None)


def clamp_number(value: float, schema: Mapping[str, Any], integer: bool) -> int | float:
    """`value` moved into the range of `schema` (an integer when `integer`)."""
    low, high = bounds(schema, integer)
    if low is not None:
        value = max(value, math.ceil(low) if integer else low)
    if high is not None:
        value = min(value, math.floor(high) if integer else high)
    if integer:
        return round(value)
    return int(value) if float(value).is_integer() else value


class Filler:
    """Fills one schema document (its root holds the `$defs` that `$ref`s point into).
    `score`, when given, is the value of every numeric property named `score`."""

    def __init__(self, root: Mapping[str, Any], rng: random.Random, score: float | None = None) -> None:
        self.root = root
        self.rng = rng
        self.score = score

    def resolve(self, schema: Mapping[str, Any], seen: int = 0) -> Mapping[str, Any]:
        """`schema` with a `$ref` to this document followed (its own other keys kept)."""
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#") or seen > HARD_DEPTH:
            return schema
        target: Any = self.root
        for part in [p for p in ref[1:].split("/") if p]:
            key = part.replace("~1", "/").replace("~0", "~")
            if isinstance(target, Mapping) and key in target:
                target = target[key]
            elif isinstance(target, list) and key.isdigit() and int(key) < len(target):
                target = target[int(key)]
            else:
                return {k: v for k, v in schema.items() if k != "$ref"}
        if not isinstance(target, Mapping):
            return {}
        merged = {**target, **{k: v for k, v in schema.items() if k not in ("$ref", "$defs")}}
        return self.resolve(merged, seen + 1)

    def _merged(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        """An `allOf` folded into one schema: properties merged, `required` joined."""
        parts = [self.resolve(p) for p in schema["allOf"] if isinstance(p, Mapping)]
        out: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in parts:
            for key, value in part.items():
                if key == "properties" and isinstance(value, Mapping):
                    out["properties"] = {**out.get("properties", {}), **value}
                elif key == "required" and isinstance(value, list):
                    out["required"] = [*out.get("required", []), *value]
                else:
                    out.setdefault(key, value)
        return out

    def value(self, schema: Mapping[str, Any], name: str = "", depth: int = 0) -> Any:
        """A value that satisfies `schema`."""
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.rng.choice(schema["enum"])
        for combinator in ("anyOf", "oneOf"):
            options = schema.get(combinator)
            if isinstance(options, list) and options and isinstance(options[0], Mapping):
                return self.value(options[0], name, depth)
        if isinstance(schema.get("allOf"), list):
            return self.value(self._merged(schema), name, depth)
        kind = _pick_type(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, name, depth)
        if kind in ("integer", "number"):
            return self._number(schema, integer=kind == "integer")
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(schema, name)

    def _number(self, schema: Mapping[str, Any], integer: bool) -> int | float:
        low, high = bounds(schema, integer)
        if low is None:
            low = 0.0 if high is None or high >= 0 else high - 100
        if high is None:
            high = low + 100
        step = schema.get("multipleOf")
        if _is_number(step) and step > 0 and float(step).is_integer():
            first, last = math.ceil(low / step), math.floor(high / step)
            return int(step) * self.rng.randint(first, max(first, last))
        if integer:
            first = math.ceil(low)
            return self.rng.randint(first, max(first, math.floor(high)))
        return clamp_number(round(self.rng.uniform(low, high), 3), schema, integer=False)

    def _string(self, schema: Mapping[str, Any], name: str) -> str:
        known = FORMATS.get(str(schema.get("format")))
        if schema.get("format") == "uuid":
            known = f"{self.rng.getrandbits(32):08x}-0000-4000-8000-{self.rng.getrandbits(48):012x}"
        text = known or f"{name or 'value'}-{self.rng.choice(WORDS)}-{self.rng.randint(0, 999)}"
        min_len = schema.get("minLength", 0)
        text = text.ljust(int(min_len) if _is_number(min_len) else 0, "x")
        max_len = schema.get("maxLength")
        return text[: int(max_len)] if _is_number(max_len) else text

    def _array(self, schema: Mapping[str, Any], name: str, depth: int) -> list[Any]:
        low = int(schema.get("minItems", 1))
        high = int(schema.get("maxItems", max(low, 3)))
        count = low if depth > MAX_DEPTH else self.rng.randint(low, max(low, high))
        if depth > HARD_DEPTH:
            return []
        prefix = [p for p in schema.get("prefixItems") or [] if isinstance(p, Mapping)]
        items = schema.get("items")
        if items is False:
            count = min(count, len(prefix))
        item_schema = items if isinstance(items, Mapping) else {}
        out: list[Any] = []
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else item_schema
            value = self.value(sub, name, depth + 1)
            if schema.get("uniqueItems") is True and value in out:
                value = self._unique(sub, name, depth, out)
                if value is None:
                    break
            out.append(value)
        return out

    def _unique(self, sub: Mapping[str, Any], name: str, depth: int, out: list[Any]) -> Any:
        for _ in range(8):
            value = self.value(sub, name, depth + 1)
            if value not in out:
                return value
        return None

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        props = schema.get("properties")
        props = props if isinstance(props, Mapping) else {}
        if depth > HARD_DEPTH:
            return {}
        required = set(schema.get("required") or [])
        wanted = int(schema.get("minProperties", 0))
        out: dict[str, Any] = {}
        for key, sub in props.items():
            if key in required or (depth <= MAX_DEPTH and self.rng.random() < 0.5):
                out[key] = self._property(key, sub if isinstance(sub, Mapping) else {}, depth)
        for key, sub in props.items():
            if len(out) >= wanted:
                break
            if key not in out:
                out[key] = self._property(key, sub if isinstance(sub, Mapping) else {}, depth)
        extra = schema.get("additionalProperties", True)
        while len(out) < wanted and extra is not False:
            key = f"extra_{len(out)}"
            out[key] = self.value(extra if isinstance(extra, Mapping) else {}, key, depth + 1)
        return out

    def _property(self, key: str, sub: Mapping[str, Any], depth: int) -> Any:
        if key == "score" and self.score is not None:
            target = self.resolve(sub)
            kind = _pick_type(target) if "type" in target else "number"
            if kind in ("integer", "number") and "enum" not in target and "const" not in target:
                return clamp_number(self.score, target, integer=kind == "integer")
        return self.value(sub, key, depth + 1)


def _pick_type(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        real = [k for k in kind if k != "null"] or ["null"]
        return str(real[0])
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def fill(schema: Mapping[str, Any], rng: random.Random, name: str = "", depth: int = 0) -> Any:
    """A value that satisfies `schema` (a tool's `input_schema`)."""
    return Filler(schema, rng).value(schema, name, depth)
