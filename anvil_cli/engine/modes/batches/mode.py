"""`anvil run --mode batches`: the jobs go through the Message Batches API at half price.

The driver (`BatchesRun`) goes round until every job has a result or the run must stop: each
round resolves the intents left without a batch id and submits the pending jobs (`submit.py`:
never submit twice), then polls every open batch and downloads the ended ones. Results are
downloaded into the jobs rows in one transaction per batch (`ingest.py`: cost with the batch
discount); errored, expired and canceled requests are resubmitted in a new batch, up to
`batches.max_attempts` submissions per job. An API error ends the round: the run stops, or
waits and goes round again (`trouble.py`).

Batches are single-turn: a job whose tools name an `anvil_command` cannot run them here, so it
fails with an error saying so (`--mode messages` runs it); no Anvil-only key is ever sent.

Answers are checked as in messages mode (`checking.py`): an answer that does not match the
job's output schema is re-asked in a follow-up batch (the conversation, the answer, the error),
up to `checks.max_reasks` times; a job's judges grade its answer together in a follow-up batch. The
follow-up is in the job's journal row, so it survives a stop between two batches.

It reports and is steered like messages mode: about once a second it hands the views an
`EngineState` through the run's `Ticker` (dashboard, `anvil status`, `GET /status`); Ctrl-C,
pause and drain are `steer.Steering`, checked right before every create call; the
budget is the governor's guard (`budget.BatchesBudget`), warning included, and the scopes and
windows the governor's book (`scopes.py`): a job its caps cannot cover stays pending.
"""

from __future__ import annotations

import time
from typing import Any

import anthropic
import httpx2

from anvil_cli.engine.journal.store import BatchRow
from anvil_cli.engine.ledger.book import scope_book
from anvil_cli.engine.modes.batch_spans import BatchSpans
from anvil_cli.engine.modes.batches.budget import BatchesBudget
from anvil_cli.engine.modes.batches.context import BatchesContext
from anvil_cli.engine.modes.batches.ids import run_tag
from anvil_cli.engine.modes.batches.ingest import Ingest
from anvil_cli.engine.modes.batches.scopes import BatchScopes, open_asks
from anvil_cli.engine.modes.batches.state import OPEN, engine_state, phase_of
from anvil_cli.engine.modes.batches.steer import Steering
from anvil_cli.engine.modes.batches.submit import Submitter
from anvil_cli.engine.modes.batches.trouble import ApiTrouble
from anvil_cli.engine.run_end import RunEnd
from anvil_cli.policy.governor.budget import exhausted_message
from anvil_cli.snapshot.state import EngineState

__all__ = ["BatchesContext", "BatchesRun", "run_batches"]

WAIT_SLICE_S = 0.2  # re-check for Ctrl-C and commands at least this often while waiting
TICK_EVERY_S = 1.0  # hand the views an EngineState this often (as the conductor does)


