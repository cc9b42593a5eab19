"""The spans of `--mode batches` (docs/telemetry.md), made by the driver as a batch's results are
ingested (no worker makes a call): an `anvil batch {batch id}` span (CLIENT, from the batch's
intent to its results' download) in the run's trace, and per job of the batch an
`invoke_agent {job id}` span, the root of a trace of its own linked to the batch span, with a
`chat {model}` child per request of the job in the batch (its answer, its judges'). The
attributes are Messages mode's, from the same code (`engine/worker/telemetry.py`); the cost
is the batch price's, the figure journaled: a job span's is what its row's cost grew by.

Untraced (no run span open: `trace_setup.run_tracer()`), nothing is read or made."""

from __future__ import annotations

import time
from typing import Any

from anvil_cli.config.settings import Settings
from anvil_cli.engine.journal.store import FAILED, PENDING, RUNNING, BatchRow, Journal
from anvil_cli.engine.modes.batches.followup import JUDGE, FollowUp
from anvil_cli.engine.modes.batches.ids import split_id
from anvil_cli.engine.modes.batches.results import error_of
from anvil_cli.engine.requests import prepare_request
from anvil_cli.engine.worker import telemetry, trace_setup
from anvil_cli.engine.worker.sdk_message import usage_of
from anvil_cli.jobs.job import Job
from anvil_cli.policy.checks.judge import judge_model
from anvil_cli.policy.checks.spec import specs_of
from anvil_cli.policy.pricing.pricer import Pricer

PROVIDER = "anthropic"  # Message Batches go to the Anthropic API only (batches/endpoint.py)
FLUSH_EVERY = 500  # jobs: their spans sent before the span queue (2048 by default) fills

Before = dict[int, tuple[float, bool]]  # seq -> (its row's cost, it had a re-ask pending)


