"""The ready queue: a bounded heap of pending jobs in dispatch order, refilled from the journal.

Order is priority (critical first), then batch position (first in, first out). The heap never
holds more than `capacity` jobs, so a 100,000-job batch runs in bounded memory.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from anvil_cli.engine.events import ReadyRow

# fetch(after_key, limit) -> rows strictly after after_key, in order
Fetch = Callable[[tuple[int, int] | None, int], list[ReadyRow]]


class ReadyQueue:
    """Bounded heap of (priority, seq) keyed jobs, with a keyset cursor into the journal."""

    def __init__(self, fetch: Fetch, capacity: int) -> None:
        self._fetch = fetch
        self.capacity = max(1, capacity)
        self._heap: list[ReadyRow] = []
        self._cursor: tuple[int, int] | None = None
        self._exhausted = False

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def exhausted(self) -> bool:
        """True when the journal had nothing more after the cursor at the last refill."""
        return self._exhausted

    def refill(self) -> None:
        """Top the heap up from the journal when it runs below half full."""
        if self._exhausted or len(self._heap) > self.capacity // 2:
            return
        rows = self._fetch(self._cursor, self.capacity - len(self._heap))
        if not rows:
            self._exhausted = True
            return
        for row in rows:
            heapq.heappush(self._heap, row)
        self._cursor = (rows[-1].priority, rows[-1].seq)

    def pop(self) -> ReadyRow | None:
        self.refill()
        return heapq.heappop(self._heap) if self._heap else None

    def push_back(self, row: ReadyRow) -> None:
        """Return a job taken earlier (its worker died; it is pending again in the journal): it
        keeps its place in the order. Only if the cursor is past it: a job ahead of the cursor
        (or any job after a rewind) comes back from the journal by itself, and pushing it too
        would queue it twice."""
        if self._cursor is not None and (row.priority, row.seq) <= self._cursor:
            heapq.heappush(self._heap, row)

    def rewind(self) -> None:
        """Jobs were added to the journal (or re-queued there): read again from the start."""
        self._cursor = None
        self._exhausted = False
        self._heap.clear()
