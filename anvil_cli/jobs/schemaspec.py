"""A job's `output_schema:`: a JSON Schema written inline, or `{"$file": "schemas/answer.json"}`
(a JSON or YAML file, relative to the batch file's directory; read once per batch), checked with
`policy.checks.schema.schema_problem`. Problems name the field where the schema is wrong
(`output_schema.properties.x.type`)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, cast

import yaml

from anvil_cli.input_limits import MAX_REQUEST_BYTES, plain, scan_value, short_repr
from anvil_cli.jobs.fields import Checker, type_name
from anvil_cli.policy.checks.schema import schema_problem
from anvil_cli.yamlpos import NodeLoader, error_position, to_python

FILE_KEY = "$file"
JSON_SUFFIXES = (".json",)
MAX_REMEMBERED = 256  # distinct inline schemas remembered per batch


class SchemaReader:
    """Checks output schemas for one batch; `base_dir` None: `$file` is refused (`POST /jobs`)."""

    def __init__(self, base_dir: Path | None) -> None:
        self.base_dir = base_dir
        self._files: dict[Path, tuple[dict[str, Any] | None, str | None]] = {}
        self._last_ok: Any = None  # the last inline schema found valid (shared by many jobs)
        # inline schemas seen, as canonical JSON → (problem, where in the schema) or None when
        # valid: checking one takes ~2 ms, and a JSONL batch written by a program repeats the
        # same schema on each of its 100,000 lines
        self._seen: dict[str, tuple[str, str] | None] = {}

    def __call__(self, value: Any, ck: Checker, field: str = "output_schema") -> dict[str, Any] | None:
        if value is None:
            return None
        if isinstance(value, dict) and FILE_KEY in value:
            return self._from_file(value, ck, field)
        if value is self._last_ok:
            return cast(dict[str, Any], value)
        key = _canonical(value)
        if key is not None and key in self._seen:
            found = self._seen[key]
        else:
            problem = schema_problem(value)
            found = None if problem is None else (problem, _where(value))
            self._remember(key, found)
        if found is not None:
            ck.fail(field + found[1], found[0])
            return None
        self._last_ok = value
        return cast(dict[str, Any], value)

    def _remember(self, key: str | None, found: tuple[str, str] | None) -> None:
        if key is None:
            return
        if len(self._seen) >= MAX_REMEMBERED:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = found

    def _from_file(self, value: dict[str, Any], ck: Checker, field: str) -> dict[str, Any] | None:
        where = f"{field}.{FILE_KEY}"
        if len(value) != 1:
            ck.fail(field, f"give either an inline schema or {{{FILE_KEY}: path}} alone, not both")
            return None
        name = value[FILE_KEY]
        if not isinstance(name, str) or not name.strip() or "\x00" in name:
            ck.fail(where, f"expected a file path, got {type_name(name)}")
            return None
        if self.base_dir is None:
            ck.fail(where, f"{FILE_KEY} is not available here: give the schema inline")
            return None
        path = self.base_dir / name
        try:
            key = path.resolve()
        except (OSError, RuntimeError) as exc:
            ck.fail(where, f"cannot read {short_repr(name)}: {exc}")
            return None
        if key not in self._files:
            self._files[key] = _load(path)
        schema, problem = self._files[key]
        if problem is not None:
            ck.fail(where, f"{plain(name)}: {problem}")
        return schema


def _canonical(value: Any) -> str | None:
    """`value` as canonical JSON (a cache key), or None when it has none (a non-text key)."""
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return None


def _where(schema: Any) -> str:
    """Where in `schema` the metaschema finds it wrong, as a field suffix (`.properties.x.type`)."""
    # imported here: jsonschema (~30 ms) only for a batch with schemas (see `schema_problem`)
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return "".join(f".{p}" for p in exc.absolute_path)
    except Exception:  # a field name is a nicety; the problem itself is reported
        return ""
    return ""


def _load(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(schema, None) or (None, why not) for a schema file."""
    try:
        if not path.is_file():
            return None, "file not found (paths are relative to the batch file)"
        with path.open("rb") as fh:
            data = fh.read(MAX_REQUEST_BYTES + 1)
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    if len(data) > MAX_REQUEST_BYTES:
        return None, f"larger than {MAX_REQUEST_BYTES / 1e6:,.0f} MB"
    value, problem = _parse(data, path)
    if problem is not None:
        return None, problem
    found, _ = scan_value(value)
    if found is not None:
        return None, f"{found.path + ': ' if found.path else ''}{found.message}"
    problem = schema_problem(value)
    if problem is not None:
        return None, problem
    return value, None


def _parse(data: bytes, path: Path) -> tuple[Any, str | None]:
    if path.suffix.lower() in JSON_SUFFIXES:
        try:
            return json.loads(data), None
        except UnicodeDecodeError as exc:
            return None, f"not valid UTF-8 (byte {exc.start + 1}): save the file as UTF-8"
        except json.JSONDecodeError as exc:
            return None, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        except (ValueError, RecursionError) as exc:
            return None, f"invalid JSON: {exc}"
    loader = NodeLoader(io.BytesIO(data))
    try:
        node = loader.get_single_node()
        return (to_python(loader, node) if node is not None else None), None
    except yaml.YAMLError as exc:
        pos = error_position(exc)
        at = f" at line {pos.line}" if pos.line is not None else ""
        return None, f"invalid YAML{at}: {pos.message}"
    finally:
        loader.dispose()
