"""The API key and the control token live in memory only: no process of a run (conductor, fork
server, workers, the governor's Manager, the embedded simulator) has them in its environment or
on its command line, and every Anvil process is not dumpable (its /proc files are root's)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import anvil_cmd, cli_env, journal_query, live_pids, write_config, write_jsonl_batch

NOBODY = 65534


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended meanwhile
        return b""


@pytest.fixture(name="slow_sim")
def fixture_slow_sim() -> Iterator[SimServer]:
    """Calls take ~1.5 s: the run's processes are all there while a call is in flight."""
    server = SimServer(SimConfig(latency_ms=1500)).start_thread()
    yield server
    server.stop()


def _start_run(work: Path, sim: SimServer, env: dict[str, str], **popen: object) -> subprocess.Popen[str]:
    write_jsonl_batch(work / "batch.jsonl", [f"question {i}" for i in range(6)])
    write_config(work / "anvil.yaml", sim.base_url, scaling={"workers": 2, "max_agents": 2})
    argv = anvil_cmd("run", "batch.jsonl", "-c", "anvil.yaml", "-q", "--serve", str(_free_port()))
    return subprocess.Popen(
        argv,
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **popen,  # type: ignore[call-overload]
    )


def _wait_for_a_call(proc: subprocess.Popen[str], sim: SimServer) -> None:
    """Until the simulator has a call in flight (every process of the run is up by then)."""
    while sim.stats()["requests"] == 0:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended first: {proc.communicate()}")
        threading.Event().wait(0.05)  # sleep-ok: polling another process's progress, not timing it


def test_no_process_of_a_run_has_the_key_or_the_token(tmp_path: Path, slow_sim: SimServer) -> None:
    key = f"sk-ant-test-{uuid.uuid4().hex}"
    token = f"tok-{uuid.uuid4().hex}{uuid.uuid4().hex}"
    env = cli_env(key)
    env["ANVIL_API_TOKEN"] = token
    proc = _start_run(tmp_path, slow_sim, env)
    try:
        _wait_for_a_call(proc, slow_sim)
        pids = sorted(live_pids(session=proc.pid))
        assert len(pids) >= 4, pids  # the conductor, the fork server, two workers, the Manager...
        leaks = []
        for pid in Path("/proc").iterdir():  # every process on the machine, not only the run's
            if not pid.name.isdigit() or int(pid.name) == os.getpid():
                continue
            for name in ("environ", "cmdline"):
                text = _read(pid / name)
                if key.encode() in text or token.encode() in text:
                    leaks.append(f"{pid.name}/{name}: {_read(pid / 'cmdline')[:200]!r}")
        assert leaks == []
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err  # the key still reached the API: every job succeeded
    rows = journal_query(tmp_path / ".anvil", "SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'")
    assert rows == [(6,)]
    assert key not in out + err and token not in out + err


def test_a_process_started_with_secrets_runs_again_without_them(tmp_path: Path) -> None:
    """`vault.hand_over` as the `anvil` command uses it: the process that reads the secrets is
    an exec of the same command whose initial environment (what /proc shows) never held them."""
    script = tmp_path / "probe.py"
    script.write_text(
        textwrap.dedent("""
        import os, sys
        from anvil_cli.config.vault import hand_over, secret
        print("start", os.getpid(), flush=True)
        hand_over()
        environ = open(f"/proc/{os.getpid()}/environ", "rb").read()
        print("key", secret("ANTHROPIC_API_KEY"))
        print("token", secret("ANVIL_API_TOKEN"))
        print("in-environ", b"ANTHROPIC_API_KEY" in environ or b"ANVIL_API_TOKEN" in environ)
        print("in-os-environ", "ANTHROPIC_API_KEY" in os.environ)
        print("args", sys.argv[1:])
    """)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "ANTHROPIC_"))}
    env.update(ANTHROPIC_API_KEY="sk-ant-abc", ANVIL_API_TOKEN="t" * 40)
    argv = [sys.executable, str(script), "x", "y z"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, timeout=60)
    out = done.stdout.splitlines()
    starts = [line for line in out if line.startswith("start")]
    assert len(starts) == 2 and starts[0] == starts[1]  # exec'd again: the same process, the same pid
    assert "key sk-ant-abc" in out and f"token {'t' * 40}" in out
    assert "in-environ False" in out and "in-os-environ False" in out
    assert "args ['x', 'y z']" in out  # the command line is kept as it was


def _can_run_as_nobody(where: Path) -> bool:
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import anvil_cli.config.vault, anthropic"],
            cwd=where,
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            capture_output=True,
            check=False,
            timeout=60,
        )
    except PermissionError:  # the interpreter itself is out of its reach (e.g. under /root)
        return False
    return probe.returncode == 0


def test_not_dumpable_is_set_and_kept_by_forked_children() -> None:
    code = textwrap.dedent("""
        import ctypes, os
        from anvil_cli.config.vault import set_not_dumpable
        libc = ctypes.CDLL(None)
        before = libc.prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
        set_not_dumpable()
        pid = os.fork()
        if pid == 0:
            os._exit(libc.prctl(3, 0, 0, 0, 0))
        _, status = os.waitpid(pid, 0)
        print(before, libc.prctl(3, 0, 0, 0, 0), os.waitstatus_to_exitcode(status))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["1", "0", "0"]  # dumpable before; not after, nor in a forked worker


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_DUMPABLE is Linux's")
def test_every_process_of_a_run_is_not_dumpable(slow_sim: SimServer) -> None:
    """A non-dumpable process's /proc/<pid>/ files belong to root, whatever user runs it: so a
    run started as an ordinary user (nobody) has every /proc/<pid>/environ owned by root, and
    no other process of that user can read them (or attach to it)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start the run as another user (nobody) and compare owners")
    work = Path(tempfile.mkdtemp(prefix="anvil-dumpable-"))
    try:
        os.chown(work, NOBODY, NOBODY)
        if not _can_run_as_nobody(work):
            pytest.skip("user nobody cannot run this interpreter (e.g. it lives under /root)")
        env = cli_env("sk-ant-test-key")
        env["HOME"] = str(work)
        proc = _start_run(work, slow_sim, env, user=NOBODY, group=NOBODY, extra_groups=[])
        try:
            _wait_for_a_call(proc, slow_sim)
            owners = {}
            for pid in sorted(live_pids(session=proc.pid)):
                cmdline = _read(Path(f"/proc/{pid}/cmdline")).replace(b"\0", b" ").decode(errors="replace")
                if "resource_tracker" in cmdline:  # multiprocessing's own helper: holds no secret
                    continue
                try:
                    owners[pid] = (os.stat(f"/proc/{pid}/environ").st_uid, cmdline[:120])
                except FileNotFoundError:
                    continue
            assert len(owners) >= 4, owners
            assert {uid for uid, _ in owners.values()} == {0}, owners
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.communicate(timeout=120)
    finally:
        shutil.rmtree(work, ignore_errors=True)
