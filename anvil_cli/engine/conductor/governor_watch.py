"""The conductor's watch on the run's governor: its events journaled (breakers, budget warnings,
the budget spent: the run stops), and a lost governor started again at once."""

from __future__ import annotations

from anvil_cli.engine.conductor.state import ConductorState
from anvil_cli.policy.governor.budget import exhausted_message


class GovernorWatching(ConductorState):
    """The governor's events, and its restart."""

    def _check_governor(self) -> None:
        """A lost governor is started again at once; the workers' calls wait for it, none fails
        (engine/worker/broker.py). Its budget: what the journal says the run has spent."""
        if not self.gov.lost():
            return
        try:
            client, info = self.gov.restart(self.journal.totals(self.run_id)["cost_usd"])
        except Exception as exc:  # cannot start processes any more: stop, resumably
            self.stop_run(
                "governor_lost", f"the rate-limit governor was lost and could not be restarted: {exc}"
            )
            self.end.aborted = True
            return
        self.backend.set_governor(client)
        self.journal.add_event(self.run_id, "governor_restarted", info)
        self.ticker.monitor.note(
            "the rate-limit governor was lost: started again (limits re-learned, breakers half-open)"
        )

    def _record_governor_events(self) -> None:
        events = self.gov.drain_events()
        with self.journal.transaction():
            for ev in events:
                self.journal.add_event(self.run_id, ev.kind, dict(ev.data))
                if ev.kind == "breaker":
                    self._note_history("breaker", dict(ev.data))
                if ev.kind == "budget_exhausted":
                    data = ev.data  # the whole run's spend and the cap in force
                    worst = data.get("worst_usd", 0.0)
                    self.stop_run("budget", exhausted_message(data["spent_usd"], worst, data.get("max_usd")))
