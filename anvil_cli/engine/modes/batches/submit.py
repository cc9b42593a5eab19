"""Putting a run's pending jobs into Message Batches, never twice.

Before each create call an "intent" row (its jobs, its worst-case cost) is committed to the
journal's `batches` table; the batch id is recorded the moment the server answers. A re-run
re-attaches to recorded batches. An intent without an id (the process died during the create
call, or the connection dropped) is looked up among the server's batches: one created after
the intent, not recorded by any run, with as many requests and, once it has ended, exactly the
intent's custom_ids, is adopted. A candidate still processing is waited for (its custom_ids can
only be read from its results); when none is left the jobs are submitted again. A custom_id is
`<tag>-<seq>`, the tag a hash of the run id, so another run's or another state dir's batch
never matches (`ids.py`).

Nothing is submitted after Ctrl-C or a drain, while paused, or beyond the budget: each create
call asks right before it goes out. A job the caps of its scopes (or the state dir's day and
month) cannot cover is left out of the batch and stays pending for a resume, as in messages
mode; the others go in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import anthropic

from anvil_cli.engine.journal.store import BATCH_ABANDONED, BATCH_INTENT, BATCH_SUBMITTED, JobResult
from anvil_cli.engine.modes.batches.budget import BatchesBudget
from anvil_cli.engine.modes.batches.context import BatchesContext
from anvil_cli.engine.modes.batches.followup import FollowUp
from anvil_cli.engine.modes.batches.ids import INTENT_SKEW_S, match_intent, server_batches
from anvil_cli.engine.modes.batches.ingest import Ingest
from anvil_cli.engine.modes.batches.requests import BatchItem, Spent, chunk_bytes, expected_ids, prepare
from anvil_cli.engine.modes.batches.scopes import Ask
from anvil_cli.engine.modes.batches.state import OPEN
from anvil_cli.engine.modes.batches.steer import Steering
from anvil_cli.engine.modes.batches.trouble import ApiTrouble
from anvil_cli.engine.run_end import RunEnd
from anvil_cli.jobs.job import Job


class Submitter:
    """Creates the batches of one run (intent first) and resolves intents left without an id.
    `api` is the client with the SDK's retries off; `tick()` lets the views see a new batch."""

    def __init__(
        self,
        ctx: BatchesContext,
        api: anthropic.Anthropic,
        tag: str,
        *,
        budget: BatchesBudget,
        steer: Steering,
        ingest: Ingest,
        trouble: ApiTrouble,
        tick: Callable[[], None],
    ) -> None:
        self.ctx = ctx
        self.cfg = ctx.settings.batches
        self.api = api
        self.tag = tag
        self.budget = budget
        self.steer = steer
        self.ingest = ingest
        self.trouble = trouble
        self.tick = tick
        self.held_back = False  # this round left jobs unsubmitted (budget, pause, stop)
        self.scope_waiting = False  # this round left jobs out while a cap's money is held elsewhere
        self.scope_stopped: set[int] = set()  # jobs a cap could not cover: pending, not tried again
        self._foreign: set[str] = set()  # ended server batches whose custom_ids are not ours
        self._waiting_for: dict[int, str] = {}  # intent n -> unconfirmed candidate announced

    # -- submitting -----------------------------------------------------------------------------

    def may_submit(self) -> bool:
        """Not after Ctrl-C or a drain, not while paused, not once the budget is exhausted."""
        return self.steer.may_submit() and not self.budget.denied

    def submit_pending(self) -> RunEnd | None:
        """Every pending job not in an open batch, in chunks within the batch limits."""
        ctx = self.ctx
        self.held_back = self.scope_waiting = False
        if not self.may_submit():
            return None
        busy = {s for row in ctx.journal.batches(ctx.run_id, OPEN) for s in row.seqs} | self.scope_stopped
        scopes: dict[int, tuple[str, ...]] = {}  # the scopes of each job in the chunk
        chunk: list[list[BatchItem]] = []  # the requests of each job, in order
        count = nbytes = 0  # the chunk's requests, and their bytes
        after: tuple[int, int] | None = None
        while rows := ctx.journal.pending_after(ctx.run_id, after, 1000):
            followups = ctx.journal.followups(ctx.run_id, [r[1] for r in rows])  # checked jobs' next requests
            for priority, seq, record, dispatches in rows:
                after = (priority, seq)
                if seq in busy:
                    continue
                followup = FollowUp.from_json(followups[seq]) if seq in followups else None
                job = Job.from_record(json.loads(record))
                items = self._prepare(job, dispatches, followup)
                if not items:
                    continue
                scopes[seq] = self.budget.scopes.of(job.metadata)
                size = sum(i.size for i in items)
                if chunk and (
                    count + len(items) > self.cfg.max_requests
                    or chunk_bytes(nbytes) + size > self.cfg.max_bytes
                ):
                    stop = self._submit(chunk, scopes)
                    if stop is not None or self.held_back:
                        return stop
                    chunk, count, nbytes = [], 0, 0
                chunk.append(items)
                count, nbytes = count + len(items), nbytes + size
        return self._submit(chunk, scopes) if chunk else None

    def _prepare(self, job: Job, dispatches: int, followup: FollowUp | None) -> list[BatchItem]:
        """The batch requests of a pending job (or of its follow-up); none when it was settled
        here (cache hit, gave up)."""
        ctx = self.ctx
        if followup is not None and dispatches < followup.since:
            # left by a run that settled the job otherwise (messages mode), then --retry-failed
            # cleared its submissions: the job starts afresh
            ctx.journal.set_followup(ctx.run_id, job.seq, None)
            followup = None
        item = prepare(job, dispatches, ctx.settings, ctx.pricer, ctx.cache, self.tag, followup)
        if isinstance(item, JobResult):
            self.ingest.record(item)
            return []
        if isinstance(item, Spent):
            self.ingest.spent(item)
            return []
        return item

    def _submit(self, groups: list[list[BatchItem]], scopes: dict[int, tuple[str, ...]]) -> RunEnd | None:
        """Create a batch of these jobs' requests (as many jobs as the budget covers, each whole;
        each held under the caps of its `scopes`, by seq, and left out when they cannot cover it)."""
        ctx = self.ctx
        if not self.may_submit():  # right before the call: nothing goes out after the first Ctrl-C
            self.held_back = True
            return None
        asks = [Ask(g[0].seq, scopes.get(g[0].seq, ()), sum(i.worst_usd for i in g)) for g in groups]
        choice = self.budget.choose(asks)
        self.held_back = self.held_back or choice.stopped
        self.scope_waiting = self.scope_waiting or choice.scope_waiting
        self.scope_stopped.update(asks[n].seq for n in choice.scope_denied)
        groups = [groups[n] for n in choice.chosen]
        chunk = [i for group in groups for i in group]
        if not chunk:
            return None
        seqs = [group[0].seq for group in groups]
        worst_usd = sum(i.worst_usd for i in chunk)
        with ctx.journal.transaction():
            n = ctx.journal.add_batch_intent(ctx.run_id, seqs, worst_usd)
            ctx.journal.mark_dispatched(ctx.run_id, seqs, time.time())
        self.budget.hold(worst_usd)
        requests = [{"custom_id": i.custom_id, "params": i.params} for i in chunk]
        self.trouble.doing = f"creating a batch of {len(requests)} request(s)"
        try:
            batch = self.api.messages.batches.create(requests=requests)  # type: ignore[arg-type]
        except anthropic.APIConnectionError as exc:
            return self.trouble.create_unconfirmed(exc)  # it may exist: looked up next round
        except anthropic.APIStatusError as exc:
            return self._create_refused(n, seqs, worst_usd, exc)
        ctx.journal.set_batch(ctx.run_id, n, BATCH_SUBMITTED, batch.id)
        ctx.say(f"submitted batch {batch.id}: {len(requests)} request(s)")
        self.tick()
        return None

    def _create_refused(
        self, n: int, seqs: list[int], worst_usd: float, exc: anthropic.APIStatusError
    ) -> RunEnd | None:
        ctx = self.ctx
        with ctx.journal.transaction():
            ctx.journal.set_batch(ctx.run_id, n, BATCH_ABANDONED)
            ctx.journal.return_to_pending(ctx.run_id, seqs)
        self.budget.release(worst_usd, seqs)
        return self.trouble.create_refused(exc)

    # -- intents without a batch id -----------------------------------------------------------

    def resolve_intents(self) -> None:
        """Adopt, wait for, or give up (jobs back to pending) each intent without a batch id."""
        ctx = self.ctx
        intents = ctx.journal.batches(ctx.run_id, (BATCH_INTENT,))
        if not intents:
            return
        self.trouble.doing = "looking for batches whose create call was not confirmed"
        known = ctx.journal.known_batch_ids() | self._foreign
        candidates = server_batches(self.api, min(i.created_at for i in intents) - INTENT_SKEW_S, known)
        for intent in intents:
            self.trouble.doing = f"reading the custom_ids of the server's batches for intent {intent.n}"
            followups = ctx.journal.followups(ctx.run_id, intent.seqs)  # unchanged since the intent
            expected = expected_ids(
                self.tag, intent.seqs, {s: FollowUp.from_json(f) for s, f in followups.items()}
            )
            match, unsure = match_intent(self.api, self.tag, intent, candidates, self._foreign, expected)
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
                self.budget.release(intent.worst_usd, intent.seqs)
