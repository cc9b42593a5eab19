"""A journal row whose JSON cannot be read never crashes a command that reads it: `anvil status`,
`export` and `report` exit 2 naming the row (table, run, job, column), change nothing, and print
no traceback."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from pathlib import Path

import pytest

from tests.engine_support import invoke_cli, run_cli, write_jsonl_batch


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of two jobs, made by `anvil run --simulate`."""
    tmp = tmp_path_factory.mktemp("damage")
    write_jsonl_batch(tmp / "b.jsonl", ["one", "two"])
    done = run_cli("run", "b.jsonl", "--simulate", "-q", cwd=tmp)
    assert done.returncode == 0, done.stderr
    return tmp


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("table", "column", "named"),
    [
        ("jobs", "usage_json", "job 'job-0000' (seq 0), column usage_json"),
        ("jobs", "attempts_json", "job 'job-0000' (seq 0), column attempts_json"),
        ("jobs", "job_json", "job 'job-0000' (seq 0), column job_json"),
        ("runs", "summary_json", "column summary_json"),
        ("runs", "snapshot_json", "column snapshot_json"),
    ],
)
def test_a_damaged_row_is_named_not_a_traceback(
    finished: Path, tmp_path: Path, table: str, column: str, named: str
) -> None:
    (tmp_path / ".anvil").mkdir(mode=0o700)
    journal = tmp_path / ".anvil" / "journal.sqlite"
    journal.write_bytes((finished / ".anvil" / "journal.sqlite").read_bytes())
    journal.chmod(0o600)
    with contextlib.closing(sqlite3.connect(journal)) as db, db:
        first = f"(SELECT MIN(rowid) FROM {table})"
        db.execute(f"UPDATE {table} SET {column} = '{{not json' WHERE rowid = {first}")
        (run_id,) = db.execute("SELECT id FROM runs").fetchone()
    before = _digest(journal)
    failing = 0
    commands = [("status",), ("status", "--json"), ("export", "-o", "out.jsonl"), ("report", "-o", "r.html")]
    for argv in commands:
        done = invoke_cli(*argv)  # in this process, in tmp_path (conftest): no CLI start-up each
        assert "Traceback" not in done.stderr, (argv, done.stderr)
        if done.returncode == 0:  # this command does not read that column
            continue
        failing += 1
        text = " ".join(done.stderr.split())
        assert done.returncode == 2, (argv, text)
        assert f"{table}: run {run_id}" in text and named in text, (argv, text)
        assert "Nothing was changed" in text
    assert failing >= 2  # export and report read every column of every row
    assert _digest(journal) == before
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "r.html").exists()
