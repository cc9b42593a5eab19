"""`anvil run --mode batches`: the jobs go through the Message Batches API at half price.

Never submit twice: before each create call an "intent" row (its jobs, its worst-case cost) is
committed to the journal's `batches` table; the batch id is recorded the moment the server
answers. A re-run re-attaches to recorded batches. An intent without an id (the process died
during the create call, or the connection dropped) is looked up among the server's batches:
one created after the intent, not recorded by any run, with as many requests, is adopted;
when none is found the jobs are submitted again.

Results are downloaded into the jobs rows in one transaction per batch (cost with the batch
discount); errored, expired and canceled requests are resubmitted in a new batch, up to
`batches.max_attempts` submissions per job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anthropic

from anvil_cli.batch.job import Job
from anvil_cli.cache import CachedResult, ResultCache, request_key, result_from_cache
from anvil_cli.config import Settings
from anvil_cli.engine.conductor import RunEnd
from anvil_cli.engine.journal import (
    BATCH_ABANDONED,
    BATCH_ENDED,
    BATCH_INTENT,
    BATCH_SUBMITTED,
    PENDING,
    RUNNING,
    BatchRow,
    JobResult,
    Journal,
)
from anvil_cli.engine.signals import SignalState
from anvil_cli.metrics import RunMetrics
from anvil_cli.pricing import Pricer
from anvil_cli.prompt_cache import mark_prompt_cache
from anvil_cli.routing import model_for
from anvil_cli.tokens import estimate_input_tokens

INTENT_SKEW_S = 60.0  # a server batch created this long before its intent may still be it
WAIT_SLICE_S = 0.2  # re-check for Ctrl-C at least this often while waiting between polls


def custom_id(seq: int) -> str:
    """A job's custom_id: `j<seq>`, always within `^[a-zA-Z0-9_-]{1,64}$`."""
    return f"j{seq}"


def seq_of(custom: str) -> int | None:
    return int(custom[1:]) if custom.startswith("j") and custom[1:].isdigit() else None


@dataclass
class BatchesContext:
    """What a batches-mode run needs."""

    settings: Settings
    journal: Journal
    run_id: str
    client: anthropic.Anthropic
    metrics: RunMetrics
    signals: SignalState
    say: Callable[[str], None]
    sleep: Callable[[float], None] = time.sleep
    pricer: Pricer = field(init=False)
    cache: ResultCache | None = field(init=False)

    def __post_init__(self) -> None:
        self.pricer = Pricer.from_settings(self.settings)
        self.cache = ResultCache(self.settings.state_dir) if self.settings.cache.enabled else None


@dataclass
class _Item:
    seq: int
    model: str
    params: dict[str, Any]
    worst_usd: float
    size: int


def job_model(job: Job, settings: Settings) -> str:
    return model_for(job, settings.routing)


def _usage(message: Any) -> dict[str, Any]:
    data: dict[str, Any] = message.usage.model_dump(exclude_none=True)
    return data


def _text(message: Any) -> str:
    return "".join(getattr(b, "text", "") for b in message.content if b.type == "text")


def _error_of(result: Any) -> dict[str, Any]:
    err = getattr(getattr(result, "error", None), "error", None)
    if err is None:
        return {"type": result.type, "message": f"batch request {result.type}", "status_code": None}
    return {"type": err.type, "message": err.message, "status_code": None}


def _ts(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value or 0)


def _counts_total(batch: Any) -> int:
    c = batch.request_counts
    return int(c.processing + c.succeeded + c.errored + c.canceled + c.expired)


