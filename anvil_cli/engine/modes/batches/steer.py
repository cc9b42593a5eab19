"""Steering `--mode batches` as the conductor steers messages mode: Ctrl-C/SIGTERM and the
HTTP API's commands (`RunControl`), applied on the driver's thread.

Pause stops submitting new batches (open ones are still polled and downloaded) and keeps the
run alive until resume or drain; drain and the first Ctrl-C stop submitting at once and end
the run at the next safe point (between two API calls), exit 130: the batches already
submitted are re-attached by the next run. There is no grace period to wait out: a batch may
take hours, and nothing is lost by leaving it on the server.
"""

from __future__ import annotations

from collections.abc import Callable

from anvil_cli.engine.control import RunControl
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
        control: RunControl | None,
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
        if self.control is None:
            return
        for cmd in self.control.pending_commands():
            self.journal.add_event(self.run_id, "control", {"command": cmd.kind, "value": cmd.value})
            if cmd.kind == "jobs_added":  # already in the journal: the next round submits them
                self.metrics.total += int(cmd.value)
            elif cmd.kind in ("pause", "resume"):
                self.paused = cmd.kind == "pause"
            elif cmd.kind == "drain":
                self.draining = True
            else:
                self.say(f"{cmd.kind}: not applicable to --mode batches (no agents, no breakers); ignored")