class BatchSpans:
    """Spans of one run's batches, made as each batch's results are ingested."""

    def __init__(
        self,
        journal: Journal,
        run_id: str,
        settings: Settings,
        pricer: Pricer,
        url: Any,  # the API's base URL (httpx)
        endpoint: str | None,
        tag: str,
    ) -> None:
        self.journal, self.run_id, self.settings, self.pricer = journal, run_id, settings, pricer
        self.url, self.endpoint, self.tag = url, endpoint, tag
        self.flushing = True  # until a flush fails: then a collector that is down costs no more

    def before(self, row: BatchRow) -> Before | None:
        """What the batch's jobs stood at before its results are ingested (None: untraced)."""
        if trace_setup.run_tracer() is None:
            return None
        followups = self.journal.followups(self.run_id, row.seqs)
        reasking = {s for s, f in followups.items() if FollowUp.from_json(f).stage != JUDGE}
        rows = self.journal.job_rows(self.run_id, row.seqs)
        return {r["seq"]: (r["cost_usd"] or 0.0, r["seq"] in reasking) for r in rows}

    def ended(self, row: BatchRow, entries: list[Any], before: Before | None, cost_usd: float) -> None:
        """The batch's span and its jobs' spans, its results (`entries`) now ingested."""
        traced = trace_setup.run_tracer()
        if before is None or traced is None:
            return
        from opentelemetry.trace import SpanKind, set_span_in_context

        tracer, run_span = traced
        start, now = int(row.created_at * 1e9), time.time_ns()
        batch = tracer.start_span(
            f"anvil batch {row.batch_id}",
            set_span_in_context(run_span),
            SpanKind.CLIENT,
            self._batch_attributes(row, entries, cost_usd),
            start_time=start,
        )
        parts: dict[int, list[tuple[int | None, Any]]] = {}
        for entry in entries:
            found = split_id(entry.custom_id, self.tag)
            if found is not None and found[0] in before:
                parts.setdefault(found[0], []).append((found[1], entry.result))
        for n, job_row in enumerate(self.journal.job_rows(self.run_id, sorted(parts)), 1):
            seq = job_row["seq"]
            self._job(tracer, (batch, row.batch_id or ""), job_row, parts[seq], before[seq], (start, now))
            if n % FLUSH_EVERY == 0 and self.flushing:
                self.flushing = trace_setup.flush_run()
        batch.end(end_time=now)

    def _batch_attributes(self, row: BatchRow, entries: list[Any], cost_usd: float) -> dict[str, Any]:
        kinds = [e.result.type for e in entries]
        attributes: dict[str, Any] = {
            "gen_ai.provider.name": PROVIDER,
            "anvil.run.id": self.run_id,
            "anvil.batch.id": row.batch_id or "",
            "anvil.batch.requests": len(entries),
            "anvil.batch.succeeded": kinds.count("succeeded"),
            "anvil.batch.errored": len(kinds) - kinds.count("succeeded"),
            "gen_ai.usage.cost.amount": cost_usd,
            "gen_ai.usage.cost.currency": "USD",
            "server.address": self.url.host,
            "server.port": self.url.port or (443 if self.url.scheme == "https" else 80),
        }
        if self.endpoint:
            attributes["anvil.endpoint"] = self.endpoint
        return attributes

    def _job(
        self,
        tracer: Any,
        batch: tuple[Any, str],  # its span and id
        job_row: dict[str, Any],
        results: list[tuple[int | None, Any]],
        before: tuple[float, bool],
        span_ns: tuple[int, int],
    ) -> None:
        from opentelemetry.context import Context
        from opentelemetry.trace import Link, SpanKind, set_span_in_context

        job = Job.from_record(job_row["job"])
        attributes = {**telemetry.job_attributes(job, self.run_id), "anvil.batch.id": batch[1]}
        links = [Link(batch[0].get_span_context())]
        span = tracer.start_span(
            f"invoke_agent {job.id}", Context(), SpanKind.INTERNAL, attributes, links, start_time=span_ns[0]
        )
        answer = None
        for part, result in sorted(results, key=lambda r: -1 if r[0] is None else r[0]):
            message = self._chat(tracer, set_span_in_context(span), job, part, result, before[1], span_ns)
            if part is None:
                answer = message
        telemetry.cost(span, (job_row["cost_usd"] or 0.0) - before[0], usage_of(answer) if answer else None)
        if job_row["state"] not in (PENDING, RUNNING):  # it ended with this batch
            telemetry.graded(span, job_row["checks"])
        if job_row["state"] == FAILED and job_row["error"]:
            telemetry.mark_error(span, job_row["error"].get("type", "error"))
        span.end(end_time=span_ns[1])

    def _chat(
        self,
        tracer: Any,
        parent: Any,
        job: Job,
        part: int | None,
        result: Any,
        reasking: bool,
        span_ns: tuple[int, int],
    ) -> Any:
        """A `chat` span for one request of the job; its answer (None: the request failed)."""
        from opentelemetry.trace import SpanKind

        if part is None:  # the job's answer (or a re-ask's)
            model, max_tokens = prepare_request(job, self.settings).model, job.max_tokens
            purpose = "reask" if reasking else None
        else:  # judge number `part`
            model = judge_model(specs_of(job.checks)[part], self.settings.checks.judge_model)
            max_tokens, purpose = None, "judge"
        attributes = telemetry.call_attributes(
            PROVIDER, model, max_tokens, job.id, self.url, purpose, self.endpoint
        )
        message = result.message if result.type == "succeeded" else None
        if message is not None:
            cost_usd = self.pricer.cost_usd(model, usage_of(message).to_json(), batch=True)
            attributes.update(telemetry.answer_attributes(message, cost_usd))
        span = tracer.start_span(f"chat {model}", parent, SpanKind.CLIENT, attributes, start_time=span_ns[0])
        if message is None:
            telemetry.mark_error(span, error_of(result).type)
        span.end(end_time=span_ns[1])
        return message
