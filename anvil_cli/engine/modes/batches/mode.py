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

It reports and is steered like messages mode: about once a second it hands the views an
`EngineState` through the run's `Ticker` (dashboard, `anvil status`, `GET /status`); Ctrl-C,
pause and drain are `batches_steer.Steering`, checked right before every create call; the
budget is the governor's guard (`batches_budget.BatchesBudget`), warning included.
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

from anvil_cli.config.settings import Settings
from anvil_cli.engine.commands import CommandSource
from anvil_cli.engine.journal.store import (
    BATCH_ABANDONED,
    BATCH_INTENT,
    BATCH_SUBMITTED,
    BatchRow,
    JobResult,
    Journal,
)
from anvil_cli.engine.modes.batches.budget import BatchesBudget
from anvil_cli.engine.modes.batches.ids import (
    INTENT_SKEW_S,
    custom_id,
    match_intent,
    run_tag,
    server_batches,
)
from anvil_cli.engine.modes.batches.ingest import Ingest
from anvil_cli.engine.modes.batches.requests import BatchItem, chunk_bytes, prepare
from anvil_cli.engine.modes.batches.state import OPEN, engine_state, phase_of
from anvil_cli.engine.modes.batches.steer import Steering
from anvil_cli.engine.process.signals import SignalState
from anvil_cli.engine.result_cache import ResultCache
from anvil_cli.engine.run_end import RunEnd
from anvil_cli.engine.ticker import Ticker
from anvil_cli.engine.worker.classify import ErrorInfo, Verdict, classify
from anvil_cli.jobs.job import Job
from anvil_cli.policy.governor.backoff import backoff_s, retry_after_s
from anvil_cli.policy.governor.budget import exhausted_message
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.policy.unreachable import UNREACHABLE, Reachability
from anvil_cli.snapshot.metrics import RunMetrics
from anvil_cli.snapshot.state import EngineState

WAIT_SLICE_S = 0.2  # re-check for Ctrl-C and commands at least this often while waiting
TICK_EVERY_S = 1.0  # hand the views an EngineState this often (as the conductor does)
BACKOFF_MAX_POLLS = 10.0  # transient API errors: wait at most this many poll intervals (jittered)


def _silent(_line: str) -> None:
    pass


@dataclass
class BatchesContext:
    """What a batches-mode run needs."""

    settings: Settings
    journal: Journal
    run_id: str
    client: anthropic.Anthropic
    metrics: RunMetrics
    signals: SignalState
    ticker: Ticker
    control: CommandSource | None = None
    say: Callable[[str], None] = _silent  # progress lines, through the reporter (nothing with -q)
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random  # jitter of the backoff after an API error
    clock: Callable[[], float] = time.monotonic  # the metrics' clock, for the ticks
    pricer: Pricer = field(init=False)
    cache: ResultCache | None = field(init=False)

    def __post_init__(self) -> None:
        self.pricer = Pricer.from_settings(self.settings)
        self.cache = ResultCache(self.settings.state_dir) if self.settings.cache.enabled else None


