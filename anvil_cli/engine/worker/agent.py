"""An agent: one job's conversation with Claude, an asyncio task driven through the governor
(via the worker's `GovernorBroker`) and tenacity's retry rules (`retries.py`).

Every API call asks the governor first and settles with it afterwards. The SDK's own retries
are off; tenacity is the one owner of retries (it decides, the agent's loop sleeps and tries
again), so the governor sees every attempt. The grant
names the endpoint to call: the agent sends the request through that endpoint's client, with
the id that provider knows the model by; everything it records keeps Anvil's model id and
names the endpoint.

A refusal no retry can fix (auth, permission, spend cap: `Verdict.STOP_RUN`) stops the run on
the run's only endpoint. On a named one it takes that endpoint out (the governor opens its
breakers, `Outcome.refused`) and the call is asked again at once, without spending one of the
job's retries: the governor grants it another endpoint, or denies it when every endpoint that
serves the model has refused, and the run stops as with one endpoint.

The answer is then checked (`answers.py`: re-asked until it matches its output schema, graded
by its checks); those calls go the same way as the answer's own, logged with their purpose.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anthropic

from anvil_cli.config.settings import Settings
from anvil_cli.engine.attempts import Attempt
from anvil_cli.engine.outcomes import JobError, JobResult
from anvil_cli.engine.requests import prepare_request
from anvil_cli.engine.result_cache import ResultCache, result_from_cache
from anvil_cli.engine.worker import telemetry
from anvil_cli.engine.worker.answers import INVALID_OUTPUT, AnswerChecker, Checked
from anvil_cli.engine.worker.broker import GovernorBroker
from anvil_cli.engine.worker.classify import ErrorInfo, Verdict, classify
from anvil_cli.engine.worker.clients import EndpointClient
from anvil_cli.engine.worker.conversation import Conversation
from anvil_cli.engine.worker.retries import RetryPolicy
from anvil_cli.engine.worker.sdk_message import text_of
from anvil_cli.engine.worker.settling import answered, failed, refusal_message
from anvil_cli.engine.worker.stopping import Abandoned, Asks, StopRun, stop_for, stopped_within
from anvil_cli.engine.worker.tools.runner import run_tool_async
from anvil_cli.engine.worker.tools.toolbox import ToolContext
from anvil_cli.jobs.job import Job
from anvil_cli.policy.budgets.caps import scopes_of
from anvil_cli.policy.governor import CallAsk, Deny, Grant, Wait
from anvil_cli.policy.governor.view import model_open
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.policy.prompt_caching import prefix_digest
from anvil_cli.policy.routing import fallbacks
from anvil_cli.policy.tokens import estimate_input_tokens

MAX_WAIT_SLICE_S = 1.0  # re-ask the governor at least this often while waiting
# The SDK refuses non-streaming calls expected to take over 10 minutes: max_tokens above
# 600 s / 3600 s x 128,000. Anvil streams those (and passes its own timeout to the rest).
STREAM_ABOVE_MAX_TOKENS = 21_333
MAX_TOOL_TURNS = 20  # tool round trips per job, then the job ends where it is


_Answer = tuple[Any, int, Mapping[str, str]]  # a call's message, HTTP status and response headers
__all__ = ["Abandoned", "Agent", "AgentContext", "StopRun"]


@dataclass
class AgentContext:
    """What an agent needs, shared by all agents of one worker process."""

    clients: Mapping[str, EndpointClient]  # endpoint name ("" : the run's only one) -> its client
    governor: GovernorBroker
    settings: Settings
    pricer: Pricer  # the run's prices (each endpoint's own are on its EndpointClient)
    stopping: asyncio.Event  # set when the run drains: stop waiting and retrying
    tools: ToolContext = field(default_factory=ToolContext)
    owner: int = -1  # this worker's id: the governor releases its grants if it dies
    on_attempt: Callable[[int, Attempt], None] = lambda _seq, _attempt: None  # every attempt
    # every paid call, as settled: (seq, USD, endpoint name)
    on_spend: Callable[[int, float, str], None] = lambda _seq, _usd, _endpoint: None


class Agent:
    """Runs jobs to completion; each `run` is one asyncio task, many at once per worker."""

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        s = ctx.settings
        self.timeout_s = s.provider.timeout_s
        self._retry = RetryPolicy.of(s.retries)
        self.cache = ResultCache(s.state_dir) if s.cache.enabled else None
        self.checker = AnswerChecker(self.converse, self.redact, s.checks)
        self._first = next(iter(ctx.clients.values()))
        secrets = {secret for each in ctx.clients.values() for secret in each.endpoint.secrets()}
        self._secrets = sorted(secrets, key=len, reverse=True)  # a key containing another goes first
        self._pricers = list({id(each.pricer): each.pricer for each in ctx.clients.values()}.values())
        # refusals one try may meet before giving up (each takes its endpoint out: normally
        # the governor grants another endpoint or denies the call long before)
        self._max_refusals = 2 * len(ctx.clients)
        self._asks = Asks(ctx.stopping)  # the governor's answers its agents wait for

    def redact(self, text: str) -> str:
        """Error text never carries any endpoint's key, token or AWS secret, whatever an
        exception put in it."""
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def _endpoint(self, grant: Grant) -> EndpointClient:
        """Where the grant says to send the call ("": the run's only endpoint, or its first)."""
        if not grant.endpoint:
            return self._first
        try:
            return self.ctx.clients[grant.endpoint]
        except KeyError:
            raise RuntimeError(f"granted a call on an unknown endpoint {grant.endpoint!r}") from None

    async def run(self, job: Job) -> JobResult:
        started = time.time()
        st, key = self._conversation(job)
        try:  # (one coroutine less per job than a method of its own)
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                cached = await self.checker.check_cached(st, result_from_cache(job.seq, hit, started))
                if cached is not None:
                    return cached
            if st.tools and (refused := await self.ctx.tools.refusal()) is not None:  # before paying
                info = ErrorInfo(Verdict.FAIL_JOB, "tool_sandbox", refused, None, False)
                return self._failed(st, info, started)
            try:
                checked = await self.checker.check(st, await self.converse(st))
            except anthropic.APIError as exc:  # permanent, or transient with retries exhausted
                return self._failed(st, classify(exc), started)
            return self._answered(st, checked, started, key if self.cache is not None else None)
        except (Abandoned, StopRun) as exc:
            exc.attempts = st.calls.attempts  # its checks' calls included
            raise

    def _conversation(self, job: Job) -> tuple[Conversation, str]:
        """The job's conversation, and its result cache key ("": no cache). Only what the
        conversation needs is kept while the job runs, not its `Request`."""
        request = prepare_request(job, self.ctx.settings)
        st = Conversation(
            job=job,
            model=request.model,
            request=request.params,
            est_input=request.est_input,
            affinity=request.affinity,
            tools=request.tools,
        )
        return st, request.key if self.cache is not None else ""

    async def converse(self, st: Conversation) -> Any:
        """The conversation's next answer: a call, then its tool turns."""
        return await self._tool_turns(st, await self._with_retries(st))

    def _answered(self, st: Conversation, checked: Checked, started: float, key: str | None) -> JobResult:
        """The job answered: succeeded, or failed when its answer never matched its schema
        (the answer and its checks kept all the same)."""
        finished = time.time()
        message, invalid = checked.message, checked.invalid
        return JobResult(
            seq=st.job.seq,
            succeeded=invalid is None,
            model=st.model,
            attempts=st.calls.attempts,
            output=text_of(message),
            stop_reason=message.stop_reason,
            usage=st.add_usage(st.usage_of(message)),
            cost_usd=st.calls.cost_usd,
            error=None if invalid is None else JobError(INVALID_OUTPUT, invalid),
            attempt_log=tuple(st.calls.log),
            latency_s=finished - started,
            started_at=started,
            finished_at=finished,
            cache_key=key if invalid is None else None,  # the conductor stores it
            endpoint=st.endpoint,
            checks=checked.record,
        )

    def _failed(self, st: Conversation, info: ErrorInfo, started: float) -> JobResult:
        finished = time.time()
        return JobResult(
            seq=st.job.seq,
            succeeded=False,
            model=st.model,
            attempts=st.calls.attempts,
            cost_usd=st.calls.cost_usd,
            error=JobError(info.type, self.redact(info.message), info.status_code),
            attempt_log=tuple(st.calls.log),
            latency_s=finished - started,
            started_at=started,
            finished_at=finished,
            endpoint=st.endpoint,
        )

    # -- tools --------------------------------------------------------------------------------

    async def _tool_turns(self, st: Conversation, message: Any) -> Any:
        """While Claude calls tools this job can run, run them and send the results back."""
        for _ in range(MAX_TOOL_TURNS):
            calls = [b for b in message.content if b.type == "tool_use"]
            if message.stop_reason != "tool_use" or not calls or any(c.name not in st.tools for c in calls):
                return message
            tools = self.ctx.tools
            cwd = tools.workdir_for(st.job)
            outcomes = await asyncio.gather(
                *(
                    telemetry.tool(
                        c.name,
                        c.id,
                        run_tool_async(
                            st.tools[c.name],
                            c.input,
                            c.id,
                            timeout_s=tools.timeout_s,
                            limits=tools.limits_for(st.job, c.name),
                            cwd=cwd,
                            env=tools.env,
                            processes=tools.processes,
                        ),
                    )
                    for c in calls
                )
            )
            asked = tuple(o.as_call(c.name) for c, o in zip(calls, outcomes, strict=True))
            st.amend(tools=asked)  # listed under the answer that asked
            results = [o.block for o in outcomes]
            assistant = [b.model_dump(mode="json", exclude_none=True) for b in message.content]
            messages = [*st.request["messages"], {"role": "assistant", "content": assistant}]
            messages.append({"role": "user", "content": results})
            st.add_usage(st.usage_of(message))
            st.request = {**st.request, "messages": messages}
            st.est_input = estimate_input_tokens(st.request)
            message = await self._with_retries(st)
        return message

    # -- retries ------------------------------------------------------------------------------

    async def _with_retries(self, st: Conversation) -> Any:
        """The call's answer: tried again after a transient error (`retries.py`), or its error."""
        tried = 1
        while True:
            try:
                return await self._attempt(st)
            except anthropic.APIError as exc:
                wait_s = self._retry.wait_s(tried, exc)
                if wait_s is None:
                    raise
                st.amend(wait_s=round(wait_s, 3))
                telemetry.retried(exc, wait_s)
            if await stopped_within(self.ctx.stopping, wait_s):
                raise Abandoned("run is stopping")
            tried += 1

    # -- one attempt --------------------------------------------------------------------------

    async def _attempt(self, st: Conversation) -> Any:
        """One try of a call's (`_with_retries`): a call, asked again at once (not a retry) while named
        endpoints refuse it, up to `_max_refusals` times."""
        refusals = 0
        while True:
            if self.ctx.stopping.is_set():
                raise Abandoned("run is stopping")
            asked = time.monotonic()
            grant = await self._acquire(st)
            telemetry.waited(time.monotonic() - asked)
            st.next_call()
            t0 = time.monotonic()
            try:
                endpoint = self._endpoint(grant)
                st.endpoint = endpoint.name
                answer = await self._call(st, endpoint)
            except anthropic.APIError as exc:
                stop = self._settle_failure(st, grant, exc, time.monotonic() - t0)
                if stop is None:
                    raise
                if grant.endpoint and refusals < self._max_refusals:
                    refusals += 1  # that endpoint is out now: the governor picks another, or denies
                    continue
                raise stop from exc
            except BaseException:
                self.ctx.governor.release(grant.ticket)
                raise
            return self._succeeded(st, grant, endpoint, answer, t0)

    def _succeeded(
        self, st: Conversation, grant: Grant, endpoint: EndpointClient, answer: _Answer, t0: float
    ) -> Any:
        """Pay for, settle and log a call that was answered."""
        message, status_code, headers = answer
        usage = st.usage_of(message)
        cost = endpoint.pricer.cost_usd(st.model, usage.to_json())
        st.calls.cost_usd += cost
        self.ctx.on_spend(st.job.seq, cost, endpoint.endpoint.name)  # journaled before anything else
        self.ctx.governor.settle(grant.ticket, answered(usage, cost, status_code, headers))
        latency_s = round(time.monotonic() - t0, 4)
        telemetry.chat(st, endpoint, latency_s, message=message, cost_usd=cost)
        st.avoid = None
        st.book(Attempt(st.n, st.model, 200, latency_s=latency_s, endpoint=st.endpoint))
        self.ctx.on_attempt(st.job.seq, st.calls.log[st.entry])
        return message

    async def _call(self, st: Conversation, endpoint: EndpointClient) -> _Answer:
        """One request to `endpoint`, with the model id its provider knows: (message, HTTP
        status, response headers). Long requests are streamed, as the API asks for anything that
        may take over ten minutes (the SDK's own rule)."""
        model = endpoint.model_id(st.model)  # a copy of the request only for another id
        request = st.request if st.request.get("model") == model else {**st.request, "model": model}
        messages = endpoint.client.messages
        if st.max_tokens > STREAM_ABOVE_MAX_TOKENS:
            async with messages.stream(**request, timeout=self.timeout_s) as stream:
                message = await stream.get_final_message()
                return message, stream.response.status_code, stream.response.headers
        raw = await messages.with_raw_response.create(**request, timeout=self.timeout_s)
        return await raw.parse(), raw.http_response.status_code, raw.headers

    def _settle_failure(
        self, st: Conversation, grant: Grant, exc: anthropic.APIError, elapsed_s: float
    ) -> StopRun | None:
        """Tell the governor, log the attempt; the StopRun to raise when the endpoint refused
        the call for a reason no retry there can fix (on a named endpoint the governor takes
        the endpoint out, and the caller may ask again)."""
        info = classify(exc)
        message = self.redact(info.message)
        self.ctx.governor.settle(grant.ticket, failed(exc, info, grant.endpoint, message))
        entry = Attempt(
            st.n,
            st.model,
            info.status_code,
            latency_s=round(elapsed_s, 4),
            error_type=info.type,
            message=message[:500],
            host=info.host,
            unreachable=info.unreachable,  # no connection was made (policy/unreachable.py counts these)
            endpoint=st.endpoint,
        )
        st.book(entry)
        telemetry.chat(st, self._endpoint(grant), elapsed_s, error_type=info.type)
        self.ctx.on_attempt(st.job.seq, st.calls.log[st.entry])
        st.avoid = st.endpoint if info.breaker_failure else None
        st.overloaded = st.overloaded + 1 if info.overloaded else 0
        if st.overloaded >= self.ctx.settings.routing.fallback_after_529 and self._switch_to_fallback(st):
            st.overloaded = 0
        refused = info.verdict is Verdict.STOP_RUN
        return StopRun(info.type, refusal_message(info, message)) if refused else None

    async def _acquire(self, st: Conversation) -> Grant:
        """Ask the governor until it grants; switch to a fallback model while a breaker is open."""
        while True:
            # the dearest endpoint's: which one the call goes to is the governor's to say
            worst = max(p.worst_case_usd(st.model, st.est_input, st.max_tokens) for p in self._pricers)
            scopes = scopes_of(st.job.metadata, self.ctx.settings.budget.scopes)  # budget.scopes it is under
            ask = CallAsk(st.est_input, st.max_tokens, worst, st.affinity, st.avoid, scopes)
            # Abandoned when the run begins stopping first (a grant that arrives anyway goes back)
            decision = await self._asks.answer(self.ctx.governor.ask(st.model, ask, int(st.job.priority)))
            if isinstance(decision, Grant):
                return decision
            if isinstance(decision, Deny):
                raise stop_for(decision.reason, decision.message)  # the run, or (its scope spent) the job
            assert isinstance(decision, Wait)  # a breaker is open: another model, or wait a while
            if not self._switch_to_fallback(st) and await stopped_within(
                self.ctx.stopping, min(decision.seconds, MAX_WAIT_SLICE_S)
            ):
                raise Abandoned("run is stopping")

    def _switch_to_fallback(self, st: Conversation) -> bool:
        chain = fallbacks(st.model, self.ctx.settings.routing)
        if not chain:
            return False
        breakers = self.ctx.governor.breakers()
        for candidate in chain:
            if not model_open(breakers, candidate):  # some endpoint still serves it
                st.model = candidate
                st.request = {**st.request, "model": candidate}
                st.affinity = prefix_digest(st.request)  # another model caches apart
                return True
        return False
