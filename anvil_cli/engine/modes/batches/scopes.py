"""The scoped budgets of `--mode batches` (`budget.scopes`, `budget.per_day_usd`,
`budget.per_month_usd`): the run's book of caps, the same as a governor's in messages mode
(`engine/ledger/book.py`'s `scope_book`: the state dir's ledger; a scope's `max_usd` under the
run's id). Each job is held at its worst case (its requests' in the batch) against every cap it
is under before its batch is created, under its seq as the ticket (a job is in at most one open
batch); settled with what it cost once the batch's results are in, released when the batch never
was. A resumed run holds its open batches' jobs again (`open_asks`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from anvil_cli.config.settings import Settings
from anvil_cli.engine.journal.store import BatchRow, Journal
from anvil_cli.engine.modes.batches.followup import FollowUp
from anvil_cli.engine.modes.batches.requests import prepare
from anvil_cli.jobs.job import Job
from anvil_cli.policy.budgets import ScopeBook, ScopeLine, scopes_of
from anvil_cli.policy.governor.calls import Deny, Wait
from anvil_cli.policy.pricing.pricer import Pricer


@dataclass(frozen=True, slots=True)
class Ask:
    """A job about to go into a batch: its seq, the scopes it is under and its worst case."""

    seq: int
    scopes: tuple[str, ...]
    worst_usd: float


class BatchScopes:
    """The run's scope book as batches mode drives it (`book` None: no caps are set)."""

    def __init__(
        self,
        book: ScopeBook | None,
        scopes: Mapping[str, Mapping[str, Any]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.book = book
        self.scopes = scopes  # settings.budget.scopes
        self.clock = clock  # monotonic seconds: the book's `wall_offset` turns them into Unix time

    def of(self, metadata: Mapping[str, Any]) -> tuple[str, ...]:
        """The scopes a job with this metadata is under."""
        return scopes_of(metadata, self.scopes) if self.book is not None else ()

    def admit(self, ask: Ask) -> Wait | Deny | None:
        """Hold the job against its caps if they cover it (None); else why not: `Deny` (a cap
        cannot cover it even once what is held settles) or `Wait` (money held in flight)."""
        if self.book is None:
            return None
        now = self.clock()
        decision = self.book.check(ask.scopes, ask.worst_usd, now)
        if decision is None:
            self.book.hold(ask.seq, ask.scopes, ask.worst_usd, now)
        return decision

    def hold(self, asks: Iterable[Ask]) -> None:
        """Hold jobs whatever the caps say (an earlier session's open batches: they were asked
        then), leasing what the ledger has for them first, so no other process spends it."""
        if self.book is not None:
            now = self.clock()
            for ask in asks:
                self.book.check(ask.scopes, ask.worst_usd, now)
                self.book.hold(ask.seq, ask.scopes, ask.worst_usd, now)

    def release(self, seqs: Iterable[int]) -> None:
        """Their batch was never created."""
        if self.book is not None:
            now = self.clock()
            for seq in seqs:
                self.book.release(seq, now)

    def settle(self, seqs: Iterable[int], costs: Mapping[int, float]) -> None:
        """Their batch's results are in: each job's hold is replaced by what it cost."""
        if self.book is not None:
            now = self.clock()
            for seq in seqs:
                self.book.settle(seq, costs.get(seq, 0.0), now)

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """(kind, data) of the caps spent since the last call: "budget_scope_exhausted"."""
        return [] if self.book is None else [(kind, data) for kind, _, data in self.book.drain_events()]

    def lines(self) -> tuple[ScopeLine, ...]:
        """Every cap of the current periods (the governor view's `scopes`); syncs when due."""
        if self.book is None:
            return ()
        now = self.clock()
        self.book.tick(now)
        return tuple(self.book.lines(now))

    def close(self) -> None:
        """The run is over: spend to the ledger, every lease back."""
        if self.book is not None:
            self.book.sync(self.clock(), closing=True)


def open_asks(
    journal: Journal,
    run_id: str,
    rows: list[BatchRow],
    scopes: BatchScopes,
    settings: Settings,
    pricer: Pricer,
    tag: str,
) -> list[Ask]:
    """The jobs of an earlier session's open batches, as they were held: each job's worst case
    as its requests are priced now, scaled so a batch's add up to the worst case it recorded."""
    asks: list[Ask] = []
    for row in rows:
        jobs = journal.job_rows(run_id, row.seqs)
        followups = journal.followups(run_id, row.seqs)  # unchanged while the batch is open
        worst: dict[int, float] = {}
        their_scopes: dict[int, tuple[str, ...]] = {}
        for job_row in jobs:
            job = Job.from_record(job_row["job"])
            followup = FollowUp.from_json(followups[job.seq]) if job.seq in followups else None
            items = prepare(job, 0, settings, pricer, None, tag, followup)
            worst[job.seq] = sum(i.worst_usd for i in items) if isinstance(items, list) else 0.0
            their_scopes[job.seq] = scopes.of(job.metadata)
        total = sum(worst.values())
        for seq in worst:
            share = worst[seq] / total if total > 0 else 1 / len(worst)
            asks.append(Ask(seq, their_scopes[seq], row.worst_usd * share))
    return asks
