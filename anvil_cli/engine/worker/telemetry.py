"""OpenTelemetry traces of a worker's jobs (the `otel` extra; docs/telemetry.md), following the
GenAI semantic conventions: one trace per job, its root an `invoke_agent {job id}` span
(INTERNAL: the agent runs in this process) with a `chat {model}` child (CLIENT) per API call
and an `execute_tool {name}` child per tool call; the limiter's waits, the retries and the
checks' grades are events on the job span. Each call is also counted in the conventions' client
metrics (`gen_ai.client.token.usage`, `gen_ai.client.operation.duration`) when they are sent.
The spans' attributes are made by `job_attributes`, `call_attributes`, `answer_attributes`,
`cost`, `graded` and `mark_error`, which `--mode batches` uses too (`engine/modes/batch_spans.py`).

Configured only by the driver's `OTEL_*` variables (`WorkerConfig.otel_env`, so a Ray node's own
environment does not decide; when they turn traces on: `trace_setup.py`). Each job's trace links
to the driver's run span (`WorkerConfig.otel_link`). Off, every hook is a no-op and nothing of
OpenTelemetry's SDK or exporter is imported. On, the tracer provider is made in the worker
process after it was forked (a `BatchSpanProcessor`'s thread does not survive a fork), kept
private (not the global one), and shut down, flushing its spans, when the worker's loop ends.

Why not the SDK's own `open_telemetry=` option (`anthropic._tracing`): its span per SDK call
cannot carry what Anvil owns. The cost of a call is Anvil's pricing (the figure it journals);
retries and the wait for the rate limiter are Anvil's (the SDK's retries are off); the call's
purpose (re-ask, judge) is Anvil's; and it names cache writes
`gen_ai.usage.cache_write.input_tokens`, not the convention's `cache_creation`. So Anvil's
provider is not made global: the SDK finds no provider and makes no spans of its own, and no
call is traced twice. Headers are never recorded (the credential stays out); prompts and answers
only with `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Awaitable, Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import anthropic

from anvil_cli.engine.worker import trace_setup
from anvil_cli.engine.worker.classify import classify

if TYPE_CHECKING:
    from anvil_cli.engine.outcomes import JobResult
    from anvil_cli.engine.worker.clients import EndpointClient
    from anvil_cli.engine.worker.conversation import Conversation
    from anvil_cli.engine.worker.tools.outcome import ToolOutcome
    from anvil_cli.jobs.job import Job

# the convention's `gen_ai.provider.name` by Anvil's provider (it names none for Foundry yet)
PROVIDER_NAMES = {
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "vertex": "gcp.vertex_ai",
    "foundry": "azure.ai.foundry",
}


class _State:
    tracer: Any = None  # None: off
    provider: Any = None
    run_id: str = ""
    link: Any = None  # the run span's context, which every job span links to
    meters: Any = None  # the meter provider (None: no metrics), and its two histograms
    tokens: Any = None
    duration: Any = None
    content: bool = False


_state = _State()
_job: ContextVar[Any] = ContextVar("anvil_job_span", default=None)  # the job span of this task


def start(otel_env: tuple[tuple[str, str], ...], run_id: str, run_link: str = "") -> None:
    """Start tracing in this (worker) process when `otel_env` (the driver's `OTEL_*`) asks for
    it and the extra is installed (else the driver warned); job spans link to `run_link`."""
    env = dict(otel_env)
    if not trace_setup.traced(env):
        return
    os.environ.update(env)  # the exporter and sampler read their settings from the environment
    _state.provider = trace_setup.make_provider(env)
    _state.tracer = _state.provider.get_tracer(trace_setup.SCOPE)
    _state.run_id = run_id
    _state.link = trace_setup.link_of(run_link)
    if trace_setup.metrics_wanted(env):
        _state.meters = trace_setup.make_meter_provider(env)
        meter = _state.meters.get_meter(trace_setup.SCOPE)
        _state.tokens = meter.create_histogram("gen_ai.client.token.usage", "{token}", "Tokens per call")
        _state.duration = meter.create_histogram("gen_ai.client.operation.duration", "s", "Time per call")
    capture = env.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "")
    _state.content = capture.strip().lower() == "true"


def shutdown() -> None:
    """Flush what is queued and stop (the worker is ending)."""
    providers = (_state.provider, _state.meters)
    _state.provider = _state.tracer = _state.meters = _state.tokens = _state.duration = None
    for provider in providers:
        if provider is not None:
            with contextlib.suppress(Exception):  # a collector that is down must not fail the worker
                provider.shutdown()


def flush() -> None:
    """Send what is queued now (a job was abandoned: the worker may not live to send it)."""
    if _state.provider is not None:
        with contextlib.suppress(Exception):
            _state.provider.force_flush(5_000)


class JobTrace:
    """A job's span while its agent runs; `ended(result)` records how the job ended."""

    def __init__(self, span: Any) -> None:
        self.span = span

    def ended(self, result: JobResult) -> None:
        if self.span is None:
            return
        span = self.span
        span.set_attribute("anvil.job.attempts", result.attempts)
        cost(span, result.cost_usd, result.usage)
        graded(span, result.checks.to_json() if result.checks is not None else None)
        if not result.succeeded and result.error is not None:
            mark_error(span, result.error.type)


def cost(span: Any, cost_usd: float, usage: Any) -> None:
    """A job span's cost and (`usage`: a `Usage`, or None) the tokens of its answer."""
    span.set_attribute("anvil.job.cost_usd", cost_usd)
    span.set_attribute("gen_ai.usage.cost.amount", cost_usd)
    span.set_attribute("gen_ai.usage.cost.currency", "USD")
    if usage is not None:
        u = usage
        span.set_attribute(
            "gen_ai.usage.input_tokens", u.input_tokens + u.cache_read_tokens + u.cache_write_tokens
        )
        span.set_attribute("gen_ai.usage.output_tokens", u.output_tokens)


def graded(span: Any, checks: Mapping[str, Any] | None) -> None:
    """A `gen_ai.evaluation.result` event per check of a job (`CheckRecord.to_json()`)."""
    for check in checks.get("results", ()) if checks else ():
        grade = {"gen_ai.evaluation.name": check["name"], "gen_ai.evaluation.score.value": check["score"]}
        label = "pass" if check["passed"] else "fail"
        span.add_event("gen_ai.evaluation.result", {**grade, "gen_ai.evaluation.score.label": label})


def job_attributes(job: Job, run_id: str) -> dict[str, Any]:
    """An `invoke_agent {job id}` span's attributes, whichever mode ran the job."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "anvil",
        "gen_ai.conversation.id": job.id,
        "anvil.run.id": run_id,
        "anvil.job.priority": job.priority.name.lower(),
    }
    if job.variant:
        attributes["anvil.job.variant"] = job.variant
    return attributes


_UNTRACED = contextlib.nullcontext(JobTrace(None))  # traces off: one for every job, nothing made


def job_span(job: Job) -> contextlib.AbstractContextManager[JobTrace]:
    """The job's `invoke_agent` span around its agent's run: the root of the job's own trace
    and, through this task's context (its judges' tasks copy it), the parent of its calls'."""
    return _UNTRACED if _state.tracer is None else _job_span(_state.tracer, job)


