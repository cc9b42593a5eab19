"""A job as a Messages API request, the same in every mode (a worker's agent, a Message Batch):
the model routing picks, the result cache's key, the params as the API must see them (no
Anvil-only tool keys, prompt caching marked), the digest of their cached prefix and the tools
Anvil runs itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anvil_cli.config.settings import Settings
from anvil_cli.engine.result_cache import request_key
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.toolspec import COMMAND_KEY, split_tools
from anvil_cli.policy.prompt_caching import mark_prompt_cache, prefix_digest
from anvil_cli.policy.routing import model_for
from anvil_cli.policy.tokens import estimate_input_tokens


@dataclass(frozen=True, slots=True)
class Request:
    """One job's request, ready to send."""

    model: str
    key: str  # the result cache's key: the request as the job asks it, Anvil's keys included
    params: dict[str, Any]  # as the API must see it
    tools: dict[str, list[str]]  # the tools Anvil runs itself: name -> argv
    commands: bool  # a tool names a command (`anvil_command`), runnable or not
    est_input: int  # input tokens, estimated
    # a digest of the model and the prompt prefix the API caches (None: nothing cached): the
    # governor sends calls sharing one to the endpoint whose cache holds it
    affinity: str | None = None


def prepare_request(job: Job, settings: Settings) -> Request:
    """The request of `job` under `settings` (routing, prompt caching)."""
    model = model_for(job, settings.routing)
    asked = job.request(model)
    params, tools = split_tools(asked)
    if settings.cache.prompt_caching:
        params = mark_prompt_cache(params, settings.cache.prompt_caching_min_chars)
    return Request(
        model=model,
        key=request_key(asked),
        params=params,
        tools=tools,
        commands=_uses_commands(asked),
        est_input=estimate_input_tokens(params),
        affinity=prefix_digest(params),
    )


def _uses_commands(request: dict[str, Any]) -> bool:
    tools = request.get("tools") or []
    return any(isinstance(tool, dict) and COMMAND_KEY in tool for tool in tools)
