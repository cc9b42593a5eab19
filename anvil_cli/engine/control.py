"""Steering a running run: the control commands (`engine.commands`) applied on the driver's
thread, the same way in every mode.

The driver's loop is single-threaded and owns its journal connection; the HTTP API's thread
only posts commands (`CommandSource`). Each turn the driver applies those posted since: each is
journaled as a `control` event first, then handed to the mode's hook for its type. The
journaling and the dispatch are here; what a command does is the mode's (`SteeringHooks`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import assert_never

from anvil_cli.engine.commands import (
    ControlCommand,
    DrainRun,
    JobsAdded,
    Pause,
    Resume,
    Scale,
    SetBreaker,
    event_data,
)
from anvil_cli.engine.journal.store import Journal


@dataclass(frozen=True, slots=True)
class SteeringHooks:
    """What a mode does for each command (one where a command has no meaning says so)."""

    jobs_added: Callable[[int], None]  # the jobs are in the journal already
    scale: Callable[[int], None]
    set_breaker: Callable[[str, str], None]  # (model, "open" | "closed")
    set_paused: Callable[[bool], None]  # Pause: True, Resume: False
    drain: Callable[[], None]


def apply_commands(
    commands: Iterable[ControlCommand], journal: Journal, run_id: str, hooks: SteeringHooks
) -> None:
    """Journal each command, then apply it, in the order they were posted."""
    for command in commands:
        journal.add_event(run_id, "control", event_data(command))
        match command:
            case JobsAdded(count):
                hooks.jobs_added(count)
            case Scale(agents):
                hooks.scale(agents)
            case SetBreaker(model, state):
                hooks.set_breaker(model, state)
            case Pause():
                hooks.set_paused(True)
            case Resume():
                hooks.set_paused(False)
            case DrainRun():
                hooks.drain()
            case _:
                assert_never(command)