@contextlib.contextmanager
def _job_span(tracer: Any, job: Job) -> Iterator[JobTrace]:
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, SpanKind

    attributes = job_attributes(job, _state.run_id)
    links = [Link(_state.link)] if _state.link is not None else []
    span = tracer.start_span(f"invoke_agent {job.id}", Context(), SpanKind.INTERNAL, attributes, links)
    token = _job.set(span)
    try:
        yield JobTrace(span)
    except BaseException as exc:
        mark_error(span, getattr(exc, "reason", None) or type(exc).__name__.lower())
        raise
    finally:
        _job.reset(token)
        span.end()


def event(name: str, attributes: Mapping[str, Any]) -> None:
    """An event on the current job's span (`anvil.limiter.wait`, `anvil.retry`)."""
    span = _job.get()
    if span is not None:
        span.add_event(name, dict(attributes))


LIMITER_WAIT_S = 0.05  # shorter waits for a grant are the governor's round trip, not a limit


def waited(seconds: float) -> None:
    """The rate limiter (the governor) made a call wait `seconds` for its grant."""
    if seconds >= LIMITER_WAIT_S:
        event("anvil.limiter.wait", {"anvil.limiter.wait_s": seconds})


def retried(failure: BaseException | None, backoff_s: float) -> None:
    """A call failed with `failure` and is tried again after `backoff_s`."""
    if _job.get() is None:
        return
    kind = classify(failure).type if isinstance(failure, anthropic.APIError) else type(failure).__name__
    event("anvil.retry", {"error.type": kind, "anvil.retry.backoff_s": backoff_s})


def _parent() -> Any:
    from opentelemetry.trace import set_span_in_context

    return set_span_in_context(_job.get())


