"""Files in the state dir are never reached through a symbolic link planted there, and a
damaged result cache costs a warning, not the run."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from anvil_cli.engine.outcomes import Usage
from anvil_cli.engine.result_cache import CACHE_NAME, CachedResult, ResultCache
from tests.engine_support import invoke_cli, read_results, run_cli, write_jsonl_batch


def _batch(tmp_path: Path) -> Path:
    return write_jsonl_batch(tmp_path / "b.jsonl", ["one", "two"])


@pytest.mark.parametrize("name", ["journal.sqlite", "journal.sqlite-wal", "cache.sqlite", "cache.sqlite-shm"])
def test_a_link_in_the_state_dir_is_refused_and_its_target_untouched(tmp_path: Path, name: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    victim.chmod(0o644)
    state = tmp_path / ".anvil"
    state.mkdir(mode=0o700)
    (state / name).symlink_to(victim)
    done = run_cli("run", str(_batch(tmp_path)), "--simulate", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"{state / name} is a symbolic link" in " ".join(done.stderr.split())
    assert victim.read_text() == "precious" and victim.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in state.iterdir()) == [name]  # exit 2: nothing written


def test_a_dangling_journal_link_exits_2_for_every_command(tmp_path: Path) -> None:
    state = tmp_path / ".anvil"
    state.mkdir(mode=0o700)
    (state / "journal.sqlite").symlink_to(tmp_path / "gone" / "journal.sqlite")
    run = ("run", str(_batch(tmp_path)), "--simulate")
    commands = [run, ("status",), ("export", "-o", "out.jsonl"), ("report",)]
    for argv in commands:  # `anvil run` as its own process; the readers in this one (no start-up each)
        done = run_cli(*argv, cwd=tmp_path) if argv is run else invoke_cli(*argv)
        assert done.returncode == 2, (argv, done.stderr)
        text = " ".join(done.stderr.split())
        assert "journal.sqlite is a symbolic link to nothing" in text and "Traceback" not in text
    assert not (tmp_path / "gone").exists() and not (tmp_path / "out.jsonl").exists()


def test_a_corrupt_cache_is_set_aside_and_rebuilt_with_a_warning(tmp_path: Path) -> None:
    state = tmp_path / ".anvil"
    state.mkdir(mode=0o700)
    (state / CACHE_NAME).write_bytes(b"this is not a database" * 100)
    out = tmp_path / "results.jsonl"
    done = run_cli("run", str(_batch(tmp_path)), "--simulate", "-o", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "result cache" in done.stderr and "set aside as cache.sqlite.corrupt-" in done.stderr
    aside = [p for p in state.iterdir() if p.name.startswith("cache.sqlite.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    assert [r["status"] for r in read_results(out)] == ["succeeded", "succeeded"]
    with sqlite3.connect(state / CACHE_NAME) as db:  # rebuilt, and in use: it holds the answers
        assert db.execute("SELECT COUNT(*) FROM results").fetchone() == (2,)
    assert os.stat(state / CACHE_NAME).st_mode & 0o777 == 0o600


def test_a_cache_of_another_shape_is_set_aside(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with sqlite3.connect(tmp_path / CACHE_NAME) as db:
        db.execute("CREATE TABLE results (key TEXT PRIMARY KEY, other TEXT)")  # planted or from elsewhere
    cache = ResultCache(tmp_path)
    cache.put("k", CachedResult("claude-haiku-4-5", "hi", "end_turn", Usage(output_tokens=1), 0.001))
    assert cache.get("k") is not None
    cache.close()
    assert "set aside" in capsys.readouterr().err
