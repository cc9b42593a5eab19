"""What the HTTP API needs from a running batch; `session.control.RunControl` implements it."""

from __future__ import annotations

from typing import Any, Protocol


class Controller(Protocol):
    """A running batch, steered from the API server's thread (implementations must be thread-safe)."""

    def status(self) -> dict[str, Any]:
        """The same JSON as `anvil status --json` for this run (with "metrics" and "governor")."""
        ...

    def series(self, since: float | None) -> dict[str, Any]:
        """The run's samples (`anvil_cli.snapshot.series`) taken after `since` (Unix seconds; all if None),
        at most `series.MAX_POINTS` of them: {"run_id", "now", "samples", "downsampled"}."""
        ...

    def job(self, job_id: str) -> dict[str, Any] | None:
        """One job: its result line plus "state"; None if the run has no such job."""
        ...

    def add_jobs(self, raw_jobs: list[dict[str, Any]]) -> list[str]:
        """Validate raw jobs (Anvil's or the Message Batches shape) and commit them to the journal
        before returning their ids; raise `InputError` (nothing added) if any is invalid."""
        ...

    def scale(self, agents: int) -> int:
        """Set the agent limit; returns it. Raises ValueError outside [min_agents, max_agents]."""
        ...

    def set_breaker(self, model: str, state: str) -> None:
        """Force a model's circuit breaker "open" or "closed"; ValueError for any other state."""
        ...

    def pause(self) -> None:
        """Stop dispatching new jobs; jobs in flight continue."""
        ...

    def resume(self) -> None:
        """Dispatch again after `pause`."""
        ...

    def drain(self) -> None:
        """Let jobs in flight finish, dispatch nothing more, then end the run (exit 130, resumable)."""
        ...