def chat(
    st: Conversation,
    endpoint: EndpointClient,
    elapsed_s: float,
    *,
    message: Any = None,
    cost_usd: float | None = None,
    error_type: str | None = None,
) -> None:
    """A `chat {model}` span for a call that took `elapsed_s` and has just ended: answered with
    `message` at `cost_usd` (what Anvil journals), or failed with `error_type`."""
    tracer = _state.tracer
    if tracer is None or _job.get() is None:
        return
    from opentelemetry.trace import SpanKind

    model = endpoint.model_id(st.model)
    provider = PROVIDER_NAMES.get(endpoint.endpoint.provider, endpoint.endpoint.provider)
    attributes = call_attributes(
        provider, model, st.max_tokens, st.job.id, endpoint.client.base_url, st.purpose, endpoint.name
    )
    if message is not None:
        attributes.update(answer_attributes(message, cost_usd or 0.0))
    now = time.time_ns()
    span = tracer.start_span(
        f"chat {model}", _parent(), SpanKind.CLIENT, attributes, start_time=now - int(elapsed_s * 1e9)
    )
    if _state.content:
        span.set_attribute("gen_ai.input.messages", json.dumps(_messages(st.request.get("messages", []))))
        if message is not None:
            said = [
                {
                    "role": "assistant",
                    "parts": _parts(_dump(message.content)),
                    "finish_reason": message.stop_reason,
                }
            ]
            span.set_attribute("gen_ai.output.messages", json.dumps(said))
    if error_type is not None:
        mark_error(span, error_type)
    span.end(end_time=now)
    if _state.meters is not None:
        _measure(attributes, elapsed_s, error_type)


def _measure(attributes: Mapping[str, Any], elapsed_s: float, error_type: str | None) -> None:
    """The call in the GenAI client metrics: its duration, and its input and output tokens."""
    keys = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model")
    common = {k: attributes[k] for k in (*keys, "server.address", "server.port") if k in attributes}
    _state.duration.record(elapsed_s, {**common, "error.type": error_type} if error_type else common)
    if error_type is None:
        _state.tokens.record(
            attributes["gen_ai.usage.input_tokens"], {**common, "gen_ai.token.type": "input"}
        )
        _state.tokens.record(
            attributes["gen_ai.usage.output_tokens"], {**common, "gen_ai.token.type": "output"}
        )


def call_attributes(
    provider: str,
    model: str,
    max_tokens: int | None,
    job_id: str,
    url: Any,
    purpose: str | None,
    endpoint: str | None,
) -> dict[str, Any]:
    """A `chat {model}` span's attributes before its answer: the call of job `job_id` to `url`
    (an httpx URL), whichever mode made it."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.conversation.id": job_id,
        "server.address": url.host,
        "server.port": url.port or (443 if url.scheme == "https" else 80),
    }
    if max_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = max_tokens
    if purpose:
        attributes["anvil.call.purpose"] = purpose
    if endpoint:
        attributes["anvil.endpoint"] = endpoint
    return attributes


def answer_attributes(message: Any, cost_usd: float) -> dict[str, Any]:
    """A `chat` span's attributes from the API's answer (an SDK `Message`) and its cost."""
    usage = message.usage
    read = getattr(usage, "cache_read_input_tokens", None) or 0
    written = getattr(usage, "cache_creation_input_tokens", None) or 0
    return {
        "gen_ai.response.model": message.model,
        "gen_ai.response.id": message.id,
        "gen_ai.response.finish_reasons": [message.stop_reason or ""],
        "gen_ai.usage.input_tokens": usage.input_tokens + read + written,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": read,
        "gen_ai.usage.cache_creation.input_tokens": written,
        "gen_ai.usage.cost.amount": cost_usd,
        "gen_ai.usage.cost.currency": "USD",
    }


async def tool(name: str, call_id: str, running: Awaitable[ToolOutcome]) -> ToolOutcome:
    """`running` (one tool call) inside an `execute_tool {name}` span."""
    tracer = _state.tracer
    if tracer is None or _job.get() is None:
        return await running
    from opentelemetry.trace import SpanKind

    attributes = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        "gen_ai.tool.call.id": call_id,
    }
    span = tracer.start_span(f"execute_tool {name}", _parent(), SpanKind.INTERNAL, attributes)
    try:
        outcome = await running
        if outcome.error_kind is not None and outcome.block.get("is_error"):  # a cut output is no error
            mark_error(span, outcome.error_kind)
        return outcome
    except BaseException as exc:
        mark_error(span, type(exc).__name__.lower())
        raise
    finally:
        span.end()


def mark_error(span: Any, error_type: str) -> None:
    """The span failed with `error_type`: status ERROR and the convention's `error.type`."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, error_type))


def _dump(blocks: Any) -> Any:
    if isinstance(blocks, str):
        return blocks
    return [b.model_dump(mode="json", exclude_none=True) if hasattr(b, "model_dump") else b for b in blocks]


def _messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as the convention's `gen_ai.input.messages` has them (role and parts)."""
    return [{"role": m.get("role"), "parts": _parts(m.get("content", ""))} for m in messages]


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "content": block.get("text", "")})
        elif kind == "tool_use":
            parts.append(
                {
                    "type": "tool_call",
                    "id": block.get("id"),
                    "name": block.get("name"),
                    "arguments": block.get("input"),
                }
            )
        elif kind == "tool_result":
            parts.append(
                {
                    "type": "tool_call_response",
                    "id": block.get("tool_use_id"),
                    "response": block.get("content"),
                }
            )
        else:
            parts.append({"type": str(kind)})
    return parts
