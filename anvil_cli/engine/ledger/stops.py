"""How a run whose scopes ran out ends: its other jobs done, the jobs of a spent scope back to
pending (resumable), and the run stopped for "budget_scope" with what the journal's
"budget_scope_exhausted" events say (one line per cap)."""

from __future__ import annotations

from typing import Final

from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.run_end import RunEnd
from anvil_cli.policy.governor.scoped import SCOPE_DENY

SCOPE_EXHAUSTED: Final = "budget_scope_exhausted"  # the governor's event, journaled as it comes


def scope_messages(journal: Journal, run_id: str) -> list[str]:
    """The last word on each spent cap of the run (scope, window and period)."""
    last: dict[tuple[str, str, str], str] = {}
    for ev in journal.events(run_id, SCOPE_EXHAUSTED):
        key = (str(ev.get("scope")), str(ev.get("window")), str(ev.get("period")))
        last[key] = str(ev.get("message", ""))
    return list(last.values())


def end_for_scopes(journal: Journal, run_id: str, end: RunEnd, unfinished: int) -> None:
    """A run left with unfinished jobs for no other reason stopped for its spent scopes."""
    if unfinished and end.stop_reason is None and not end.interrupted:
        messages = scope_messages(journal, run_id)
        if messages:
            end.stop_reason = SCOPE_DENY
            resume = (
                " (the run's other jobs went on; resumed, the next day or with the cap raised, it runs these)"
            )
            end.stop_message = "; ".join(messages) + resume
