"""The conductor built as a run builds it, over the stub backend (engine/backends/stub.py): a real
journal on tmp_path, the real governor (policy/governor behind `GovernorService`) held by an
in-process host that can lose it, the real views' monitor, a fake clock. Each test drives the
loop a turn at a time (`start`, `step`, `finish`) and scripts what the workers do."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.config.load import load_settings
from anvil_cli.config.settings import Settings
from anvil_cli.engine.backends.stub import StubBackend, abandoned, answer, answered, failed
from anvil_cli.engine.conductor.core import Conductor
from anvil_cli.engine.events import Drain, NewGovernor
from anvil_cli.engine.governor_host.client import GovernorClient
from anvil_cli.engine.governor_host.manager import GovernorService
from anvil_cli.engine.journal.store import Journal, journal_path
from anvil_cli.engine.process.signals import SignalState
from anvil_cli.engine.run_end import RunEnd
from anvil_cli.engine.ticker import Ticker
from anvil_cli.jobs.loader import load_batch
from anvil_cli.policy.governor.seed import seed_from
from anvil_cli.policy.governor.view import GovernorView
from anvil_cli.session.control import RunControl
from anvil_cli.snapshot.metrics import RunMetrics
from anvil_cli.views.dashboard import QuietReporter, RunMonitor
from tests.engine_support import write_config, write_jobs

WINDOW = 4  # scaling.max_agents: the jobs held by workers at once
GRACE_S = 5.0  # run.grace_period_s (engine_support's config)
T0 = 1000.0


class FakeClock:
    """The conductor's monotonic clock, moved only by the test."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class InProcessHost:
    """A `GovernorHost` for tests: the real `GovernorService` in this process, as the keeper
    (engine/governor_host/manager.py) holds one in a Manager process; `lose()` makes it lost,
    and `restart` starts a new one the way the keeper does (the run's spend, a seed from the
    lost one's last snapshot)."""

    def __init__(self, settings: Settings) -> None:
        self.settings_json = settings.model_dump_json()
        self.generation = 0
        self.client = GovernorService(self.settings_json)
        self.restarts: list[tuple[float, GovernorView]] = []  # (spent_usd, the lost one's last view)
        self._lost = False

    @property
    def pid(self) -> int | None:
        return None

    def lose(self) -> None:
        self._lost = True

    def lost(self) -> bool:
        return self._lost

    def restart(self, spent_usd: float, last_view: GovernorView) -> GovernorClient:
        self.restarts.append((spent_usd, last_view))
        self.generation += 1
        seed = seed_from(last_view, self.generation)
        self.client = GovernorService(self.settings_json, spent_usd, seed)
        self._lost = False
        return self.client