class BatchesRun:
    """Submits, polls and downloads until every job has a result, or the run must stop."""

    def __init__(self, ctx: BatchesContext) -> None:
        self.ctx = ctx
        self.cfg = ctx.settings.batches
        self.api = ctx.client.with_options(max_retries=0)  # retries are ours (see trouble.py)
        self.tag = run_tag(ctx.run_id)
        self.ingest = Ingest(
            ctx.journal, ctx.run_id, ctx.settings, ctx.metrics, ctx.pricer, ctx.cache, ctx.endpoint or None
        )
        url = ctx.client.base_url
        self.spans = BatchSpans(
            ctx.journal, ctx.run_id, ctx.settings, ctx.pricer, url, ctx.endpoint, self.tag
        )
        self.steer = Steering(ctx.journal, ctx.run_id, ctx.signals, ctx.metrics, ctx.control, ctx.say)
        cap = ctx.settings.budget
        open_rows = ctx.journal.batches(ctx.run_id, OPEN)
        scopes = BatchScopes(scope_book(ctx.settings, ctx.run_id), cap.scopes)
        scopes.hold(open_asks(ctx.journal, ctx.run_id, open_rows, scopes, ctx.settings, ctx.pricer, self.tag))
        self.budget = BatchesBudget(
            cap.max_usd,
            cap.warn_usd,
            ctx.journal.totals(ctx.run_id)["cost_usd"],
            [row.worst_usd for row in open_rows],
            scopes,
        )
        self.trouble = ApiTrouble(ctx, self._wait)
        self.submitter = Submitter(
            ctx,
            self.api,
            self.tag,
            budget=self.budget,
            steer=self.steer,
            ingest=self.ingest,
            trouble=self.trouble,
            tick=self._tick_if_due,
        )
        self._seen: dict[str, str] = {}  # batch id -> last progress line printed
        self._processing: dict[str, int] = {}  # batch id -> requests processing at the last poll
        self._last_tick: float | None = None

    def run(self) -> RunEnd:
        ctx = self.ctx
        try:
            end = self._loop()
            if end.stop_reason is not None:  # as the conductor's stop_run records it
                data = {"reason": end.stop_reason, "message": end.stop_message}
                ctx.journal.add_event(ctx.run_id, "run_stopping", data)
            self._tick(ctx.clock(), end)  # the last frame and stored figures show the end
        finally:
            self.budget.scopes.close()  # spend to the ledger, leases back
            if ctx.cache is not None:
                ctx.cache.close()
        return end

    def _loop(self) -> RunEnd:
        while True:
            self.steer.apply()
            if self.steer.stopping:
                return self.steer.end()
            self._tick_if_due()
            self.trouble.new_round()
            try:
                end, ended = self._round()
            except (anthropic.APIError, httpx2.HTTPError) as exc:
                stop = self.trouble.handle(exc)
                if stop is not None:
                    return stop
                continue
            if end is not None:
                return end
            self.trouble.round_done()  # a whole round went through: the API is there
            if not ended:
                self._wait(self.cfg.poll_interval_s)

    def _round(self) -> tuple[RunEnd | None, bool]:
        """One pass: resolve intents, submit, poll. (how the run ends, or None; any batch ended)"""
        ctx = self.ctx
        self.submitter.resolve_intents()
        stop = self.submitter.submit_pending()
        if stop is not None:
            return stop, False
        open_rows = ctx.journal.batches(ctx.run_id, OPEN)
        if open_rows:
            return None, self._poll(open_rows)
        if self.trouble.troubled:  # a create refused (jobs back to pending): round again
            return None, False
        if self.steer.stopping:
            return self.steer.end(), False
        if self.budget.denied:
            return self._budget_end(), False
        if self.steer.paused or self.submitter.scope_waiting:  # alive until resume or drain, as in
            return None, False  # messages mode; or until money a cap holds elsewhere comes back
        return RunEnd(), False  # a spent scope's jobs left pending: the session says so (ledger/stops.py)

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
            scopes=self.budget.scopes.lines(),
            processing=self._processing,
        )

    # -- polling and results ------------------------------------------------------------------

    def _poll(self, rows: list[BatchRow]) -> bool:
        """Check every open batch once; download the ended ones. True when any ended."""
        ended = False
        for row in rows:
            if row.batch_id is None or self.steer.stopping:
                continue
            self.trouble.doing = f"polling batch {row.batch_id}"
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
            f"batch {batch.id}: {batch.processing_status}, {done}/{done + c.processing} done"
            f" (succeeded {c.succeeded}, errored {c.errored}, expired {c.expired})"
        )
        if self._seen.get(batch.id) != line:
            self._seen[batch.id] = line
            self.ctx.say(line)

    def _download(self, row: BatchRow) -> None:
        assert row.batch_id is not None
        self.trouble.doing = f"downloading the results of batch {row.batch_id}"
        entries = list(self.api.messages.batches.results(row.batch_id))
        before = self.spans.before(row)  # traced: its spans once its results are in (batch_spans.py)
        costs = self.ingest.batch(row, entries, self.tag)
        cost_usd = sum(costs.values())
        self.budget.settle(row.worst_usd, cost_usd, row.seqs, costs)
        self.spans.ended(row, entries, before, cost_usd)
        self._processing.pop(row.batch_id, None)
        ok = sum(1 for e in entries if e.result.type == "succeeded")
        self.ctx.say(
            f"batch {row.batch_id}: downloaded {ok} result(s), {len(entries) - ok} to retry or failed"
        )


def run_batches(ctx: BatchesContext) -> RunEnd:
    """Run the pending jobs of `ctx.run_id` through Message Batches; how the run ended."""
    return BatchesRun(ctx).run()