class BatchesRun:
    """Submits, polls and downloads until every job has a result, or the run must stop."""

    def __init__(self, ctx: BatchesContext) -> None:
        self.ctx = ctx
        self.cfg = ctx.settings.batches
        self.api = ctx.client.with_options(max_retries=0)  # retries are ours (see _api_trouble)
        self.tag = run_tag(ctx.run_id)
        self.ingest = Ingest(ctx.journal, ctx.run_id, ctx.settings, ctx.metrics, ctx.pricer, ctx.cache)
        self.steer = Steering(ctx.journal, ctx.run_id, ctx.signals, ctx.metrics, ctx.control, ctx.say)
        cap = ctx.settings.budget
        self.budget = BatchesBudget(
            cap.max_usd,
            cap.warn_usd,
            ctx.journal.totals(ctx.run_id)["cost_usd"],
            [row.worst_usd for row in ctx.journal.batches(ctx.run_id, OPEN)],
        )
        self._seen: dict[str, str] = {}  # batch id -> last progress line printed
        self._processing: dict[str, int] = {}  # batch id -> requests processing at the last poll
        self._held_back = False  # this round left jobs unsubmitted (budget, pause, stop)
        self._doing = "talking to the Message Batches API"  # for the line after an API error
        self._failures = 0  # API errors in a row: the backoff's attempt number
        self._troubled = False  # an API error in this round
        self._foreign: set[str] = set()  # ended server batches whose custom_ids are not ours
        self._waiting_for: dict[int, str] = {}  # intent n -> unconfirmed candidate announced
        self._last_tick: float | None = None
        # the rule messages mode follows (policy/unreachable.py): nothing but connect failures
        # for run.unreachable_after_s while the API never answered stops the run, resumably
        self.reach = Reachability(ctx.settings.run.unreachable_after_s, str(ctx.client.base_url))

    def run(self) -> RunEnd:
        ctx = self.ctx
        try:
            end = self._loop()
            if end.stop_reason is not None:  # as the conductor's stop_run records it
                data = {"reason": end.stop_reason, "message": end.stop_message}
                ctx.journal.add_event(ctx.run_id, "run_stopping", data)
            self._tick(ctx.clock(), end)  # the last frame and stored figures show the end
        finally:
            if ctx.cache is not None:
                ctx.cache.close()
        return end

    def _loop(self) -> RunEnd:
        while True:
            self.steer.apply()
            if self.steer.stopping:
                return self.steer.end()
            self._tick_if_due()
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
                self.reach.answered()  # a whole round went through: the API is there
            if not ended:
                self._wait(self.cfg.poll_interval_s)

    def _round(self) -> tuple[RunEnd | None, bool]:
        """One pass: resolve intents, submit, poll. (how the run ends, or None; any batch ended)"""
        ctx = self.ctx
        self._resolve_intents()
        stop = self._submit_pending()
        if stop is not None:
            return stop, False
        open_rows = ctx.journal.batches(ctx.run_id, OPEN)
        if open_rows:
            return None, self._poll(open_rows)
        if self.steer.stopping:
            return self.steer.end(), False
        if self.budget.denied:
            return self._budget_end(), False
        if self.steer.paused:  # alive until resume or drain, as in messages mode
            return None, False
        return RunEnd(), False

    # -- ticks ----------------------------------------------------------------------------------

    def _tick_if_due(self) -> None:
        now = self.ctx.clock()
        if self._last_tick is None or now - self._last_tick >= TICK_EVERY_S:
            self._tick(now)

    def _tick(self, now: float, end: RunEnd | None = None) -> None:
        """Budget notices into the journal (as the conductor records the governor's), then the
        views get this driver's state."""
        ctx = self.ctx
        events = self.budget.events()
        if events:
            with ctx.journal.transaction():
                for kind, data in events:
                    ctx.journal.add_event(ctx.run_id, kind, data)
        ctx.ticker.tick(self.engine_state(end), ctx.metrics, now)
        self._last_tick = now

    def engine_state(self, end: RunEnd | None = None) -> EngineState:
        """What the views may show of this driver, as one value (`end`: the run has ended so)."""
        phase = phase_of(end, stopping=self.steer.stopping or self.budget.denied, paused=self.steer.paused)
        return engine_state(
            self.ctx.journal,
            self.ctx.run_id,
            phase,
            paused=self.steer.paused,
            budget=self.budget.view(),
            processing=self._processing,
        )

    # -- API errors -----------------------------------------------------------------------------

    def _api_trouble(self, exc: anthropic.APIError | httpx2.HTTPError) -> RunEnd | None:
        """After an API error: a RunEnd when the run must stop, else None after a backoff wait."""
        if isinstance(exc, httpx2.HTTPError):  # the results stream broke off mid-download
            info = ErrorInfo(Verdict.RETRY, "connection_error", str(exc) or type(exc).__name__, None, True)
        else:
            info = classify(exc)
        unreachable = self._unreachable(info)
        if unreachable is not None:
            return unreachable
        if info.verdict is Verdict.STOP_RUN:
            return RunEnd(stop_reason=info.type, stop_message=f"{self._doing}: {info.message}")
        if info.verdict is Verdict.FAIL_JOB and isinstance(exc, anthropic.APIStatusError):
            return RunEnd(
                stop_reason="batches_api_error",
                stop_message=f"{self._doing}: {info.status_code} {info.type}: {info.message}",
            )
        self._back_off(exc, info, "trying again")
        return None

    def _unreachable(self, info: ErrorInfo) -> RunEnd | None:
        """A RunEnd once every attempt has failed to connect for `run.unreachable_after_s`."""
        attempt: dict[str, object] = {
            "unreachable": info.unreachable,
            "host": info.host,
            "message": info.message,
        }
        self.reach.attempt(attempt, self.ctx.clock())
        message = self.reach.verdict(self.ctx.clock())
        return None if message is None else RunEnd(stop_reason=UNREACHABLE, stop_message=message)

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
        spent = self.ctx.journal.totals(self.ctx.run_id)["cost_usd"]  # the whole run's, every resume
        message = exhausted_message(spent, self.budget.denied_worst_usd, self.budget.guard.max_usd)
        return RunEnd(stop_reason="budget", stop_message=message)

    def _wait(self, seconds: float) -> None:
        """Wait between polls (or after an API error), ticking and taking commands; a stop
        (Ctrl-C, drain) cuts it short."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.steer.apply()
            if self.steer.stopping:
                return
            self._tick_if_due()
            self.ctx.sleep(min(left, WAIT_SLICE_S))

    # -- submitting -----------------------------------------------------------------------------

    def _may_submit(self) -> bool:
        """Not after Ctrl-C or a drain, not while paused, not once the budget is exhausted."""
        return self.steer.may_submit() and not self.budget.denied

    def _submit_pending(self) -> RunEnd | None:
        ctx = self.ctx
        self._held_back = False
        if not self._may_submit():
            return None
        busy = {s for row in ctx.journal.batches(ctx.run_id, OPEN) for s in row.seqs}
        chunk: list[BatchItem] = []
        after: tuple[int, int] | None = None
        while rows := ctx.journal.pending_after(ctx.run_id, after, 1000):
            for priority, seq, record, dispatches in rows:
                after = (priority, seq)
                if seq in busy:
                    continue
                item = self._prepare(Job.from_record(json.loads(record)), dispatches)
                if item is None:
                    continue
                if chunk and (
                    len(chunk) >= self.cfg.max_requests or chunk_bytes(chunk) + item.size > self.cfg.max_bytes
                ):
                    stop = self._submit(chunk)
                    if stop is not None or self._held_back:
                        return stop
                    chunk = []
                chunk.append(item)
        return self._submit(chunk) if chunk else None

    def _prepare(self, job: Job, dispatches: int) -> BatchItem | None:
        """The batch item of a pending job; None when it was settled here (cache hit, gave up)."""
        ctx = self.ctx
        item = prepare(job, dispatches, ctx.settings, ctx.pricer, ctx.cache, self.tag)
        if isinstance(item, JobResult):
            self.ingest.record(item)
            return None
        return item

    def _submit(self, chunk: list[BatchItem]) -> RunEnd | None:
        ctx = self.ctx
        if not self._may_submit():  # right before the call: nothing goes out after the first Ctrl-C
            self._held_back = True
            return None
        fits = self.budget.fitting([i.worst_usd for i in chunk])
        if fits < len(chunk):
            self._held_back = True
            chunk = chunk[:fits]
        if not chunk:
            return None
        seqs = [i.seq for i in chunk]
        worst_usd = sum(i.worst_usd for i in chunk)
        with ctx.journal.transaction():
            n = ctx.journal.add_batch_intent(ctx.run_id, seqs, worst_usd)
            ctx.journal.mark_dispatched(ctx.run_id, seqs, time.time())
        self.budget.hold(worst_usd)
        requests = [{"custom_id": custom_id(self.tag, i.seq), "params": i.params} for i in chunk]
        self._doing = f"creating a batch of {len(seqs)} request(s)"
        try:
            batch = self.api.messages.batches.create(requests=requests)  # type: ignore[arg-type]
        except anthropic.APIConnectionError as exc:
            self._troubled = True  # it may exist: the intent is looked up on the next round
            return self._unreachable(classify(exc))
        except anthropic.APIStatusError as exc:
            return self._create_refused(n, seqs, worst_usd, exc)
        ctx.journal.set_batch(ctx.run_id, n, BATCH_SUBMITTED, batch.id)
        ctx.say(f"submitted batch {batch.id}: {len(seqs)} request(s)")
        self._tick_if_due()
        return None

    def _create_refused(
        self, n: int, seqs: list[int], worst_usd: float, exc: anthropic.APIStatusError
    ) -> RunEnd | None:
        ctx = self.ctx
        with ctx.journal.transaction():
            ctx.journal.set_batch(ctx.run_id, n, BATCH_ABANDONED)
            ctx.journal.return_to_pending(ctx.run_id, seqs)
        self.budget.release(worst_usd)
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
                self.budget.release(intent.worst_usd)

    # -- polling and results ------------------------------------------------------------------

    def _poll(self, rows: list[BatchRow]) -> bool:
        """Check every open batch once; download the ended ones. True when any ended."""
        ended = False
        for row in rows:
            if row.batch_id is None or self.steer.stopping:
                continue
            self._doing = f"polling batch {row.batch_id}"
            batch = self.api.messages.batches.retrieve(row.batch_id)
            self._progress(row, batch)
            if batch.processing_status == "ended":
                self._download(row)
                ended = True
            self._tick_if_due()
        return ended

    def _progress(self, row: BatchRow, batch: Any) -> None:
        c = batch.request_counts
        self._processing[batch.id] = c.processing
        done = c.succeeded + c.errored + c.canceled + c.expired
        line = (
            f"batch {batch.id}: {batch.processing_status}, {done}/{len(row.seqs)} done"
            f" (succeeded {c.succeeded}, errored {c.errored}, expired {c.expired})"
        )
        if self._seen.get(batch.id) != line:
            self._seen[batch.id] = line
            self.ctx.say(line)

    def _download(self, row: BatchRow) -> None:
        assert row.batch_id is not None
        self._doing = f"downloading the results of batch {row.batch_id}"
        entries = list(self.api.messages.batches.results(row.batch_id))
        self.budget.settle(row.worst_usd, self.ingest.batch(row, entries, self.tag))
        self._processing.pop(row.batch_id, None)
        ok = sum(1 for e in entries if e.result.type == "succeeded")
        self.ctx.say(
            f"batch {row.batch_id}: downloaded {ok} result(s), {len(entries) - ok} to retry or failed"
        )


def run_batches(ctx: BatchesContext) -> RunEnd:
    """Run the pending jobs of `ctx.run_id` through Message Batches; how the run ended."""
    return BatchesRun(ctx).run()
