"""`anvil run --mode batches`: the jobs go through the Message Batches API at half price.

Never submit twice: before each create call an "intent" row (its jobs, its worst-case cost) is
committed to the journal's `batches` table; the batch id is recorded the moment the server
answers. A re-run re-attaches to recorded batches. An intent without an id (the process died
during the create call, or the connection dropped) is looked up among the server's batches:
one created after the intent, not recorded by any run, with as many requests and, once it has
ended, exactly the intent's custom_ids, is adopted. A candidate still processing is waited for
(its custom_ids can only be read from its results); when none is left the jobs are submitted
again. A custom_id is `<tag>-<seq>`, the tag a hash of the run id, so another run's or another
state dir's batch never matches.

Results are downloaded into the jobs rows in one transaction per batch (cost with the batch
discount); errored, expired and canceled requests are resubmitted in a new batch, up to
`batches.max_attempts` submissions per job.

Every call goes out with the SDK's retries off. A transient API error while polling,
downloading or looking up batches (connection, timeout, 408/409/429/5xx/529) is one plain line
and a wait (backoff from the poll interval, full jitter, at least the server's `retry-after`);
then the round is tried again, for as long as the run lasts (Ctrl-C stops it as usual). 401/403
or a spend-cap 429 stops the run (exit 3, resumable), as does an error retrying cannot fix.

Batches are single-turn: a job whose tools name an `anvil_command` cannot run them here, so it
fails with an error saying so (`--mode messages` runs it); no Anvil-only key is ever sent.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2

from anvil_cli.batch.job import Job
from anvil_cli.cache import CachedResult, ResultCache, request_key, result_from_cache
from anvil_cli.config import Settings
from anvil_cli.engine.batch_ids import (
    INTENT_SKEW_S,
    custom_id,
    match_intent,
    run_tag,
    seq_of,
    server_batches,
)
from anvil_cli.engine.batch_results import error_of, succeeded_result
from anvil_cli.engine.classify import ErrorInfo, Verdict, classify
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
from anvil_cli.engine.tools import COMMAND_KEY, split_tools
from anvil_cli.governor.backoff import backoff_s, retry_after_s
from anvil_cli.metrics import RunMetrics
from anvil_cli.pricing import Pricer
from anvil_cli.prompt_cache import mark_prompt_cache
from anvil_cli.routing import model_for
from anvil_cli.tokens import estimate_input_tokens

WAIT_SLICE_S = 0.2  # re-check for Ctrl-C at least this often while waiting between polls
BACKOFF_MAX_POLLS = 10.0  # transient API errors: wait at most this many poll intervals (jittered)
TOOLS_NEED_MESSAGES = (
    f"tools with {COMMAND_KEY} need --mode messages: a Message Batches request is single-turn,"
    " so Anvil cannot run the tool and send its result back"
)


def _uses_commands(request: dict[str, Any]) -> bool:
    tools = request.get("tools") or []
    return any(isinstance(tool, dict) and COMMAND_KEY in tool for tool in tools)


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
    rand: Callable[[], float] = random.random  # jitter of the backoff after an API error
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


class BatchesRun:
    """Submits, polls and downloads until every job has a result, or the run must stop."""

    def __init__(self, ctx: BatchesContext) -> None:
        self.ctx = ctx
        self.cfg = ctx.settings.batches
        self.api = ctx.client.with_options(max_retries=0)  # retries are ours (see _api_trouble)
        self.tag = run_tag(ctx.run_id)
        self._seen: dict[str, str] = {}  # batch id -> last progress line printed
        self._budget_blocked = False
        self._doing = "talking to the Message Batches API"  # for the line after an API error
        self._failures = 0  # API errors in a row: the backoff's attempt number
        self._troubled = False  # an API error in this round
        self._foreign: set[str] = set()  # ended server batches whose custom_ids are not ours
        self._waiting_for: dict[int, str] = {}  # intent n -> unconfirmed candidate announced

    def run(self) -> RunEnd:
        ctx = self.ctx
        while True:
            if ctx.signals.count:
                return RunEnd(interrupted=True)
            self._troubled = False
            try:
                end, ended = self._round()
            except (anthropic.APIError, httpx2.HTTPError) as exc:
                stop = self._api_trouble(exc)
                if stop is not None:
                    return stop
                continue
            if end is not None:
                return end
            if not self._troubled:
                self._failures = 0
            if not ended:
                self._wait(self.cfg.poll_interval_s)

    def _round(self) -> tuple[RunEnd | None, bool]:
        """One pass: resolve intents, submit, poll. (how the run ends, or None; any batch ended)"""
        ctx = self.ctx
        self._resolve_intents()
        stop = self._submit_pending()
        if stop is not None:
            return stop, False
        open_rows = ctx.journal.batches(ctx.run_id, (BATCH_SUBMITTED, BATCH_INTENT))
        if not open_rows:
            return (self._budget_end() if self._budget_blocked else RunEnd()), False
        return None, self._poll(open_rows)

    # -- API errors -----------------------------------------------------------------------------

    def _api_trouble(self, exc: anthropic.APIError | httpx2.HTTPError) -> RunEnd | None:
        """After an API error: a RunEnd when the run must stop, else None after a backoff wait."""
        if isinstance(exc, httpx2.HTTPError):  # the results stream broke off mid-download
            info = ErrorInfo(Verdict.RETRY, "connection_error", str(exc) or type(exc).__name__, None, True)
        else:
            info = classify(exc)
        if info.verdict is Verdict.STOP_RUN:
            return RunEnd(stop_reason=info.type, stop_message=f"{self._doing}: {info.message}")
        if info.verdict is Verdict.FAIL_JOB and isinstance(exc, anthropic.APIStatusError):
            return RunEnd(
                stop_reason="batches_api_error",
                stop_message=f"{self._doing}: {info.status_code} {info.type}: {info.message}",
            )
        self._back_off(exc, info, "trying again")
        return None

    def _back_off(self, exc: BaseException, info: ErrorInfo, then: str) -> None:
        """One plain line, then wait: backoff from the poll interval, at least `retry-after`."""
        self._failures += 1
        self._troubled = True
        base = self.cfg.poll_interval_s
        server_wait = retry_after_s(exc, wall_now=time.time())
        wait = backoff_s(self._failures, base, base * BACKOFF_MAX_POLLS, self.ctx.rand(), server_wait)
        status = f" {info.status_code}" if info.status_code is not None else ""
        self.ctx.say(
            f"Message Batches API error{status} ({info.type}) while {self._doing}: {info.message};"
            f" {then} in {wait:.1f} s"
        )
        self._wait(wait)

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
                item = self._prepare(Job.from_record(json.loads(record)), dispatches)
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
        if _uses_commands(request):
            error = {"type": "invalid_request_error", "message": TOOLS_NEED_MESSAGES, "status_code": None}
            now = time.time()
            self._record(
                JobResult(job.seq, succeeded=False, model=model, attempts=0, error=error, finished_at=now)
            )
            return None
        if dispatches >= self.cfg.max_attempts:
            error = {
                "type": "batch_error",
                "message": f"gave up after {dispatches} submissions",
                "status_code": None,
            }
            self._record(JobResult(seq=job.seq, succeeded=False, model=model, attempts=0, error=error))
            return None
        params = split_tools(request)[0]  # as the API must see it: no Anvil-only keys
        if ctx.settings.cache.prompt_caching:
            params = mark_prompt_cache(params, ctx.settings.cache.prompt_caching_min_chars)
        worst = ctx.pricer.worst_case_usd(model, estimate_input_tokens(params), job.max_tokens, batch=True)
        size = len(json.dumps({"custom_id": custom_id(self.tag, job.seq), "params": params})) + 2
        return _Item(job.seq, model, params, worst, size)

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
        with ctx.journal.transaction():
            n = ctx.journal.add_batch_intent(ctx.run_id, seqs, sum(i.worst_usd for i in chunk))
            ctx.journal.mark_dispatched(ctx.run_id, seqs, time.time())
        requests = [{"custom_id": custom_id(self.tag, i.seq), "params": i.params} for i in chunk]
        self._doing = f"creating a batch of {len(seqs)} request(s)"
        try:
            batch = self.api.messages.batches.create(requests=requests)  # type: ignore[arg-type]
        except anthropic.APIConnectionError:
            return None  # it may exist: the intent is looked up on the server on the next round
        except anthropic.APIStatusError as exc:
            return self._create_refused(n, seqs, exc)
        ctx.journal.set_batch(ctx.run_id, n, BATCH_SUBMITTED, batch.id)
        ctx.say(f"submitted batch {batch.id}: {len(seqs)} request(s)")
        return None

    def _create_refused(self, n: int, seqs: list[int], exc: anthropic.APIStatusError) -> RunEnd | None:
        ctx = self.ctx
        with ctx.journal.transaction():
            ctx.journal.set_batch(ctx.run_id, n, BATCH_ABANDONED)
            ctx.journal.return_to_pending(ctx.run_id, seqs)
        info = classify(exc)
        if info.verdict is Verdict.STOP_RUN:
            return RunEnd(stop_reason=info.type, stop_message=f"batch create refused: {info.message}")
        self._back_off(exc, info, "resubmitting")
        return None

    # -- intents without a batch id -----------------------------------------------------------

    def _resolve_intents(self) -> None:
        ctx = self.ctx
        intents = ctx.journal.batches(ctx.run_id, (BATCH_INTENT,))
        if not intents:
            return
        self._doing = "looking for batches whose create call was not confirmed"
        known = ctx.journal.known_batch_ids() | self._foreign
        candidates = server_batches(self.api, min(i.created_at for i in intents) - INTENT_SKEW_S, known)
        for intent in intents:
            self._doing = f"reading the custom_ids of the server's batches for intent {intent.n}"
            match, unsure = match_intent(self.api, self.tag, intent, candidates, self._foreign)
            if match is not None:
                candidates.remove(match)
                ctx.journal.set_batch(ctx.run_id, intent.n, BATCH_SUBMITTED, match.id)
                ctx.say(f"re-attached to batch {match.id} (its create call was not confirmed)")
            elif unsure is not None:
                candidates.remove(unsure)  # one intent waits on it; the others look further
                if self._waiting_for.get(intent.n) != unsure.id:
                    self._waiting_for[intent.n] = unsure.id
                    ctx.say(
                        f"batch {unsure.id} may hold {len(intent.seqs)} unconfirmed request(s):"
                        " waiting for it to end to check its custom_ids"
                    )
            else:
                with ctx.journal.transaction():
                    ctx.journal.set_batch(ctx.run_id, intent.n, BATCH_ABANDONED)
                    ctx.journal.return_to_pending(ctx.run_id, intent.seqs)

    # -- polling and results ------------------------------------------------------------------

    def _poll(self, rows: list[BatchRow]) -> bool:
        """Check every open batch once; download the ended ones. True when any ended."""
        ended = False
        for row in rows:
            if row.batch_id is None or self.ctx.signals.count:
                continue
            self._doing = f"polling batch {row.batch_id}"
            batch = self.api.messages.batches.retrieve(row.batch_id)
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
        self._doing = f"downloading the results of batch {row.batch_id}"
        entries = list(self.api.messages.batches.results(row.batch_id))
        with ctx.journal.transaction():
            answered: set[int] = set()
            for entry in entries:
                seq = seq_of(entry.custom_id, self.tag)
                if seq is not None and seq in jobs and seq not in answered:
                    answered.add(seq)
                    self._ingest(jobs[seq], entry.result)
            for seq in set(row.seqs) - answered:  # not in the results: treat as errored
                self._retry_or_fail(
                    jobs[seq], {"type": "missing", "message": "no result", "status_code": None}
                )
            ctx.journal.set_batch(ctx.run_id, row.n, BATCH_ENDED)
        ok = sum(1 for e in entries if e.result.type == "succeeded")
        ctx.say(f"batch {row.batch_id}: downloaded {ok} result(s), {len(entries) - ok} to retry or failed")

    def _ingest(self, job_row: dict[str, Any], result: Any) -> None:
        if job_row["state"] not in (PENDING, RUNNING):
            return  # already settled (never count a result twice)
        if result.type != "succeeded":
            self._retry_or_fail(job_row, error_of(result))
            return
        ctx = self.ctx
        job = Job.from_record(job_row["job"])
        model = job_model(job, ctx.settings)
        done = succeeded_result(job_row, model, result.message, ctx.pricer)
        self._record(done)
        if ctx.cache is not None:
            entry = CachedResult(model, done.output, done.stop_reason, done.usage, done.cost_usd)
            ctx.cache.put(request_key(job.request(model)), entry)

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
