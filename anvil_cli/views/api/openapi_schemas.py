"""The schemas of the API's OpenAPI document written by hand (`components.schemas`): the jobs
of `POST /jobs` in both shapes, one job's state, the error body; with the small builders the
paths use too (`ref`, `closed`). The status body's schemas are translated from TypedDicts
instead (`typed_schema`); the paths are in `openapi`.
"""

from __future__ import annotations

from typing import Final

from anvil_cli.engine.journal.rows import JOB_STATES
from anvil_cli.input_limits import INT64_MAX, INT64_MIN, MAX_ID_CHARS
from anvil_cli.jobs.fields import MAX_TOKENS_LIMIT, PRIORITY_NAMES, ROLES, TOOL_CHOICE_TYPES
from anvil_cli.jobs.job import COMPLEXITIES
from anvil_cli.jobs.jobspec import CUSTOM_ID, MB_EXTRA
from anvil_cli.views.api.bodies import MAX_JOBS_PER_REQUEST
from anvil_cli.views.api.typed_schema import JsonSchema

REF: Final = "#/components/schemas/"


def ref(name: str) -> JsonSchema:
    return {"$ref": REF + name}


def closed(required: dict[str, JsonSchema], description: str = "") -> JsonSchema:
    """An object with exactly these keys."""
    schema: JsonSchema = {
        "type": "object",
        "properties": required,
        "required": list(required),
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


def written_schemas() -> dict[str, JsonSchema]:
    """Every schema written here, by name."""
    error: JsonSchema = {
        "type": "object",
        "properties": {
            "error": {"type": "string", "description": "What went wrong, for a person."},
            "problems": {
                "type": "array",
                "items": {"type": "string"},
                "description": "POST /jobs: every problem found in the jobs.",
            },
        },
        "required": ["error"],
        "additionalProperties": False,
    }
    return {"Error": error, **_job_schemas()}


def _nullable(schema: JsonSchema) -> JsonSchema:
    return {"anyOf": [schema, {"type": "null"}]}


def _job_schemas() -> dict[str, JsonSchema]:
    """The jobs of `POST /jobs` (Anvil's shape or a Message Batches request) and `GET /jobs/{id}`."""
    text = {"type": "string", "minLength": 1}
    blocks = {"type": "array", "minItems": 1, "items": ref("ContentBlock")}
    anvil_job = {
        "type": "object",
        "description": "A job in Anvil's shape: `prompt` or `messages`, not both.",
        "properties": {
            "id": {
                "anyOf": [
                    {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS},
                    {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
                    {"type": "null"},
                ],
                "description": "Unique in the run; generated when absent or null.",
            },
            "prompt": text,
            "messages": ref("Messages"),
            "system": {"anyOf": [{"type": "string"}, blocks, {"type": "null"}]},
            "model": {"type": "string", "description": "A model id, or `auto`."},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_TOKENS_LIMIT},
            "priority": {"enum": list(PRIORITY_NAMES)},
            "complexity": {"enum": [*COMPLEXITIES, None]},
            "metadata": {"type": "object"},
            "tools": ref("Tools"),
            "tool_choice": ref("ToolChoice"),
            "stop_sequences": {"type": "array", "items": text},
            "output_schema": {
                "anyOf": [{"type": "object"}, {"type": "null"}],
                "description": "A JSON Schema the answer must match (docs/checks.md); not `$file` here.",
            },
            "checks": {
                "type": "array",
                "items": {"type": "object"},
                "description": "Checks of the answer (docs/checks.md).",
            },
        },
        "oneOf": [{"required": ["prompt"]}, {"required": ["messages"]}],
        "additionalProperties": False,
    }
    params = {
        "type": "object",
        "description": "Messages API parameters.",
        "properties": {
            "model": {"type": "string"},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_TOKENS_LIMIT},
            "messages": ref("Messages"),
            "system": {"anyOf": [{"type": "string"}, blocks, {"type": "null"}]},
            **{key: {} for key in MB_EXTRA},
            "tools": ref("Tools"),
            "tool_choice": ref("ToolChoice"),
            "stop_sequences": {"type": "array", "items": text},
        },
        "required": ["model", "max_tokens", "messages"],
        "additionalProperties": False,
    }
    batch_request = closed(
        {"custom_id": {"type": "string", "pattern": CUSTOM_ID.pattern}, "params": params},
        "A job in the Message Batches request shape.",
    )
    job_list = {"type": "array", "minItems": 1, "items": ref("Job")}
    return {
        "Job": {"anyOf": [ref("AnvilJob"), ref("MessageBatchRequest")]},
        "AnvilJob": anvil_job,
        "MessageBatchRequest": batch_request,
        "JobsBody": {
            "description": f"A job, a list of jobs or `{{'jobs': [...]}}`; {MAX_JOBS_PER_REQUEST:,} at most.",
            "anyOf": [ref("Job"), job_list, closed({"jobs": job_list})],
        },
        "Messages": {
            "type": "array",
            "minItems": 1,
            "items": closed({"role": {"enum": list(ROLES)}, "content": {"anyOf": [text, blocks]}}),
        },
        "ContentBlock": {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}},
        "Tools": {
            "type": "array",
            "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
            "description": "Tool definitions (tools that run a local command cannot be added over HTTP).",
        },
        "ToolChoice": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": list(TOOL_CHOICE_TYPES)}},
            "if": {"properties": {"type": {"const": "tool"}}},
            "then": {"required": ["name"], "properties": {"name": {"type": "string"}}},
            "description": "Passed to the API as given; `name` (the tool's) is checked for type `tool`.",
        },
        "JobState": _job_state(),
    }


def _job_state() -> JsonSchema:
    """`GET /jobs/{id}`: the job's result line (as `anvil export` writes it), its state, priority."""
    number, string, obj = {"type": "number"}, {"type": "string"}, {"type": "object"}
    schema = closed(
        {
            "id": string,
            "status": {"enum": ["pending", "succeeded", "failed"]},
            "model": _nullable(string),
            "output": _nullable(string),
            "stop_reason": _nullable(string),
            "usage": _nullable(obj),
            "cost_usd": number,
            "attempts": {"type": "integer"},
            "latency_s": _nullable(number),
            "error": _nullable(obj),
            "tool_errors": {"type": "integer", "minimum": 0},
            "tool_error": _nullable(
                closed({"tool": _nullable(string), "kind": string, "message": _nullable(string)})
            ),
            "metadata": obj,
            "state": {"enum": list(JOB_STATES)},
            "priority": _nullable({"type": "integer"}),
        },
        "One job: `status` as in the results file, `state` as in the journal (pending, running, ...).",
    )
    schema["properties"]["endpoint"] = {  # not required: only on a run with named endpoints
        "type": "string",
        "description": "The named endpoint (`endpoints:`) of the job's last call.",
    }
    return schema
