"""A run is held by a process, not by a number: a state dir restored into a fresh container (a
CI cache) whose recorded pid now belongs to some other process resumes instead of refusing, even
with --fresh, and a journal older than the record still opens."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.process.lifeline import BOOT_ID, owner_alive, process_start
from anvil_cli.exitcodes import ExitCode
from anvil_cli.jobs.loader import load_batch
from anvil_cli.session.resume import file_sha256
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import journal_query, run_cli, write_config, write_jsonl_batch

N_JOBS = 6

pytestmark = pytest.mark.skipif(not BOOT_ID.exists(), reason="needs Linux's /proc")


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated live process: the one the recorded pid now names."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield proc
    proc.kill()
    proc.wait()


def test_process_start_tells_processes_apart(stranger: subprocess.Popen[bytes]) -> None:
    mine, theirs = process_start(os.getpid()), process_start(stranger.pid)
    assert mine and theirs and mine != theirs
    assert mine == process_start(os.getpid())  # stable
    assert mine.split(":")[0] == BOOT_ID.read_text().strip()
    assert owner_alive(stranger.pid, theirs)
    assert not owner_alive(stranger.pid, mine)  # the number is alive, the owner is not
    assert owner_alive(stranger.pid, None)  # nothing recorded: the number is all there is
    assert not owner_alive(None, None)


def _restored_run(tmp_path: Path, pid: int, start: str | None, *, drop_column: bool = False) -> str:
    """A journal whose run of the batch is `running`, held by (`pid`, `start`): as left by a
    process in a container that is gone, restored into this one."""
    tmp_path.mkdir(exist_ok=True)
    batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(N_JOBS)])
    with Journal.open(tmp_path / ".anvil") as journal:
        run_id = journal.create_run(str(batch.resolve()), file_sha256(batch), load_batch(batch))
        journal.db.execute("UPDATE runs SET pid = ?, pid_start = ? WHERE id = ?", (pid, start, run_id))
        if drop_column:  # as a journal written before the column existed
            journal.db.execute("ALTER TABLE runs DROP COLUMN pid_start")
    return run_id


def _run(tmp_path: Path, sim: SimServer, *args: str) -> subprocess.CompletedProcess[str]:
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    return run_cli("run", str(tmp_path / "b.jsonl"), "--config", str(config), *args, cwd=tmp_path)


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(latency_ms=5, seed=2)).start_thread() as server:
        yield server


@pytest.mark.parametrize("fresh", [False, True])
def test_a_live_pid_that_is_another_process_does_not_hold_the_run(
    tmp_path: Path, sim: SimServer, stranger: subprocess.Popen[bytes], fresh: bool
) -> None:
    boot = BOOT_ID.read_text().strip()
    run_id = _restored_run(tmp_path, stranger.pid, f"{boot}:1")  # started at another time
    done = _run(tmp_path, sim, *(["--fresh"] if fresh else []))
    assert done.returncode == ExitCode.OK, done.stderr
    assert "in progress" not in done.stderr
    runs = journal_query(tmp_path / ".anvil", "SELECT id, state FROM runs ORDER BY created_at")
    by_run = "SELECT run_id, COUNT(*) FROM jobs WHERE state = 'succeeded' GROUP BY run_id"
    succeeded = journal_query(tmp_path / ".anvil", by_run)
    if fresh:
        assert len(runs) == 2 and runs[1][1] == "finished"
        assert dict(succeeded) == {runs[1][0]: N_JOBS}
    else:
        assert runs == [(run_id, "finished")]
        assert dict(succeeded) == {run_id: N_JOBS}
    with contextlib.closing(sqlite3.connect(tmp_path / ".anvil" / "journal.sqlite")) as db:
        (start,) = db.execute("SELECT pid_start FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
    assert start and start.startswith(boot + ":")  # the process that ran it was recorded


@pytest.mark.slow
def test_the_process_that_really_holds_the_run_still_does(
    tmp_path: Path, sim: SimServer, stranger: subprocess.Popen[bytes]
) -> None:
    run_id = _restored_run(tmp_path, stranger.pid, process_start(stranger.pid))
    for args in ((), ("--fresh",)):
        done = _run(tmp_path, sim, *args)
        assert done.returncode == ExitCode.BAD_INPUT, done.stderr
        assert f"run {run_id} of this batch is in progress in process {stranger.pid}" in done.stderr


def test_a_journal_older_than_the_record_opens_and_its_dead_owner_is_resumed(
    tmp_path: Path, sim: SimServer, stranger: subprocess.Popen[bytes]
) -> None:
    stranger.kill()
    stranger.wait()  # its pid is dead now
    run_id = _restored_run(tmp_path, stranger.pid, None, drop_column=True)
    with contextlib.closing(sqlite3.connect(tmp_path / ".anvil" / "journal.sqlite")) as db:
        assert "pid_start" not in {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    done = _run(tmp_path, sim)
    assert done.returncode == ExitCode.OK, done.stderr
    assert journal_query(tmp_path / ".anvil", "SELECT id, state FROM runs") == [(run_id, "finished")]
    assert journal_query(tmp_path / ".anvil", "SELECT pid_start IS NOT NULL FROM runs") == [(1,)]


def test_a_journal_older_than_the_record_with_a_live_pid_is_still_refused(
    tmp_path: Path, sim: SimServer, stranger: subprocess.Popen[bytes]
) -> None:
    """Without the start time, a live pid may be the owner: refusing is the safe side."""
    run_id = _restored_run(tmp_path, stranger.pid, None, drop_column=True)
    done = _run(tmp_path, sim)
    assert done.returncode == ExitCode.BAD_INPUT
    assert f"run {run_id} of this batch is in progress in process {stranger.pid}" in done.stderr


def test_status_shows_a_restored_run_as_interrupted_and_says_how_to_resume(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    boot = BOOT_ID.read_text().strip()
    run_id = _restored_run(tmp_path, stranger.pid, f"{boot}:1")
    listed = run_cli("status", "--json", cwd=tmp_path)
    assert listed.returncode == ExitCode.OK, listed.stderr
    shown = json.loads(listed.stdout)
    assert shown["run_id"] == run_id and shown["state"] == "interrupted" and not shown["live"]
    held = _restored_run(tmp_path / "held", stranger.pid, process_start(stranger.pid))
    really = json.loads(run_cli("status", "--json", cwd=tmp_path / "held").stdout)
    assert really["run_id"] == held and really["live"]  # its real owner is alive: still running
