"""Steering `--mode batches` as the conductor steers messages mode: Ctrl-C/SIGTERM and the
HTTP API's control commands, applied on the driver's thread (`engine.control`).

Pause stops submitting new batches (open ones are still polled and downloaded) and keeps the
run alive until resume or drain; drain and the first Ctrl-C stop submitting at once and end
the run at the next safe point (between two API calls), exit 130: the batches already
submitted are re-attached by the next run. There is no grace period to wait out: a batch may
take hours, and nothing is lost by leaving it on the server.
"""

from __future__ import annotations

from collections.abc import Callable

from anvil_cli.engine.commands import CommandSource, Scale, SetBreaker
from anvil_cli.engine.control import SteeringHooks, apply_commands
from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.process.signals import SignalState
from anvil_cli.engine.run_end import RunEnd
from anvil_cli.snapshot.metrics import RunMetrics


class Steering:
    """Whether the batches driver may submit, and whether it must stop."""

    def __init__(
        self,
        journal: Journal,
        run_id: str,
        signals: SignalState,
        metrics: RunMetrics,
        control: CommandSource | None,
        say: Callable[[str], None],
    ) -> None:
        self.journal = journal
        self.run_id = run_id
        self.signals = signals
        self.metrics = metrics
        self.control = control
        self.say = say
        self.paused = False
        self.draining = False
        self._hooks = SteeringHooks(
            jobs_added=self._jobs_added,
            scale=lambda _agents: self._not_applicable(Scale.kind),
            set_breaker=lambda _model, _state: self._not_applicable(SetBreaker.kind),
            set_paused=self._set_paused,
            drain=self._drain,
        )

    @property
    def stopping(self) -> bool:
        """Ctrl-C, SIGTERM or a drain was asked for: submit nothing more, end soon."""
        return self.signals.count > 0 or self.draining

    def may_submit(self) -> bool:
        """Checked right before each create call (with the latest commands applied)."""
        self.apply()
        return not self.stopping and not self.paused

    def end(self) -> RunEnd:
        return RunEnd(interrupted=True, aborted=self.signals.count >= 2)

    def apply(self) -> None:
        """The HTTP API's commands since the last call, in order (each journaled, as the
        conductor does). Scaling and breakers have no meaning here: noted and ignored."""
        if self.control is not None:
            apply_commands(self.control.pending_commands(), self.journal, self.run_id, self._hooks)

    def _jobs_added(self, count: int) -> None:  # already in the journal: the next round submits them
        self.metrics.total += count

    def _set_paused(self, paused: bool) -> None:
        self.paused = paused

    def _drain(self) -> None:
        self.draining = True

    def _not_applicable(self, kind: str) -> None:
        self.say(f"{kind}: not applicable to --mode batches (no agents, no breakers); ignored")
