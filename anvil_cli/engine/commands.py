"""Control commands: what may be asked of a running run from another thread (the HTTP API),
as typed values, and the queue that carries them to the driver's thread.

Each command journals as a `control` event whose data is `{"command": kind, "value": value}`
(`event_data`); `kind` is the command's wire name, kept stable for journals already written.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, assert_never


@dataclass(frozen=True, slots=True)
class JobsAdded:
    """Jobs were committed to the journal: the run has `count` more to do."""

    count: int
    kind: ClassVar[str] = "jobs_added"


@dataclass(frozen=True, slots=True)
class Scale:
    """Set the agent limit (a manual setting holds: no more automatic scaling)."""

    agents: int
    kind: ClassVar[str] = "scale"


@dataclass(frozen=True, slots=True)
class SetBreaker:
    """Force a model's circuit breaker "open" or "closed"."""

    model: str
    state: str
    kind: ClassVar[str] = "breaker"


@dataclass(frozen=True, slots=True)
class Pause:
    """Dispatch (or submit) nothing new until `Resume`; what is in flight continues."""

    kind: ClassVar[str] = "pause"


@dataclass(frozen=True, slots=True)
class Resume:
    """Dispatch again after `Pause`."""

    kind: ClassVar[str] = "resume"


@dataclass(frozen=True, slots=True)
class DrainRun:
    """Finish what is in flight, start nothing more, end the run (resumably). Not the worker
    message `events.Drain`, which the conductor sends its workers when a run is ending."""

    kind: ClassVar[str] = "drain"


ControlCommand = JobsAdded | Scale | SetBreaker | Pause | Resume | DrainRun


def event_data(command: ControlCommand) -> dict[str, Any]:
    """The data of the `control` event journaled for `command` (its JSON is part of the journal)."""
    value: Any
    match command:
        case JobsAdded(count):
            value = count
        case Scale(agents):
            value = agents
        case SetBreaker(model, state):
            value = (model, state)
        case Pause() | Resume() | DrainRun():
            value = None
        case _:
            assert_never(command)
    return {"command": command.kind, "value": value}


class CommandSource(Protocol):
    """Where a driver takes the commands posted since it last looked (thread-safe)."""

    def pending_commands(self) -> list[ControlCommand]: ...


class CommandQueue:
    """Commands posted from any thread, taken in order by the driver's thread."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[ControlCommand] = queue.SimpleQueue()

    def put(self, command: ControlCommand) -> None:
        self._queue.put(command)

    def pending_commands(self) -> list[ControlCommand]:
        out: list[ControlCommand] = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out
