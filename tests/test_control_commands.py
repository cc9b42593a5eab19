"""Control commands from the HTTP API's controller to a driver: the `control` events they journal
(their JSON is part of the journal: unchanged), and the hook each one reaches, in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anvil_cli.engine.control import SteeringHooks, apply_commands
from anvil_cli.engine.journal.store import Journal, journal_path
from anvil_cli.engine.modes.batches.steer import Steering
from anvil_cli.engine.process.signals import SignalState
from anvil_cli.jobs.loader import load_batch
from anvil_cli.session.control import RunControl
from anvil_cli.snapshot.metrics import RunMetrics
from tests.engine_support import write_jsonl_batch

MODEL = "claude-haiku-4-5"


def _post_every_command(control: RunControl) -> None:
    control.add_jobs([{"id": "added", "prompt": "hi"}])
    control.scale(3)
    control.set_breaker(MODEL, "open")
    control.pause()
    control.resume()
    control.drain()


def _journal_and_control(tmp_path: Path) -> tuple[Journal, str, RunControl]:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a"])
    state = tmp_path / ".anvil"
    journal = Journal.open(state)
    run_id = journal.create_run(str(batch), "sha", load_batch(batch))
    return journal, run_id, RunControl(journal_path(state), run_id, agent_min=1, agent_max=4)


def _control_events(journal: Journal, run_id: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "at"} for e in journal.events(run_id, "control")]


EVENTS = [
    {"kind": "control", "command": "jobs_added", "value": 1},
    {"kind": "control", "command": "scale", "value": 3},
    {"kind": "control", "command": "breaker", "value": [MODEL, "open"]},
    {"kind": "control", "command": "pause", "value": None},
    {"kind": "control", "command": "resume", "value": None},
    {"kind": "control", "command": "drain", "value": None},
]


def test_each_command_is_journaled_then_reaches_its_hook_in_order(tmp_path: Path) -> None:
    journal, run_id, control = _journal_and_control(tmp_path)
    calls: list[tuple[str, Any]] = []
    hooks = SteeringHooks(
        jobs_added=lambda n: calls.append(("jobs_added", n)),
        scale=lambda n: calls.append(("scale", n)),
        set_breaker=lambda m, s: calls.append(("breaker", (m, s))),
        set_paused=lambda p: calls.append(("paused", p)),
        drain=lambda: calls.append(("drain", None)),
    )
    try:
        _post_every_command(control)
        apply_commands(control.pending_commands(), journal, run_id, hooks)
        assert _control_events(journal, run_id) == EVENTS
        assert calls == [
            ("jobs_added", 1),
            ("scale", 3),
            ("breaker", (MODEL, "open")),
            ("paused", True),
            ("paused", False),
            ("drain", None),
        ]
        assert control.pending_commands() == []  # each command is applied once
    finally:
        control.close()
        journal.close()


def test_batches_mode_journals_the_same_events_and_ignores_scale_and_breakers(tmp_path: Path) -> None:
    journal, run_id, control = _journal_and_control(tmp_path)
    said: list[str] = []
    metrics = RunMetrics(total=1, started_at=0.0)
    steer = Steering(journal, run_id, SignalState(), metrics, control, said.append)
    try:
        _post_every_command(control)
        steer.apply()
        assert _control_events(journal, run_id) == EVENTS
        assert metrics.total == 2
        assert said == [
            "scale: not applicable to --mode batches (no agents, no breakers); ignored",
            "breaker: not applicable to --mode batches (no agents, no breakers); ignored",
        ]
        assert steer.draining and not steer.paused and not steer.may_submit()
    finally:
        control.close()
        journal.close()