class BatchesRun:
    """Submits, polls and downloads until every job has a result, or the run must stop."""

    def __init__(self, ctx: BatchesContext) -> None:
        self.ctx = ctx
        self.cfg = ctx.settings.batches
        self._seen: dict[str, str] = {}  # batch id -> last progress line printed
        self._budget_blocked = False

    def run(self) -> RunEnd:
        ctx = self.ctx
        while True:
            if ctx.signals.count:
                return RunEnd(interrupted=True)
            self._resolve_intents()
            stop = self._submit_pending()
            if stop is not None:
                return stop
            open_rows = ctx.journal.batches(ctx.run_id, (BATCH_SUBMITTED, BATCH_INTENT))
            if not open_rows:
                return self._budget_end() if self._budget_blocked else RunEnd()
            if not self._poll(open_rows):
                self._wait(self.cfg.poll_interval_s)

    def _budget_end(self) -> RunEnd:
        spent = self.ctx.journal.totals(self.ctx.run_id)["cost_usd"]
        return RunEnd(stop_reason="budget", stop_message=f"budget reached: ${spent:.4f} spent of the cap")

    def _wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.ctx.signals.count and (left := end - time.monotonic()) > 0:
            self.ctx.sleep(min(left, WAIT_SLICE_S))

    # -- submitting -----------------------------------------------------------------------------

    def _submit_pending(self) -> RunEnd | None:
        ctx = self.ctx
        busy = {
            s for row in ctx.journal.batches(ctx.run_id, (BATCH_INTENT, BATCH_SUBMITTED)) for s in row.seqs
        }
        chunk: list[_Item] = []
        after: tuple[int, int] | None = None
        self._budget_blocked = False
        while rows := ctx.journal.pending_after(ctx.run_id, after, 1000):
            for priority, seq, record, dispatches in rows:
                after = (priority, seq)
                if seq in busy:
                    continue
                item = self._prepare(Job.from_record(record), dispatches)
                if item is None:
                    continue
                if chunk and (
                    len(chunk) >= self.cfg.max_requests or self._size(chunk) + item.size > self.cfg.max_bytes
                ):
                    stop = self._submit(chunk)
                    if stop is not None or self._budget_blocked:
                        return stop
                    chunk = []
                chunk.append(item)
        return self._submit(chunk) if chunk else None

    @staticmethod
    def _size(chunk: list[_Item]) -> int:
        return sum(i.size for i in chunk) + 64

    def _prepare(self, job: Job, dispatches: int) -> _Item | None:
        """The batch item of a pending job; None when it was settled here (cache hit, gave up)."""
        ctx = self.ctx
        model = job_model(job, ctx.settings)
        request = job.request(model)
        hit = ctx.cache.get(request_key(request)) if ctx.cache is not None else None
        if hit is not None:
            self._record_cached(job.seq, hit)
            return None
        if dispatches >= self.cfg.max_attempts:
            error = {
                "type": "batch_error",
                "message": f"gave up after {dispatches} submissions",
                "status_code": None,
            }
            self._record(JobResult(seq=job.seq, succeeded=False, model=model, attempts=0, error=error))
            return None
        if ctx.settings.cache.prompt_caching:
            request = mark_prompt_cache(request, ctx.settings.cache.prompt_caching_min_chars)
        worst = ctx.pricer.worst_case_usd(model, estimate_input_tokens(request), job.max_tokens, batch=True)
        size = len(json.dumps({"custom_id": custom_id(job.seq), "params": request})) + 2
        return _Item(job.seq, model, request, worst, size)

    def _fitting(self, chunk: list[_Item]) -> list[_Item]:
        """The longest prefix of `chunk` whose worst case fits in the budget."""
        max_usd = self.ctx.settings.budget.max_usd
        if max_usd is None:
            return chunk
        ctx = self.ctx
        held = sum(r.worst_usd for r in ctx.journal.batches(ctx.run_id, (BATCH_INTENT, BATCH_SUBMITTED)))
        room = max_usd - ctx.journal.totals(ctx.run_id)["cost_usd"] - held
        fits: list[_Item] = []
        for item in chunk:
            room -= item.worst_usd
            if room < -1e-9:
                self._budget_blocked = True
                break
            fits.append(item)
        return fits

    def _submit(self, chunk: list[_Item]) -> RunEnd | None:
        ctx = self.ctx
        chunk = self._fitting(chunk)
        if not chunk:
            return None
        seqs = [i.seq for i in chunk]
        ctx.journal.begin()
        n = ctx.journal.add_batch_intent(ctx.run_id, seqs, sum(i.worst_usd for i in chunk))
        ctx.journal.mark_dispatched(ctx.run_id, seqs, time.time())
        ctx.journal.commit()
        requests = [{"custom_id": custom_id(i.seq), "params": i.params} for i in chunk]
        try:
            batch = ctx.client.with_options(max_retries=0).messages.batches.create(requests=requests)  # type: ignore[arg-type]
        except anthropic.APIConnectionError:
            return None  # it may exist: the intent is looked up on the server on the next round
        except anthropic.APIStatusError as exc:
            return self._create_refused(n, seqs, exc)
        ctx.journal.set_batch(ctx.run_id, n, BATCH_SUBMITTED, batch.id)
        ctx.say(f"submitted batch {batch.id}: {len(seqs)} request(s)")
        return None

    def _create_refused(self, n: int, seqs: list[int], exc: anthropic.APIStatusError) -> RunEnd | None:
        ctx = self.ctx
        ctx.journal.begin()
        ctx.journal.set_batch(ctx.run_id, n, BATCH_ABANDONED)
        ctx.journal.return_to_pending(ctx.run_id, seqs)
        ctx.journal.commit()
        if exc.status_code in (401, 403):
            return RunEnd(
                stop_reason="authentication_error", stop_message=f"batch create refused: {exc.message}"
            )
        ctx.say(f"batch create failed ({exc.status_code}): {exc.message}; will resubmit")
        self._wait(self.cfg.poll_interval_s)
        return None

    # -- intents without a batch id -----------------------------------------------------------

    def _resolve_intents(self) -> None:
        ctx = self.ctx
        intents = ctx.journal.batches(ctx.run_id, (BATCH_INTENT,))
        if not intents:
            return
        known = ctx.journal.known_batch_ids()
        candidates = self._server_batches(min(i.created_at for i in intents) - INTENT_SKEW_S, known)
        for intent in intents:
            match = next(
                (
                    b
                    for b in candidates
                    if _ts(b.created_at) >= intent.created_at - INTENT_SKEW_S
                    and _counts_total(b) == len(intent.seqs)
                ),
                None,
            )
            if match is not None:
                candidates.remove(match)
                ctx.journal.set_batch(ctx.run_id, intent.n, BATCH_SUBMITTED, match.id)
                ctx.say(f"re-attached to batch {match.id} (its create call was not confirmed)")
            else:
                ctx.journal.begin()
                ctx.journal.set_batch(ctx.run_id, intent.n, BATCH_ABANDONED)
                ctx.journal.return_to_pending(ctx.run_id, intent.seqs)
                ctx.journal.commit()

    def _server_batches(self, since: float, known: set[str]) -> list[Any]:
        """The server's batches created since `since` that no run has recorded, oldest first."""
        found = []
        for batch in self.ctx.client.messages.batches.list(limit=100):
            if _ts(batch.created_at) < since:
                break
            if batch.id not in known:
                found.append(batch)
        return sorted(found, key=lambda b: _ts(b.created_at))

    # -- polling and results ------------------------------------------------------------------

    def _poll(self, rows: list[BatchRow]) -> bool:
        """Check every open batch once; download the ended ones. True when any ended."""
        ended = False
        for row in rows:
            if row.batch_id is None or self.ctx.signals.count:
                continue
            batch = self.ctx.client.messages.batches.retrieve(row.batch_id)
            self._progress(row, batch)
            if batch.processing_status == "ended":
                self._download(row)
                ended = True
        return ended

    def _progress(self, row: BatchRow, batch: Any) -> None:
        c = batch.request_counts
        done = c.succeeded + c.errored + c.canceled + c.expired
        line = (
            f"batch {batch.id}: {batch.processing_status}, {done}/{len(row.seqs)} done"
            f" (succeeded {c.succeeded}, errored {c.errored}, expired {c.expired})"
        )
        if self._seen.get(batch.id) != line:
            self._seen[batch.id] = line
            self.ctx.say(line)

    def _download(self, row: BatchRow) -> None:
        ctx = self.ctx
        assert row.batch_id is not None
        jobs = {r["seq"]: r for r in ctx.journal.job_rows(ctx.run_id, row.seqs)}
        entries = list(ctx.client.messages.batches.results(row.batch_id))
        ctx.journal.begin()
        try:
            answered: set[int] = set()
            for entry in entries:
                seq = seq_of(entry.custom_id)
                if seq is not None and seq in jobs and seq not in answered:
                    answered.add(seq)
                    self._ingest(jobs[seq], entry.result)
            for seq in set(row.seqs) - answered:  # not in the results: treat as errored
                self._retry_or_fail(
                    jobs[seq], {"type": "missing", "message": "no result", "status_code": None}
                )
            ctx.journal.set_batch(ctx.run_id, row.n, BATCH_ENDED)
            ctx.journal.commit()
        except BaseException:
            ctx.journal.rollback()
            raise
        ok = sum(1 for e in entries if e.result.type == "succeeded")
        ctx.say(f"batch {row.batch_id}: downloaded {ok} result(s), {len(entries) - ok} to retry or failed")

    def _ingest(self, job_row: dict[str, Any], result: Any) -> None:
        if job_row["state"] not in (PENDING, RUNNING):
            return  # already settled (never count a result twice)
        if result.type != "succeeded":
            self._retry_or_fail(job_row, _error_of(result))
            return
        ctx = self.ctx
        job = Job.from_record(job_row["job"])
        model = job_model(job, ctx.settings)
        message = result.message
        usage = _usage(message)
        cost = ctx.pricer.cost_usd(model, usage, batch=True)
        output = _text(message)
        now = time.time()
        self._record(
            JobResult(
                seq=job.seq,
                succeeded=True,
                model=model,
                attempts=1,
                output=output,
                stop_reason=message.stop_reason,
                usage=usage,
                cost_usd=cost,
                attempt_log=[{"n": job_row["dispatches"], "model": model, "status_code": 200, "batch": True}],
                latency_s=now - (job_row["started_at"] or now),
                finished_at=now,
            )
        )
        if ctx.cache is not None:
            ctx.cache.put(
                request_key(job.request(model)), CachedResult(model, output, message.stop_reason, usage, cost)
            )

    def _retry_or_fail(self, job_row: dict[str, Any], error: dict[str, Any]) -> None:
        ctx = self.ctx
        seq = job_row["seq"]
        if job_row["dispatches"] < self.cfg.max_attempts:
            ctx.journal.return_to_pending(ctx.run_id, [seq], attempts=1)
            return
        model = job_model(Job.from_record(job_row["job"]), ctx.settings)
        self._record(
            JobResult(seq=seq, succeeded=False, model=model, attempts=1, error=error, finished_at=time.time())
        )

    def _record_cached(self, seq: int, hit: CachedResult) -> None:
        self._record(result_from_cache(seq, hit))

    def _record(self, result: JobResult) -> None:
        self.ctx.journal.record_result(self.ctx.run_id, result)
        self.ctx.metrics.on_result(result, time.monotonic())


def run_batches(ctx: BatchesContext) -> RunEnd:
    """Run the pending jobs of `ctx.run_id` through Message Batches; how the run ended."""
    return BatchesRun(ctx).run()
