"""Checked before anything is written or spent: the output path, the state dir, the journal.
Each refusal exits 2, names the path, and leaves no run behind."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import invoke_cli, run_cli, write_config, write_jsonl_batch


def _setup(tmp_path: Path, sim: SimServer) -> tuple[Path, Path]:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["one", "two"])
    return batch, write_config(tmp_path / "anvil.yaml", sim.base_url)


def _paid(sim: SimServer) -> int:
    return int(sim.stats()["requests"])


@pytest.mark.slow
def test_an_output_path_that_cannot_be_written_is_refused_before_any_call(tmp_path: Path) -> None:
    with SimServer(SimConfig(seed=1)).start_thread() as sim:
        batch, config = _setup(tmp_path, sim)
        (tmp_path / "adir").mkdir()
        for target, says in (
            (tmp_path / "adir", "is a directory"),
            (tmp_path / "missing" / "out.jsonl", "does not exist"),
        ):
            done = run_cli("run", str(batch), "--config", str(config), "-o", str(target), cwd=tmp_path)
            assert done.returncode == ExitCode.BAD_INPUT, done.stderr
            assert says in done.stderr and "Traceback" not in done.stderr
        assert _paid(sim) == 0
        assert not (tmp_path / ".anvil").exists()  # no run was written


def test_a_state_dir_others_can_write_is_refused(tmp_path: Path) -> None:
    with SimServer(SimConfig(seed=1)).start_thread() as sim:
        batch, config = _setup(tmp_path, sim)
        state = tmp_path / ".anvil"
        state.mkdir()
        os.chmod(state, 0o777)
        done = run_cli("run", str(batch), "--config", str(config), cwd=tmp_path)
        assert done.returncode == ExitCode.BAD_INPUT
        assert "writable by other users" in done.stderr and "chmod go-w" in done.stderr
        assert list(state.iterdir()) == [] and _paid(sim) == 0


def test_a_dangling_state_dir_link_is_a_clear_error(tmp_path: Path) -> None:
    with SimServer(SimConfig(seed=1)).start_thread() as sim:
        batch, config = _setup(tmp_path, sim)
        (tmp_path / ".anvil").symlink_to(tmp_path / "gone")
        done = run_cli("run", str(batch), "--config", str(config), cwd=tmp_path)
        assert done.returncode == ExitCode.BAD_INPUT and "symbolic link to nothing" in done.stderr


@pytest.mark.slow
def test_a_corrupt_or_foreign_journal_is_a_clear_error(tmp_path: Path) -> None:
    with SimServer(SimConfig(seed=1)).start_thread() as sim:
        batch, config = _setup(tmp_path, sim)
        state = tmp_path / ".anvil"
        state.mkdir(mode=0o700)
        (state / "journal.sqlite").write_bytes(b"this is not a database at all" * 100)
        for args in (("run", str(batch)), ("status",)):
            done = run_cli(*args, "--config", str(config), cwd=tmp_path)
            assert done.returncode == ExitCode.BAD_INPUT, done.stderr
            assert "not a readable Anvil journal" in done.stderr and "Traceback" not in done.stderr
        (state / "journal.sqlite").unlink()
        with sqlite3.connect(state / "journal.sqlite") as db:
            db.execute("CREATE TABLE photos (id INTEGER)")
        done = run_cli("run", str(batch), "--config", str(config), cwd=tmp_path)
        assert done.returncode == ExitCode.BAD_INPUT and "another program's database" in done.stderr
        with sqlite3.connect(state / "journal.sqlite") as db:  # left as it was
            assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["photos"]
        assert _paid(sim) == 0


@pytest.mark.slow  # a whole run or several: the slow tier (CI runs it after the default suite)
def test_serve_refusals_write_no_run(tmp_path: Path) -> None:
    import socket

    with SimServer(SimConfig(seed=1)).start_thread() as sim:
        batch, config = _setup(tmp_path, sim)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            done = run_cli("run", str(batch), "--config", str(config), "--serve", str(port), cwd=tmp_path)
        assert done.returncode == ExitCode.BAD_INPUT and f"127.0.0.1:{port}" in done.stderr
        public = run_cli("run", str(batch), "--config", str(config), "--serve", "0.0.0.0:0", cwd=tmp_path)
        assert public.returncode == ExitCode.BAD_INPUT and "ANVIL_API_TOKEN" in public.stderr
        listed = invoke_cli("status", "--json", "--config", str(config), cwd=tmp_path)
        assert listed.returncode == ExitCode.BAD_INPUT and "nothing has run here yet" in listed.stderr
        assert not (tmp_path / ".anvil").exists()  # refused before the state dir was made
        assert _paid(sim) == 0
