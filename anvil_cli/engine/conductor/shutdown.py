"""How the conductor ends a run: the workers stop (or are killed on an abort), what they still
hold goes back to pending for the next resume, the last figures are ticked. When the journal
itself failed, nothing more is recorded: what the governor counted beyond the journal is kept
aside for the resume (engine/journal/spend_carry.py)."""

from __future__ import annotations

import sqlite3

from anvil_cli.engine.conductor.governor_watch import GovernorWatching
from anvil_cli.engine.conductor.recording import EventRecording
from anvil_cli.engine.conductor.state import JOURNAL_ERROR
from anvil_cli.engine.journal import spend_carry

STOP_WORKERS_S = 5.0  # at the end, workers finish what they hold within this, then are killed


class Shutdown(EventRecording, GovernorWatching):
    """The end of a run, clean or not."""

    def _carry_unjournaled(self) -> None:
        """The journal failed: what the governor settled or reserved (workers are gone now, so
        their grants are final) beyond what the journal holds is kept for the resume to count
        (engine/journal/spend_carry.py), and said in the stop message."""
        self.gov.refresh()
        budget = self.gov.state.budget
        try:
            journaled = self.journal.totals(self.run_id)["cost_usd"]
        except sqlite3.Error:
            journaled = self.metrics.cost_before_usd
        settled_or_held = budget.spent_usd + budget.reserved_usd if budget else 0.0
        unjournaled = settled_or_held - journaled
        self.end.unjournaled_usd = max(0.0, unjournaled)
        if self.end.unjournaled_usd <= 0:
            return
        kept = spend_carry.record(self.settings.state_dir, self.run_id, self.end.unjournaled_usd)
        where = "kept for the resume to count" if kept else "NOT kept (no room for it): mind the budget"
        self.end.stop_message = (
            f"{self.end.stop_message}; ${self.end.unjournaled_usd:.4f} of calls in flight or settled could"
            f" not be journaled, {where}"
        )

    def _shutdown(self) -> None:
        """Workers stop; whatever they still hold goes back to pending for the next resume."""
        if self.end.stop_reason == JOURNAL_ERROR:  # record nothing more: a resume re-queues them
            self.backend.kill()
            self.watch.forget_all()
            self.ended = True
            self._carry_unjournaled()
            return
        self._tell_all_drain()
        last = self.backend.kill() if self.end.aborted else self.backend.stop(timeout_s=STOP_WORKERS_S)
        self._record(last)  # results that arrived before the end still count
        self.watch.forget_all()
        left = [row.seq for row in self.held.drop_all()]
        for seq in left:
            self.metrics.cost_usd += self._spent.pop(seq, 0.0)
        if left:
            with self.journal.transaction():
                self.journal.return_to_pending(self.run_id, left)
        self._record_governor_events()
        self.gov.refresh()
        self.ended = True
        self._tick(self.clock())  # the last frame and stored figures show the end, not 1 s before
        if self.cache is not None:
            self.cache.close()
