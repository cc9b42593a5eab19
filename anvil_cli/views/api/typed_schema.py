"""JSON Schema (2020-12, as OpenAPI 3.1 uses it) from the TypedDicts that type Anvil's JSON.

`SchemaSet.ref(RunStatus)` returns `{"$ref": "#/components/schemas/RunStatus"}` and collects the
schema of every TypedDict reached on the way in `SchemaSet.schemas`: each key of a TypedDict is
required (every key of a snapshot is always present), `X | None` is nullable, extra keys are
refused (`additionalProperties: false`) except inside `dict[str, Any]`. The TypedDicts stay the
one description of the shape; this only translates them. (pydantic refuses `typing.TypedDict`
before Python 3.12, and the snapshot's types are plain `typing` ones.)
"""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

JsonSchema = dict[str, Any]
SCALARS: dict[object, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


class SchemaSet:
    """The component schemas of some TypedDicts, built on demand, each once."""

    def __init__(self, prefix: str = "#/components/schemas/") -> None:
        self.prefix = prefix
        self.schemas: dict[str, JsonSchema] = {}

    def ref(self, typed_dict: type) -> JsonSchema:
        """A `$ref` to the schema of `typed_dict` (built, with those it refers to, on first use)."""
        name = typed_dict.__name__
        if name not in self.schemas:
            self.schemas[name] = {}  # reserved first: a TypedDict may refer to itself
            self.schemas[name] = self._object(typed_dict)
        return {"$ref": self.prefix + name}

    def _object(self, typed_dict: type) -> JsonSchema:
        hints = get_type_hints(typed_dict)
        schema: JsonSchema = {
            "type": "object",
            "properties": {key: self.of(hint) for key, hint in hints.items()},
            "required": sorted(typed_dict.__required_keys__),  # type: ignore[attr-defined]
            "additionalProperties": False,
        }
        if typed_dict.__doc__:  # its own docstring (a class's docstring is not inherited)
            schema["description"] = " ".join(typed_dict.__doc__.split())
        return schema

    def of(self, hint: Any) -> JsonSchema:
        """The schema of one type hint."""
        if hint is Any:
            return {}
        if hint is type(None):
            return {"type": "null"}
        if hint in SCALARS:
            return {"type": SCALARS[hint]}
        if is_typeddict(hint):
            return self.ref(hint)
        origin, args = get_origin(hint), get_args(hint)
        if origin is Literal:
            return {"enum": list(args)}
        if origin is list:
            return {"type": "array", "items": self.of(args[0])}
        if origin is dict:
            if args and args[0] is not str:
                raise TypeError(f"JSON object keys are strings, not {args[0]!r}")
            values = self.of(args[1]) if args else {}
            return {"type": "object", "additionalProperties": values or True}
        if origin in (Union, types.UnionType):
            return self._union(args)
        raise TypeError(f"no JSON Schema for {hint!r}")

    def _union(self, args: tuple[Any, ...]) -> JsonSchema:
        parts = [self.of(arg) for arg in args]
        if all(set(p) == {"type"} and isinstance(p["type"], str) for p in parts):
            return {"type": [p["type"] for p in parts]}  # int | None -> ["integer", "null"]
        return {"anyOf": parts}
