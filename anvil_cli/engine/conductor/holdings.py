"""Which worker holds which job: the conductor's own book, whatever backend runs the workers.

A job is held from the moment it is dispatched (journal first) until its worker reports it
done, abandoned or fatal, or the worker is lost. A job is never held twice.
"""

from __future__ import annotations

from anvil_cli.engine.events import ReadyRow


class Holdings:
    """Workers (ready or not) and the jobs each holds."""

    def __init__(self) -> None:
        self._jobs: dict[int, dict[int, ReadyRow]] = {}  # worker -> seq -> row
        self._held: set[int] = set()  # every seq held by some worker: asked for every job and turn
        self._ready: set[int] = set()

    def add_worker(self, worker: int) -> None:
        self._jobs.setdefault(worker, {})

    def mark_ready(self, worker: int) -> bool:
        """True if the worker is known (a late event of a lost worker is ignored)."""
        if worker not in self._jobs:
            return False
        self._ready.add(worker)
        return True

    def is_ready(self, worker: int) -> bool:
        return worker in self._ready

    def pick(self, window: int | None = None) -> int | None:
        """The ready worker holding the fewest jobs. While some workers are not ready yet, a
        ready one takes at most its share of `window` (the jobs kept in workers): the rest is
        theirs once they are, not all of the first wave the first worker's (its memory grows
        with every agent it holds, and the others would sit idle)."""
        if not self._ready:
            return None
        worker = min(self._ready, key=lambda w: len(self._jobs[w]))
        if window is not None and len(self._ready) < len(self._jobs):
            share = -(-window // len(self._jobs))
            if len(self._jobs[worker]) >= share:
                return None
        return worker

    def hold(self, worker: int, row: ReadyRow) -> None:
        """Only a job not held already (`holds`)."""
        self._jobs[worker][row.seq] = row
        self._held.add(row.seq)

    def holds(self, seq: int) -> bool:
        return seq in self._held

    def release(self, worker: int, seq: int) -> ReadyRow | None:
        """The job's worker is done with it; None if it no longer held it (already handled)."""
        jobs = self._jobs.get(worker)
        row = None if jobs is None else jobs.pop(seq, None)
        if row is not None:
            self._held.discard(seq)
        return row

    def drop_worker(self, worker: int) -> list[ReadyRow]:
        """A lost worker: forget it; returns the jobs it still held."""
        self._ready.discard(worker)
        rows = list(self._jobs.pop(worker, {}).values())
        self._held.difference_update(row.seq for row in rows)
        return rows

    def drop_all(self) -> list[ReadyRow]:
        rows = [row for w in list(self._jobs) for row in self.drop_worker(w)]
        return rows

    def jobs_of(self, worker: int) -> int:
        return len(self._jobs.get(worker, {}))

    def in_flight(self) -> int:
        return len(self._held)
