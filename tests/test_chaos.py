"""Chaos: a 1,000-job run whose processes are killed again and again (a worker, the governor,
the fork server, in a seeded random order, each time the run has made some progress). Every job
still succeeds exactly once, the calls paid twice are at most the jobs taken back from the
workers killed (what they had in flight, or answered and not yet reported), and no process of the
run is left once it exits."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import (
    anvil_cmd,
    cli_env,
    invoke_cli,
    journal_query,
    read_results,
    requeued_from_lost_workers,
    succeeded_jobs,
    write_config,
    write_jsonl_batch,
)

N_JOBS = 1000
AGENTS = 16
KILLS = ["worker", "governor", "fork_server"] * 3
PROGRESS_PER_KILL = 80  # jobs succeeded between two kills: each recovery is seen to work
HANG_GUARD_S = 120.0  # waits only against a hang, never a measure of speed


def _events(state_dir: Path, kind: str) -> list[dict[str, object]]:
    rows = journal_query(state_dir, f"SELECT data_json FROM events WHERE kind = '{kind}' ORDER BY rowid")
    return [json.loads(str(r[0])) for r in rows]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _workers(state_dir: Path) -> list[int]:
    died = {d["worker"] for d in _events(state_dir, "worker_died")}
    started = [d for d in _events(state_dir, "worker_started") if d["worker"] not in died]
    return [int(str(d["pid"])) for d in started if _alive(int(str(d["pid"])))]


def _governor(state_dir: Path) -> int | None:
    started = _events(state_dir, "governor_started") + _events(state_dir, "governor_restarted")
    pids = [d["pid"] for d in started]
    pid = int(str(pids[-1])) if pids and pids[-1] is not None else None
    return pid if pid is not None and _alive(pid) else None


def _fork_server(state_dir: Path) -> int | None:
    """The fork server now: the parent of the newest worker or governor, if still theirs."""
    for pid in reversed([*_workers(state_dir), *[p for p in [_governor(state_dir)] if p]]):
        parent = _parent(pid)
        if parent and parent != 1 and "forkserver" in _cmdline(parent):
            return parent
    return None


def _run_processes(root: Path) -> list[int]:
    """Every live process working in the run's directory (the run's own cwd is `root`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():  # the test's own cwd may be there
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if (cwd == root or root in cwd.parents) and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _wait_for(predicate: Callable[[], bool], proc: subprocess.Popen[str]) -> bool:
    """Poll real progress (bounded); False if the run ended first."""
    deadline = time.monotonic() + HANG_GUARD_S
    while not predicate():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            raise AssertionError("no progress: the run hangs")
        time.sleep(0.02)  # sleep-ok: polling for real progress, bounded by a deadline
    return True


@pytest.mark.slow
def test_a_run_survives_its_processes_being_killed_again_and_again(tmp_path: Path) -> None:
    with SimServer(SimConfig(latency_ms=120, seed=11)).start_thread() as sim:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"chaos {i}" for i in range(N_JOBS)])
        config = write_config(
            tmp_path / "anvil.yaml",
            sim.base_url,
            scaling={"workers": 3, "max_agents": AGENTS, "max_concurrent_jobs": AGENTS},
        )
        state = tmp_path / ".anvil"
        proc = subprocess.Popen(
            anvil_cmd("run", str(batch), "--config", str(config), "-q"),
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        kills: list[tuple[str, int, int]] = []  # (what, pid, calls in flight at the kill)
        seen: set[int] = set()
        try:
            order = random.Random(7).sample(KILLS, len(KILLS))
            for what in order:
                target = succeeded_jobs(state) + PROGRESS_PER_KILL
                if not _wait_for(lambda t=target: succeeded_jobs(state) >= t, proc):  # type: ignore[misc]
                    break
                seen.update(_workers(state))
                victim = {
                    "worker": lambda: random.Random(len(kills)).choice(_workers(state) or [0]),
                    "governor": lambda: _governor(state),
                    "fork_server": lambda: _fork_server(state),
                }[what]()
                if not victim:
                    continue
                seen.add(victim)
                in_flight = int(sim.stats()["in_flight"])
                os.kill(victim, signal.SIGKILL)
                kills.append((what, victim, in_flight))
            _out, err = proc.communicate(timeout=HANG_GUARD_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == ExitCode.OK, err
        assert {what for what, _, _ in kills} == {"worker", "governor", "fork_server"}, kills
        assert len(kills) >= 6, kills

        out = tmp_path / "out.jsonl"
        assert invoke_cli("export", "-o", str(out), "--config", str(config), cwd=tmp_path).returncode == 0
        results = read_results(out)
        assert sorted(r["id"] for r in results) == sorted(f"job-{i:04d}" for i in range(N_JOBS))
        assert all(r["status"] == "succeeded" for r in results)
        stats = sim.stats()
        requeued = requeued_from_lost_workers(state)
        print("chaos:", kills, {k: stats[k] for k in ("requests", "paid_duplicates")}, "requeued", requeued)
        # only jobs taken back from dead workers can run twice (in flight, or answered and not yet
        # reported); a governor or fork server kill takes none back
        assert stats["paid_duplicates"] <= requeued, (stats, kills, requeued)
        restarts = _events(state, "governor_restarted")
        assert len(restarts) == sum(1 for what, _, _ in kills if what == "governor"), restarts

        # nothing of the run is left: not the processes killed, not their replacements
        seen.update(_workers(state))
        assert not [pid for pid in seen if _alive(pid)]
        assert [(pid, _cmdline(pid)) for pid in _run_processes(tmp_path)] == []