class Notes(QuietReporter):
    """The views' reporter, keeping the lines the conductor says."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, line: str) -> None:
        self.lines.append(line)


@dataclass
class Rig:
    conductor: Conductor
    backend: StubBackend
    journal: Journal
    run_id: str
    clock: FakeClock
    host: InProcessHost
    control: RunControl
    notes: Notes

    def steps(self, n: int = 1) -> None:
        for _ in range(n):
            self.conductor.step()

    def answer_all(self) -> RunEnd:
        """Every job held is answered, and every one dispatched from now on; the run to its end
        (a bounded number of turns: a run that would spin fails the test)."""
        for w in self.backend.live():
            for seq in list(w.held):
                self.backend.finish(seq)
        self.backend.on_job = answer()
        return self.run_out()

    def run_out(self, turns: int = 50) -> RunEnd:
        """The loop turned until the run is over, then ended (`finish`)."""
        for _ in range(turns):
            if self.conductor.over():
                return self.conductor.finish()
            self.conductor.step()
        raise AssertionError(f"the run is not over after {turns} turns")

    def states(self) -> dict[int, str]:
        rows = self.journal.db.execute("SELECT seq, state FROM jobs WHERE run_id = ?", (self.run_id,))
        return dict(rows.fetchall())

    def attempts(self) -> dict[int, int]:
        rows = self.journal.db.execute("SELECT seq, attempts FROM jobs WHERE run_id = ?", (self.run_id,))
        return dict(rows.fetchall())

    def events(self, kind: str) -> list[dict[str, Any]]:
        return self.journal.events(self.run_id, kind)


PRIORITIES = ["low", "normal", "critical", "high", "normal", "critical", "low", "high"]


@pytest.fixture
def rig(tmp_path: Path) -> Any:
    """Eight jobs of mixed priority; two stub workers; nothing dispatched yet."""
    jobs = [{"id": f"j{i}", "prompt": f"q{i}", "priority": p} for i, p in enumerate(PRIORITIES)]
    batch = write_jobs(tmp_path / "batch.jsonl", jobs)
    config = write_config(
        tmp_path / "anvil.yaml",
        "http://127.0.0.1:9",  # never called: the stub's workers call no API
        scaling={"workers": 2, "max_agents": WINDOW, "max_concurrent_jobs": WINDOW, "min_agents": 1},
        budget={"max_usd": 100.0},
    )
    settings = load_settings(config, env={})
    clock = FakeClock()
    with Journal.open(settings.state_dir) as journal:
        run_id = journal.create_run(str(batch), "sha", load_batch(batch))
        host = InProcessHost(settings)
        backend = StubBackend(governor=host.client)
        control = RunControl(journal_path(settings.state_dir), run_id, agent_min=1, agent_max=WINDOW)
        notes = Notes()
        monitor = RunMonitor(settings, notes, batch_path=str(batch), mono_clock=clock)
        conductor = Conductor(
            settings,
            journal,
            run_id,
            backend,
            host.client,
            SignalState(),
            RunMetrics(total=len(jobs), started_at=clock()),
            Ticker(journal, run_id, monitor),
            control,
            host,
            clock=clock,
        )
        try:
            yield Rig(conductor, backend, journal, run_id, clock, host, control, notes)
        finally:
            control.close()


def dispatch_order() -> list[int]:
    """The batch's seqs in the order the conductor must dispatch them: priority, then seq."""
    rank = {"critical": 0, "high": 1, "normal": 2, "low": 3}
    return sorted(range(len(PRIORITIES)), key=lambda seq: (rank[PRIORITIES[seq]], seq))


def test_jobs_go_out_by_priority_then_batch_order(rig: Rig) -> None:
    rig.conductor.start()
    rig.steps(1)  # the workers say they are ready
    assert rig.backend.dispatched == []
    rig.steps(1)
    first = [seq for _, seq in rig.backend.dispatched]
    assert first == dispatch_order()[:WINDOW]  # at most the window, the most urgent first
    for seq in first:
        rig.backend.finish(seq)
    rig.steps(2)  # their results recorded; the rest go out
    assert [seq for _, seq in rig.backend.dispatched] == dispatch_order()
    end = rig.answer_all()
    assert not end.stopped_early
    assert set(rig.states().values()) == {"succeeded"}


def test_the_conductor_knows_which_worker_holds_which_job(rig: Rig) -> None:
    rig.conductor.start()
    rig.steps(2)
    held = {w.id: set(w.held) for w in rig.backend.live()}
    assert sorted(len(jobs) for jobs in held.values()) == [2, 2]  # balanced over the two workers
    state = rig.conductor.engine_state()
    assert {w.id: w.jobs for w in state.workers} == {wid: len(jobs) for wid, jobs in held.items()}
    assert state.in_flight == WINDOW
    running = {seq for seq, s in rig.states().items() if s == "running"}
    assert running == set().union(*held.values())  # the journal says so first
    worker, seq = rig.backend.dispatched[0]
    rig.backend.finish(seq)
    rig.steps(1)
    assert rig.states()[seq] == "succeeded"
    assert rig.conductor.held.jobs_of(worker) == len(rig.backend.all[worker].held)


