"""`anvil run --backend ray` calls the API the driver was told of, never what the cluster's
environment says: ANTHROPIC_BASE_URL set only in the `anvil` process reaches the workers (on the
test cluster, and on a cluster started with `ray start` as users do, whose own environment points
elsewhere). Worker actors that cannot be placed show as waiting for resources, not alive."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.config.endpoint import host_of
from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import anvil_cmd, cli_env, journal_query, write_jsonl_batch

from .conftest import LocalCluster

pytestmark = pytest.mark.ray

HANG_GUARD_S = 180.0
RAY_START_S = 120.0
RAY_STOP_S = 20.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    return {**cli_env(), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **extra}


def _run(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    batch = tmp_path / "b.jsonl"
    proc = subprocess.run(
        anvil_cmd("run", str(batch), "-q", "--json", *args),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        check=False,
    )
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else {}), proc.stderr


def _api_hosts(tmp_path: Path) -> set[str]:
    rows = journal_query(tmp_path / ".anvil", "SELECT data_json FROM events WHERE kind = 'worker_started'")
    return {json.loads(str(r[0]))["api"] for r in rows}


def test_an_endpoint_set_only_in_the_anvil_process_reaches_the_workers(
    tmp_path: Path, ray_cluster: LocalCluster
) -> None:
    assert "ANTHROPIC_BASE_URL" not in os.environ  # the cluster was started from this environment
    write_jsonl_batch(tmp_path / "b.jsonl", [f"e{i}" for i in range(20)])
    config = tmp_path / "anvil.yaml"  # no provider.base_url
    config.write_text(json.dumps({"scaling": {"workers": 2}, "ray": {"worker_cpus": 1}}))
    with SimServer(SimConfig(seed=4)).start_thread() as sim:
        env = _env(ANTHROPIC_BASE_URL=sim.base_url)
        args = ("--config", str(config), "--backend", "ray", "--ray-address", ray_cluster.address)
        code, summary, err = _run(tmp_path, env, *args)
        requests = sim.stats()["requests"]
    assert code == ExitCode.OK, err
    assert summary["counts"]["succeeded"] == 20 and requests == 20
    assert _api_hosts(tmp_path) == {host_of(sim.base_url)}


@pytest.fixture(name="ray_started")
def fixture_ray_started() -> Iterator[str]:
    """A one-node cluster started with `ray start --head` on 127.0.0.1, as a user starts one, its
    own environment pointing at a closed port; torn down after (only this cluster: its daemons
    are the processes naming its temp dir, and their children), bounded in time."""
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="anvil-ray-", dir="/tmp")  # short: Ray's socket paths
    closed = f"http://127.0.0.1:{_free_port()}"
    env = _env(ANTHROPIC_BASE_URL=closed, ANTHROPIC_API_KEY="the-cluster-s-own-key")
    argv = [
        *(str(Path(sys.executable).with_name("ray")), "start", "--head"),
        *("--node-ip-address", "127.0.0.1", "--port", str(port)),
        *("--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp_dir),
    ]
    try:
        started = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=RAY_START_S, check=False
        )
        assert started.returncode == 0, started.stderr[-2000:]
        yield f"127.0.0.1:{port}"
    finally:
        _stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _cluster_pids(temp_dir: str) -> set[int]:
    found = subprocess.run(["pgrep", "-f", temp_dir], capture_output=True, text=True).stdout
    pids = {int(p) for p in found.split()}
    for pid in list(pids):  # the raylet's agents name no temp dir: they are its children
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        pids |= {int(p) for p in kids.split()}
    return pids


def _stop_cluster(temp_dir: str) -> None:
    """`ray stop` would stop every Ray cluster on the machine: stop this one's processes only,
    SIGTERM first, then SIGKILL, within RAY_STOP_S."""
    pids = _cluster_pids(temp_dir)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + RAY_STOP_S / 2
        while (pids := {p for p in pids if _alive(p)}) and time.monotonic() < deadline:
            time.sleep(0.2)  # sleep-ok: waiting for processes to exit, bounded by a deadline
        if not pids:
            break
    assert not _cluster_pids(temp_dir), "the test's Ray cluster was left running"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def test_anvil_run_on_a_cluster_started_with_ray_start(tmp_path: Path, ray_started: str) -> None:
    """No config file: the endpoint and the key come from the `anvil` process's environment, the
    cluster from --ray-address. The cluster's own ANTHROPIC_BASE_URL (a closed port) and key
    are never used."""
    write_jsonl_batch(tmp_path / "b.jsonl", [f"r{i}" for i in range(12)])
    with SimServer(SimConfig(seed=5)).start_thread() as sim:
        env = _env(ANTHROPIC_BASE_URL=sim.base_url)
        code, summary, err = _run(tmp_path, env, "--backend", "ray", "--ray-address", ray_started)
        requests = sim.stats()["requests"]
    assert code == ExitCode.OK, err
    assert summary["counts"]["succeeded"] == 12 and requests == 12
    assert _api_hosts(tmp_path) == {host_of(sim.base_url)}


def _status(tmp_path: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        anvil_cmd("status", "--config", str(config), *args),
        cwd=tmp_path,
        env=_env(COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _waiting(tmp_path: Path, config: Path) -> dict[str, Any]:
    got = _status(tmp_path, config, "--json")
    return json.loads(got.stdout)["workers"] if got.returncode == 0 and got.stdout.strip() else {}


def test_worker_actors_that_cannot_be_placed_wait_for_resources(
    tmp_path: Path, ray_cluster: LocalCluster
) -> None:
    write_jsonl_batch(tmp_path / "b.jsonl", ["w0", "w1"])
    config = tmp_path / "anvil.yaml"
    unplaceable = {"scaling": {"workers": 2}, "ray": {"worker_resources": {"no_such_node_resource": 1}}}
    config.write_text(json.dumps(unplaceable))
    with SimServer(SimConfig(seed=6)).start_thread() as sim:
        argv = anvil_cmd(
            *("run", str(tmp_path / "b.jsonl"), "-q", "--config", str(config)),
            *("--backend", "ray", "--ray-address", ray_cluster.address),
        )
        proc = subprocess.Popen(
            argv, cwd=tmp_path, env=_env(ANTHROPIC_BASE_URL=sim.base_url), stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + HANG_GUARD_S
            while (workers := _waiting(tmp_path, config)).get("waiting") != 2:
                assert proc.poll() is None, proc.communicate()[1][-2000:]
                if time.monotonic() > deadline:  # a hang guard, never a measure of speed
                    raise TimeoutError(f"the actors never showed as waiting: {workers}")
                time.sleep(0.2)  # sleep-ok: polling a live run's status, bounded by a deadline
            assert workers["alive"] == 0 and workers["count"] == 2
            human = _status(tmp_path, config).stdout
            assert "0/2 alive, 2 waiting for resources" in human, human
            proc.send_signal(signal.SIGINT)  # Ctrl-C: nothing can run, the user gives up
            _, err = proc.communicate(timeout=HANG_GUARD_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        requests = sim.stats()["requests"]
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert requests == 0
