"""The ready queue: priority then FIFO, bounded in memory, refilled from the journal."""

from __future__ import annotations

from anvil_cli.engine.conductor.ready import ReadyQueue
from anvil_cli.engine.events import ReadyRow as Row


class FakeJournal:
    """Pending jobs keyed (priority, seq), served like `Journal.pending_after`."""

    def __init__(self, keys: list[tuple[int, int]]) -> None:
        self.pending = sorted(keys)
        self.fetches: list[int] = []

    def fetch(self, after: tuple[int, int] | None, limit: int) -> list[Row]:
        self.fetches.append(limit)
        rows = sorted(k for k in self.pending if after is None or k > after)[:limit]
        return [Row(p, s, f'{{"seq": {s}}}', 0) for p, s in rows]

    def take(self, row: Row) -> None:
        self.pending.remove((row[0], row[1]))  # dispatched: no longer pending


def drain(q: ReadyQueue, journal: FakeJournal, peak: list[int]) -> list[tuple[int, int]]:
    order = []
    while (row := q.pop()) is not None:
        peak.append(len(q) + 1)
        journal.take(row)
        order.append((row[0], row[1]))
    return order


def test_dispatch_order_is_priority_then_batch_position() -> None:
    keys = [(3, 0), (2, 1), (0, 2), (1, 3), (2, 4), (0, 5), (3, 6), (1, 7)]
    journal = FakeJournal(keys)
    q = ReadyQueue(journal.fetch, capacity=100)
    assert drain(q, journal, []) == sorted(keys)


def test_never_holds_more_than_its_capacity() -> None:
    keys = [(i % 4, i) for i in range(10_000)]
    journal = FakeJournal(keys)
    peak: list[int] = []
    q = ReadyQueue(journal.fetch, capacity=16)
    order = drain(q, journal, peak)
    assert order == sorted(keys)
    assert max(peak) <= 16
    assert all(limit <= 16 for limit in journal.fetches)
    assert q.exhausted and len(q) == 0


def test_a_job_handed_back_keeps_its_place() -> None:
    journal = FakeJournal([(2, 0), (2, 1), (2, 2)])
    q = ReadyQueue(journal.fetch, capacity=10)
    first = q.pop()
    assert first is not None and first[1] == 0
    q.push_back(first)  # its worker died
    row = q.pop()
    assert row is not None and row[1] == 0


def test_rewind_sees_jobs_added_later() -> None:
    journal = FakeJournal([(2, 0)])
    q = ReadyQueue(journal.fetch, capacity=10)
    row = q.pop()
    assert row is not None
    journal.take(row)
    assert q.pop() is None and q.exhausted
    journal.pending.append((0, 1))  # added through the API
    q.rewind()
    again = q.pop()
    assert again is not None and again[:2] == (0, 1)


def test_after_a_rewind_a_job_handed_back_is_not_queued_twice() -> None:
    journal = FakeJournal([(2, s) for s in range(10)])
    q = ReadyQueue(journal.fetch, capacity=10)
    taken = q.pop()
    assert taken is not None and taken[1] == 0  # dispatched: running, not pending
    journal.take(taken)
    q.rewind()  # POST /jobs added jobs
    journal.pending.append((2, 0))  # its worker died: pending again in the journal
    q.push_back(taken)
    order = drain(q, journal, [])
    assert order.count((2, 0)) == 1 and len(order) == 10
