"""How the conductor watches its workers, whatever backend runs them: when each was last heard
from (a worker silent too long is killed and replaced), and the process groups of its running
tool calls (killed with it, so no tool outlives its worker)."""

from __future__ import annotations

from anvil_cli.engine.events import ToolGroup, WorkerEvent
from anvil_cli.engine.worker.tools.runner import kill_group


class WorkerWatch:
    """Last-heard times and tool process groups per worker; time passed in."""

    def __init__(self, silence_s: float) -> None:
        self.silence_s = silence_s
        self._heard: dict[int, float] = {}  # worker -> when its last event arrived
        self._tools: dict[int, set[int]] = {}  # worker -> its tool calls' process groups

    def heard(self, event: WorkerEvent, now: float) -> None:
        """Any event says the worker's loop is turning; a `ToolGroup` also updates its groups."""
        self._heard[event.worker] = now
        if isinstance(event, ToolGroup):
            groups = self._tools.setdefault(event.worker, set())
            (groups.add if event.running else groups.discard)(event.pgid)

    def silent(self, now: float) -> list[tuple[int, float]]:
        """Workers not heard from for `silence_s`, with how long (each reported once)."""
        out = [(w, now - at) for w, at in self._heard.items() if now - at > self.silence_s]
        for worker, _ in out:
            del self._heard[worker]
        return out

    def forget(self, worker: int) -> None:
        """The worker is gone: its tool calls die with it."""
        self._heard.pop(worker, None)
        for pgid in self._tools.pop(worker, set()):
            kill_group(pgid)

    def forget_all(self) -> None:
        for worker in {*self._heard, *self._tools}:
            self.forget(worker)
