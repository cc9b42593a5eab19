"""The journal: private files, and no lost commits while other connections come and go."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from anvil_cli.engine.journal.store import Journal, journal_path
from anvil_cli.jobs.loader import load_batch
from anvil_cli.session.control import RunControl
from tests.engine_support import write_jsonl_batch

READER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
db.close()
"""


def _count_elsewhere(path: Path) -> int:
    out = subprocess.run(
        [sys.executable, "-c", READER, str(path)], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def test_journal_files_are_private(tmp_path: Path) -> None:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a"])
    with Journal.open(tmp_path / ".anvil") as journal:
        journal.create_run(str(batch), "sha", load_batch(batch))
        for name in ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"):
            assert stat.S_IMODE(os.stat(tmp_path / ".anvil" / name).st_mode) == 0o600, name
    assert stat.S_IMODE(os.stat(tmp_path / ".anvil").st_mode) == 0o700


def test_commits_survive_a_second_connection_in_the_process_and_readers_elsewhere(tmp_path: Path) -> None:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a", "b"])
    state = tmp_path / ".anvil"
    writer = Journal.open(state)
    run_id = writer.create_run(str(batch), "sha", load_batch(batch))
    control = RunControl(journal_path(state), run_id, agent_min=1, agent_max=4)  # the API's connection
    _count_elsewhere(journal_path(state))  # e.g. `anvil status` from another terminal
    for n in range(5):
        writer.add_event(run_id, "probe", {"n": n})
    assert _count_elsewhere(journal_path(state)) == 5
    control.close()
    writer.close()
    with Journal.open(state) as again:
        assert len(again.events(run_id, "probe")) == 5


def test_only_one_process_can_take_over_a_run(tmp_path: Path) -> None:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a"])
    with Journal.open(tmp_path / ".anvil") as journal:
        run_id = journal.create_run(str(batch), "sha", load_batch(batch))
        journal.db.execute("UPDATE runs SET pid = 999999999, state = 'interrupted' WHERE id = ?", (run_id,))
        assert journal.claim_run(run_id, previous_pid=999999999)  # the first to resume wins...
        assert not journal.claim_run(run_id, previous_pid=999999999)  # ...a second, racing one does not


def test_a_batch_already_running_elsewhere_is_not_started_again(tmp_path: Path) -> None:
    import pytest

    from anvil_cli.engine.process.lifeline import process_start
    from anvil_cli.errors import UsageError

    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a"])
    with Journal.open(tmp_path / ".anvil") as journal:
        run_id = journal.create_run(str(batch), "sha", load_batch(batch))
        owner = os.getppid()  # alive, not us: the run's pid and that process's start time
        journal.db.execute(
            "UPDATE runs SET pid = ?, pid_start = ? WHERE id = ?", (owner, process_start(owner), run_id)
        )
        with pytest.raises(UsageError, match="in progress"):
            journal.create_run(str(batch), "sha", load_batch(batch))
