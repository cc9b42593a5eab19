"""The conductor's side of the run's governor: one view a tick, its events, steering, and
starting it again when it is lost (`GovernorHost`, e.g. `governor_host.manager.GovernorKeeper`).

Every call tolerates a governor that is gone: the conductor notices the loss by the host's
watch (`lost()`), not by an exception in the middle of recording something else.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

from anvil_cli.engine.governor_host.client import GovernorClient
from anvil_cli.policy.governor import GovernorEvent, GovernorView

GONE = (OSError, EOFError)  # what a proxy raises when the governor's process is gone


class GovernorHost(Protocol):
    """Where the governor runs, and how to start another one in its place."""

    generation: int  # 0 for the first; one more for each replacement

    @property
    def pid(self) -> int | None: ...

    def lost(self) -> bool: ...

    def restart(self, spent_usd: float, last_view: GovernorView) -> GovernorClient: ...


class GovernorLink:
    """The governor as the conductor uses it."""

    def __init__(self, client: GovernorClient, host: GovernorHost | None = None) -> None:
        self.client = client
        self.host = host
        self.state = GovernorView()  # as of the last refresh: one round trip a tick

    def refresh(self) -> None:
        with contextlib.suppress(*GONE):  # gone: keep the last state (a restart seeds from it)
            self.state = self.client.view()

    def drain_events(self) -> list[GovernorEvent]:
        try:
            return list(self.client.drain_events())
        except GONE:
            return []

    def set_breaker(self, model: str, state: str) -> None:
        with contextlib.suppress(*GONE):
            self.client.set_breaker(model, state)

    def release_owner(self, worker: int) -> None:
        """A dead worker's grants: reservations and probes back."""
        with contextlib.suppress(*GONE):
            self.client.release_owner(worker)

    def lost(self) -> bool:
        return self.host is not None and self.host.lost()

    def restart(self, spent_usd: float) -> tuple[GovernorClient, dict[str, Any]]:
        """A new governor in place of the lost one, from the run's spend so far and the state the
        lost one last showed; and what to journal of it."""
        assert self.host is not None
        self.client = self.host.restart(spent_usd, self.state)
        info = {"generation": self.host.generation, "pid": self.host.pid, "spent_usd": round(spent_usd, 6)}
        return self.client, info
