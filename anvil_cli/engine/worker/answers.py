"""Checking a job's answer in a worker's agent (what to check and how is `policy/checks`; the
calls it takes are made here, each a real call through the same governor, retries, budget and
journal as the answer's own).

* **Output schema**: the final answer (after its tool turns) is validated; one that does not
  match is re-asked (the conversation goes on with the answer and `reask_message`) up to
  `checks.max_reasks` times, each re-ask's calls logged with `Attempt.purpose="reask"` and their
  cost summed in `CheckRecord.reask_cost_usd`. An answer that never matches fails the job
  (`invalid_output`, the last validation error; its answer and checks kept on the result), and
  its other checks are not run (nor paid for).
* **Checks**: the deterministic ones (`policy/checks/evaluate.py`), then the judges, each one
  call on its own model (`checks.judge_model` unless it names one) at the job's priority, its
  attempts logged with `purpose="judge"`, its cost summed in `judge_cost_usd`; a job's judges run
  at once. A judge whose call fails for good fails its check, not the job: checks never fail a job.
* **A result cache hit** is checked as a fresh answer is: its schema, its deterministic checks
  and its judges (paid calls: the checks are not part of the cache's key, so the answer is
  graded by the checks the batch has now). A cached answer that does not match the schema is
  not used: the job is asked afresh.

Every call's cost reaches the journal as it is settled (`AgentContext.on_spend`), whatever its
purpose. A run that stops during a re-ask or a judge puts the job back to pending (its paid
calls stay journaled); on resume the job runs again from its start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import anthropic

from anvil_cli.config.settings import ChecksSettings
from anvil_cli.engine.outcomes import JobResult
from anvil_cli.engine.requests import with_output_schema
from anvil_cli.engine.worker.classify import classify
from anvil_cli.engine.worker.conversation import Conversation
from anvil_cli.engine.worker.sdk_message import text_of, tokens_of
from anvil_cli.policy.checks.evaluate import evaluate_all
from anvil_cli.policy.checks.judge import (
    failed_judgement,
    grade_schema,
    judge_model,
    judge_request,
    question_of,
    read_judgement,
)
from anvil_cli.policy.checks.record import CheckRecord, CheckResult
from anvil_cli.policy.checks.schema import SchemaVerdict, check_answer, reask_message
from anvil_cli.policy.checks.spec import CheckSpec, specs_of
from anvil_cli.policy.tokens import estimate_input_tokens

REASK = "reask"
JUDGE = "judge"
INVALID_OUTPUT = "invalid_output"  # the error of a job whose answer never matched its schema


@dataclass(frozen=True, slots=True)
class Checked:
    """A job's answer once checked: its last message, its checks (None: the job has none) and,
    when it never matched its output schema, the last validation error (the job fails)."""

    message: Any
    record: CheckRecord | None = None
    invalid: str | None = None


@dataclass(frozen=True, slots=True)
class AnswerChecker:
    """Checks one worker's answers: `converse` holds a conversation to its next answer (the
    agent's retries and tool turns), `redact` keeps secrets out of what a failed judge says."""

    converse: Callable[[Conversation], Awaitable[Any]]
    redact: Callable[[str], str]
    settings: ChecksSettings

    async def check(self, st: Conversation, message: Any) -> Checked:
        """The answer `message` of `st` checked: re-asked until it matches the job's schema,
        then graded by its checks."""
        job = st.job
        specs = specs_of(job.checks)
        if job.output_schema is None and not specs:
            return Checked(message)
        first: tuple[CheckResult, ...] = ()
        reasks, reask_cost = 0, 0.0
        if job.output_schema is not None:
            message, verdict, reasks, reask_cost = await self._until_valid(st, message, job.output_schema)
            if not verdict.valid:
                record = CheckRecord((verdict.as_check(),), reasks, reask_cost)
                return Checked(message, record, verdict.error)
            first = (verdict.as_check(),)
        results, judge_cost = await self.grade(st, text_of(message), specs)
        return Checked(message, CheckRecord((*first, *results), reasks, reask_cost, judge_cost))

    async def check_cached(self, st: Conversation, hit: JobResult) -> JobResult | None:
        """A result cache hit checked as a fresh answer would be (its judges are real calls,
        booked in `st.calls`); None when it does not match the job's schema (ask afresh)."""
        job = st.job
        specs = specs_of(job.checks)
        if job.output_schema is None and not specs:
            return hit
        first: tuple[CheckResult, ...] = ()
        if job.output_schema is not None:
            verdict = check_answer(job.output_schema, hit.output)
            if not verdict.valid:
                return None
            first = (verdict.as_check(),)
        results, judge_cost = await self.grade(st, hit.output or "", specs)
        finished = time.time()
        return replace(
            hit,
            attempts=st.calls.attempts,
            cost_usd=st.calls.cost_usd,
            attempt_log=(*(hit.attempt_log or ()), *st.calls.log),
            checks=CheckRecord((*first, *results), judge_cost_usd=judge_cost),
            finished_at=finished,
            latency_s=finished - (hit.started_at or finished),
        )

    async def _until_valid(
        self, st: Conversation, message: Any, schema: Mapping[str, Any]
    ) -> tuple[Any, SchemaVerdict, int, float]:
        """Re-ask until the answer matches `schema` or the re-asks run out: (the last answer,
        its verdict, re-asks answered, what their calls cost)."""
        verdict = check_answer(schema, text_of(message))
        reasks, cost = 0, 0.0
        while verdict.error is not None and reasks < self.settings.max_reasks:
            st.add_usage(st.usage_of(message))  # the answer re-asked was paid for too
            said = {"role": "assistant", "content": _said(message)}
            messages = [*st.request["messages"], said, reask_message(schema, verdict.error)]
            st.request = {**st.request, "messages": messages}
            st.est_input = estimate_input_tokens(st.request)
            st.purpose = REASK
            before = st.calls.cost_usd
            message = await self.converse(st)  # its tool turns too, if it asks for tools again
            cost += st.calls.cost_usd - before
            reasks += 1
            verdict = check_answer(schema, text_of(message))
        return message, verdict, reasks, cost

    async def grade(
        self, st: Conversation, answer: str, specs: Sequence[CheckSpec]
    ) -> tuple[list[CheckResult], float]:
        """`answer` graded by every check in `specs`, in their order: (the results, what the
        judges cost)."""
        plain = [spec for spec in specs if not spec.is_judge]
        judges = [spec for spec in specs if spec.is_judge]
        evaluated = iter(evaluate_all(plain, answer) if plain else [])
        before = st.calls.cost_usd
        graded = await asyncio.gather(
            *(self._judge(st, spec, answer) for spec in judges), return_exceptions=True
        )
        judge_cost = st.calls.cost_usd - before
        for outcome in graded:  # every judge ended (its paid calls booked) before a stop goes on
            if isinstance(outcome, BaseException):
                raise outcome
        judged = iter(graded)
        results = [next(judged) if spec.is_judge else next(evaluated) for spec in specs]
        return [r for r in results if isinstance(r, CheckResult)], judge_cost

    async def _judge(self, st: Conversation, spec: CheckSpec, answer: str) -> CheckResult:
        """One judge's grade of `answer`; a call that fails for good fails the check."""
        job = st.job
        model = judge_model(spec, self.settings.judge_model)
        asked = judge_request(spec, model, question_of(job.messages, job.system), answer)
        request = with_output_schema(asked, grade_schema(spec), native=self.settings.native_format)
        judge = Conversation(
            job=job,
            model=model,
            request=request,
            est_input=estimate_input_tokens(request),
            purpose=JUDGE,
            calls=st.calls,  # booked as the job's calls
        )
        try:
            message = await self.converse(judge)
        except anthropic.APIError as exc:  # permanent, or transient with retries exhausted
            info = classify(exc)
            status = f" ({info.status_code})" if info.status_code is not None else ""
            why = f"{info.type}{status}: {self.redact(info.message)}"
            return failed_judgement(spec, judge.model, why)
        return read_judgement(spec, judge.model, text_of(message), tokens_of(message))


def _said(message: Any) -> list[dict[str, Any]]:
    """The assistant's turn to send back before a re-ask: its blocks but tool calls (nothing
    answers them) and empty text (the API refuses it)."""
    blocks = [
        b.model_dump(mode="json", exclude_none=True)
        for b in message.content
        if b.type != "tool_use" and not (b.type == "text" and not b.text)
    ]
    return blocks or [{"type": "text", "text": "(no answer)"}]
