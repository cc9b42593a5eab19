"""The `EngineState` of `--mode batches`: what its views may show, read from the journal's
batches table and the driver's own figures (the conductor's `engine_state()` for this mode)."""

from __future__ import annotations

from collections.abc import Mapping

from anvil_cli.engine.journal.rows import BATCH_ENDED, BATCH_INTENT, BATCH_SUBMITTED
from anvil_cli.engine.journal.store import PENDING, RUNNING, Journal
from anvil_cli.engine.run_end import RunEnd, phase
from anvil_cli.policy.governor import BudgetView, GovernorView
from anvil_cli.policy.governor.scoped import ScopeLine
from anvil_cli.snapshot.state import BatchesInfo, EngineState, Phase

OPEN = (BATCH_INTENT, BATCH_SUBMITTED)


def phase_of(end: RunEnd | None, *, stopping: bool, paused: bool) -> Phase:
    """The phase while running (`end` None) or once the loop has ended (see `run_end.phase`)."""
    if end is not None:
        return phase(ended=True, stopping=end.stopped_early, paused=False)
    return phase(ended=False, stopping=stopping, paused=paused)


def engine_state(
    journal: Journal,
    run_id: str,
    phase: Phase,
    *,
    paused: bool,
    budget: BudgetView,
    processing: Mapping[str, int],
    scopes: tuple[ScopeLine, ...] = (),
) -> EngineState:
    """`processing`: batch id -> requests still processing at its last poll (a batch not polled
    yet counts all of its requests)."""
    rows = journal.batches(run_id)
    open_rows = [r for r in rows if r.state in OPEN]
    in_flight = sum(len(r.seqs) for r in open_rows)
    counts = journal.counts(run_id)
    return EngineState(
        run_id=run_id,
        mode="batches",
        phase=phase,
        paused=paused,
        in_flight=in_flight,
        agent_limit=in_flight,  # no agents: the requests inside open batches are the load
        agent_min=0,
        agent_max=in_flight,
        queue_depth=max(0, counts[PENDING] + counts[RUNNING] - in_flight),  # not in a batch yet
        # no rate limits: the budget (which its alert reads) and the caps of budget.scopes alone
        governor=GovernorView(budget=budget, scopes=scopes),
        batches=BatchesInfo(
            submitted=len(open_rows),
            processing_requests=sum(processing.get(r.batch_id or "", len(r.seqs)) for r in open_rows),
            ended=sum(r.state == BATCH_ENDED for r in rows),
        ),
    )
