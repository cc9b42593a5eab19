"""A job as a Messages API request, the same in every mode (a worker's agent, a Message Batch):
the model routing picks, the result cache's key, the params as the API must see them (no
Anvil-only tool keys, prompt caching marked), the digest of their cached prefix and the tools
Anvil runs itself.

A job with an output schema asks for it in the request (`with_output_schema`): as the API's
native structured-output format (`output_config.format`, the schema narrowed to what the API
supports by the SDK's own `anthropic.transform_schema`) under `checks.native_format`, else as
an instruction at the end of the system prompt. Either way the schema is part of the request
as asked, so of the result cache's key. Every answer is validated client-side as well
(`policy/checks/schema.py`), whichever way it was asked."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from anvil_cli.config.settings import Settings
from anvil_cli.engine.result_cache import request_key
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.toolspec import COMMAND_KEY, split_tools
from anvil_cli.policy.checks.schema import schema_instruction
from anvil_cli.policy.prompt_caching import mark_prompt_cache, prefix_digest
from anvil_cli.policy.routing import model_for
from anvil_cli.policy.tokens import estimate_input_tokens


@dataclass(frozen=True, slots=True)
class Request:
    """One job's request, ready to send."""

    model: str
    asked: dict[str, Any]  # the request as the job asks it, Anvil's keys included
    params: dict[str, Any]  # as the API must see it
    tools: dict[str, list[str]]  # the tools Anvil runs itself: name -> argv
    commands: bool  # a tool names a command (`anvil_command`), runnable or not
    est_input: int  # input tokens, estimated
    # a digest of the model and the prompt prefix the API caches (None: nothing cached): the
    # governor sends calls sharing one to the endpoint whose cache holds it
    affinity: str | None = None

    @property
    def key(self) -> str:
        """The result cache's key: a digest of the request as asked (made when asked for: a run
        without the result cache has no use for it)."""
        return request_key(self.asked)


def prepare_request(job: Job, settings: Settings) -> Request:
    """The request of `job` under `settings` (routing, prompt caching, its output schema)."""
    model = model_for(job, settings.routing)
    asked = job.request(model)
    if job.output_schema is not None:
        asked = with_output_schema(asked, job.output_schema, native=settings.checks.native_format)
    params, tools = split_tools(asked)
    if settings.cache.prompt_caching:
        params = mark_prompt_cache(params, settings.cache.prompt_caching_min_chars)
    return Request(
        model=model,
        asked=asked,
        params=params,
        tools=tools,
        commands=_uses_commands(asked),
        est_input=estimate_input_tokens(params),
        affinity=prefix_digest(params),
    )


def with_output_schema(
    request: Mapping[str, Any], schema: Mapping[str, Any], *, native: bool
) -> dict[str, Any]:
    """`request` asking for an answer that matches `schema`: natively (`output_config.format`,
    any other `output_config` key the request has, e.g. `effort`, kept) or, when not `native`
    or the SDK cannot narrow the schema to what the API supports, by the system prompt."""
    out = dict(request)
    if native:
        from anthropic import transform_schema  # only here: a driver need not import the SDK

        try:
            narrowed = transform_schema(copy.deepcopy(dict(schema)))  # never the job's own
        except (ValueError, TypeError, KeyError):  # e.g. a schema without a `type`: say it instead
            narrowed = None
        if narrowed is not None:
            config = out.get("output_config")
            kept = dict(config) if isinstance(config, Mapping) else {}
            out["output_config"] = {**kept, "format": {"type": "json_schema", "schema": narrowed}}
            return out
    out["system"] = _with_instruction(out.get("system"), schema_instruction(schema))
    return out


def _with_instruction(system: Any, instruction: str) -> str | list[dict[str, Any]]:
    """The system prompt with `instruction` after it (a list of blocks gets a block more)."""
    if isinstance(system, list):
        return [*system, {"type": "text", "text": instruction}]
    if isinstance(system, str) and system:
        return f"{system}\n\n{instruction}"
    return instruction


def _uses_commands(request: dict[str, Any]) -> bool:
    tools = request.get("tools") or []
    return any(isinstance(tool, dict) and COMMAND_KEY in tool for tool in tools)