def test_a_lost_workers_jobs_run_again_none_lost_or_twice(rig: Rig) -> None:
    rig.conductor.start()
    rig.steps(2)
    lost = rig.backend.dispatched[0][0]
    its_jobs = sorted(rig.backend.all[lost].held)
    row = rig.backend.all[lost].held[its_jobs[0]]
    rig.backend.emit(*answered(lost, row, cost_usd=0.5)[:1])  # a call paid for, not yet polled
    rig.backend.lose(lost)
    rig.steps(1)  # reaped: its jobs pending again, a replacement started
    died = rig.events("worker_died")
    assert [(d["worker"], d["jobs"]) for d in died] == [(lost, 2)]
    states = rig.states()
    assert [states[seq] for seq in its_jobs] == ["pending", "pending"]
    assert all(rig.attempts()[seq] == 1 for seq in its_jobs)  # the lost dispatch counts
    assert rig.journal.totals(rig.run_id)["cost_usd"] == pytest.approx(0.5)  # its last events count
    assert len(rig.backend.live()) == 2 and rig.backend.restarts == 1
    rig.steps(2)  # the replacement is ready; the lost jobs go out again, first (most urgent)
    again = [seq for _, seq in rig.backend.dispatched[WINDOW:]]
    assert sorted(again[: len(its_jobs)]) == its_jobs
    assert all(rig.backend.holder(seq) not in (None, lost) for seq in its_jobs)
    end = rig.answer_all()
    assert not end.stopped_early
    assert set(rig.states().values()) == {"succeeded"}  # none lost
    assert rig.conductor.metrics.succeeded == len(PRIORITIES)  # none counted twice
    times = Counter(seq for _, seq in rig.backend.dispatched)
    assert {seq: n for seq, n in times.items() if n > 1} == dict.fromkeys(its_jobs, 2)
    assert all(rig.attempts()[seq] == 2 for seq in its_jobs)  # lost once, answered once


def test_a_lost_governor_is_started_again_with_the_runs_spend(rig: Rig) -> None:
    rig.conductor.start()
    rig.steps(2)
    spent = 0.0
    for n, (_, seq) in enumerate(rig.backend.dispatched[:3]):
        spent += 0.25 * (n + 1)
        rig.backend.finish(seq, cost_usd=0.25 * (n + 1))
    rig.steps(1)
    assert rig.journal.totals(rig.run_id)["cost_usd"] == pytest.approx(spent)
    lost = rig.host.client
    rig.host.lose()
    rig.steps(1)
    [restarted] = rig.events("governor_restarted")
    assert restarted["generation"] == 1
    assert restarted["spent_usd"] == pytest.approx(spent)
    assert rig.host.client is not lost
    budget = rig.host.client.view().budget
    assert budget is not None
    assert budget.spent_usd == pytest.approx(spent)  # carried: the cap covers the whole run
    assert budget.max_usd == 100.0
    for w in rig.backend.live():  # every worker asks the new one from now on
        assert w.governor is rig.host.client
        assert isinstance(w.commands[-1], NewGovernor)
    assert any("governor was lost" in line for line in rig.notes.lines)
    assert not rig.answer_all().stopped_early


def test_a_drain_stops_dispatching_and_lets_in_flight_jobs_finish(rig: Rig) -> None:
    rig.conductor.start()
    rig.steps(2)
    in_flight = [seq for _, seq in rig.backend.dispatched]
    rig.control.drain()
    rig.steps(1)
    assert all(isinstance(w.commands[-1], Drain) for w in rig.backend.live())
    assert rig.conductor.engine_state().phase == "stopping"
    rig.backend.finish(in_flight[0])
    rig.backend.finish(in_flight[1])
    rig.steps(3)
    assert len(rig.backend.dispatched) == WINDOW  # nothing more went out
    for seq in in_flight[2:]:
        rig.backend.finish(seq)
    end = rig.run_out()
    assert end.interrupted
    states = rig.states()
    assert {seq for seq, s in states.items() if s == "succeeded"} == set(in_flight)
    assert {seq for seq, s in states.items() if s != "succeeded"} == set(dispatch_order()[WINDOW:])
    assert {states[seq] for seq in dispatch_order()[WINDOW:]} == {"pending"}


