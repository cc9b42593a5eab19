"""Nothing of a run outlives `anvil run`: once the command has returned, no process it started
(fork server, governor, workers, resource tracker) is left, after a normal end and after Ctrl-C.

The run is started in a session of its own, so its process group holds exactly its tree (a
group id is not reused while the group has members): the test reads the group's members from
/proc, never processes by name."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import (
    anvil_cmd,
    cli_env,
    live_pids,
    succeeded_jobs,
    write_config,
    write_jsonl_batch,
)

HANG_GUARD_S = 60.0  # waits only against a hang, never a measure of speed


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(latency_ms=100, seed=11)).start_thread() as server:
        yield server


def _run(tmp_path: Path, sim: SimServer, jobs: int) -> tuple[subprocess.Popen[str], Path]:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(jobs)])
    config = write_config(tmp_path / "anvil.yaml", sim.base_url, scaling={"workers": 2, "max_agents": 4})
    proc = subprocess.Popen(
        anvil_cmd("run", str(batch), "--config", str(config)),
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the group is the run's tree
    )
    return proc, tmp_path / ".anvil"


def _watch(proc: subprocess.Popen[str], until: int, state: Path) -> set[int]:
    """The group's members seen until `until` jobs have succeeded (bounded)."""
    seen: set[int] = set()
    deadline = time.monotonic() + HANG_GUARD_S
    while succeeded_jobs(state) < until and proc.poll() is None and time.monotonic() < deadline:
        seen |= live_pids(group=proc.pid)
        time.sleep(0.02)  # sleep-ok: polling for real progress, bounded by a deadline
    return seen


def _ended(proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _out, err = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


@pytest.mark.slow
def test_nothing_of_the_run_is_left_after_it_returns(tmp_path: Path, sim: SimServer) -> None:
    proc, state = _run(tmp_path, sim, jobs=12)
    seen = _watch(proc, 1, state)
    code, err = _ended(proc)
    left = live_pids(group=proc.pid)
    assert code == ExitCode.OK, err
    assert len(seen - {proc.pid}) >= 3, seen  # it had helpers: the fork server, the governor, workers
    assert not left, left


@pytest.mark.slow
def test_nothing_is_left_after_ctrl_c(tmp_path: Path) -> None:
    with SimServer(SimConfig(latency_ms=400, seed=12)).start_thread() as slow:
        proc, state = _run(tmp_path, slow, jobs=200)
        seen = _watch(proc, 2, state)
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C at a terminal: to the whole group
        code, err = _ended(proc)
        answered = slow.stats()["requests"]
    left = live_pids(group=proc.pid)
    assert code == ExitCode.INTERRUPTED, err
    assert len(seen - {proc.pid}) >= 3, seen
    assert not left, left
    # the calls in flight at Ctrl-C were let finish and recorded (their fork server long gone):
    # every request the API answered is a result in the journal, none paid for and lost
    assert answered == succeeded_jobs(state)


def _forked_by_forkserver(
    pids: set[int], needle: bytes = b"multiprocessing.forkserver import main"
) -> dict[int, int]:
    """pid -> parent pid of the members started from multiprocessing's fork server (the fork
    server itself and the workers it forked), or whose command line holds `needle`."""
    found = {}
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            ppid = int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if needle in argv:
            found[pid] = ppid
    return found


@pytest.mark.slow
def test_the_fork_server_goes_once_the_workers_are_up_and_comes_back_for_a_replacement(
    tmp_path: Path, sim: SimServer
) -> None:
    """`anvil run` stops its fork server (an idle copy of the SDK) and multiprocessing's resource
    tracker once the workers run; a worker killed later is replaced from a fork server started
    again, and every job is done."""
    proc, state = _run(tmp_path, sim, jobs=80)
    _watch(proc, 2, state)
    running = live_pids(group=proc.pid)
    members = _forked_by_forkserver(running)
    assert proc.pid not in members.values(), members  # the conductor's fork server is gone
    assert not _forked_by_forkserver(running, b"multiprocessing.resource_tracker import main")
    workers = [pid for pid, ppid in members.items() if ppid != proc.pid]
    assert len(workers) == 2, members
    os.kill(workers[0], signal.SIGKILL)
    code, err = _ended(proc)
    assert code == ExitCode.OK, err
    assert succeeded_jobs(state) == 80
    assert not live_pids(group=proc.pid)


def test_the_fork_server_starts_without_every_variable_the_api_is_configured_by() -> None:
    from anvil_cli.config import endpoint
    from anvil_cli.engine.process import forkserver

    assert set(endpoint.API_ENV) <= set(forkserver.API_ENV)


def test_a_governor_begun_early_and_never_taken_is_stopped() -> None:
    """A run with nothing to do (or refused) never takes the Manager it spawned as it began."""
    from anvil_cli.engine.governor_host import early
    from anvil_cli.engine.governor_host.manager import begin_governor
    from anvil_cli.engine.process.forkserver import governor_context

    begin_governor(governor_context())
    taken = early.take(governor_context())
    assert taken is not None
    process = taken[0]._process  # type: ignore[attr-defined]
    early.keep(taken[0], taken[1], governor_context())
    early.drop()
    assert process.exitcode is not None  # reaped
    assert early.take(governor_context()) is None
