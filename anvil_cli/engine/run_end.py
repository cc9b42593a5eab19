"""How a run driver's loop ended (either mode): the runner maps it to a state and an exit code."""

from __future__ import annotations

from dataclasses import dataclass

from anvil_cli.snapshot.state import Phase


@dataclass
class RunEnd:
    """How a driver's loop ended."""

    interrupted: bool = False
    aborted: bool = False
    stop_reason: str | None = None  # budget, authentication_error, spend_limit, journal_error, ...
    stop_message: str | None = None
    unjournaled_usd: float = 0.0  # spent (or reserved by calls in flight) when the journal failed

    @property
    def stopped_early(self) -> bool:
        """Interrupted (Ctrl-C, drain) or stopped (budget, auth, a lost journal...): resumable."""
        return self.interrupted or self.stop_reason is not None


def phase(*, ended: bool, stopping: bool, paused: bool) -> Phase:
    """A driver's phase for the views: running | paused | stopping (after Ctrl-C, a drain, the
    budget or a fatal error), and at the very end finished | stopped."""
    if ended:
        return "stopped" if stopping else "finished"
    if stopping:
        return "stopping"
    return "paused" if paused else "running"