def test_while_draining_a_failed_job_is_failed_and_an_abandoned_one_waits(rig: Rig) -> None:
    rig.conductor.start()
    rig.steps(2)
    (w0, s0), (w1, s1), (_, s2), (_, s3) = rig.backend.dispatched
    rig.control.drain()
    rig.steps(1)
    rig.backend.emit(*failed(w0, rig.backend.all[w0].held[s0], status_code=400))
    rig.backend.emit(*abandoned(w1, rig.backend.all[w1].held[s1], attempts=2))
    rig.backend.finish(s2)
    rig.backend.finish(s3)
    end = rig.run_out()
    assert end.interrupted
    states, attempts = rig.states(), rig.attempts()
    assert (states[s0], states[s1], states[s2], states[s3]) == ("failed", "pending", "succeeded", "succeeded")
    assert attempts[s1] == 2  # its attempts count toward the resume's
    assert (
        rig.conductor.metrics.failed == 1
        and rig.conductor.metrics.errors_by_type["invalid_request_error"] == 1
    )


def test_a_drain_ends_at_its_deadline_and_what_is_held_waits_for_the_resume(rig: Rig) -> None:
    rig.conductor.start()
    rig.steps(2)
    in_flight = [seq for _, seq in rig.backend.dispatched]
    rig.control.drain()
    rig.steps(1)
    rig.backend.finish(in_flight[0])
    rig.clock.advance(GRACE_S - 0.5)
    rig.steps(1)
    assert not rig.conductor.over()  # within the grace period: still waiting
    rig.clock.advance(0.5)
    assert rig.conductor.over()  # the deadline passed: it ends at once
    end = rig.conductor.finish()
    assert end.interrupted
    states = rig.states()
    assert states[in_flight[0]] == "succeeded"
    assert {states[seq] for seq in in_flight[1:]} == {"pending"}  # not lost: a resume runs them


def test_nothing_is_dispatched_while_paused(rig: Rig) -> None:
    rig.control.pause()
    rig.conductor.start()
    rig.steps(3)
    assert rig.backend.dispatched == []
    assert rig.conductor.engine_state().phase == "paused"
    assert not rig.conductor.over()
    rig.control.resume()
    rig.steps(1)
    assert [seq for _, seq in rig.backend.dispatched] == dispatch_order()[:WINDOW]
    [paused, resumed] = rig.events("control")
    assert (paused["command"], resumed["command"]) == ("pause", "resume")
    assert not rig.answer_all().stopped_early
    assert set(rig.states().values()) == {"succeeded"}


def test_a_silent_worker_is_killed_and_replaced(rig: Rig) -> None:
    rig.conductor.start()
    rig.steps(2)
    quiet, talking = (w.id for w in rig.backend.live())
    silence_s = rig.conductor.settings.run.worker_silence_s
    rig.clock.advance(silence_s / 2)
    rig.backend.ready(talking)  # any event says its loop turns (a heartbeat would do)
    rig.steps(1)
    rig.clock.advance(silence_s / 2 + 1)
    rig.steps(1)
    assert [e["worker"] for e in rig.events("worker_silent")] == [quiet]
    assert [e["worker"] for e in rig.events("worker_died")] == [quiet]
    assert not rig.backend.all[quiet].alive and rig.backend.all[talking].alive
    assert not rig.answer_all().stopped_early
    assert set(rig.states().values()) == {"succeeded"}  # its jobs ran again
