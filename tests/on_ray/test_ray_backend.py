"""`anvil run --backend ray` on a two-node cluster on 127.0.0.1, against the simulator: workers
on both nodes hold a rate-bound workload to its bound; a worker actor killed mid-run loses
nothing; two runs sharing one governor stay within one rate limit and one budget; a lost
governor actor is started again. The real `anvil run`, in subprocesses."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.engine.journal.store import Journal
from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import (
    anvil_cmd,
    cli_env,
    journal_query,
    read_results,
    requeued_from_lost_workers,
    run_cli,
    succeeded_jobs,
    write_config,
    write_jsonl_batch,
)

from .conftest import LocalCluster

pytestmark = pytest.mark.ray

RPM, BURST, LATENCY_MS = 1200, 20, 200
HANG_GUARD_S = 180.0


def _config(tmp_path: Path, sim: SimServer, cluster: LocalCluster, **extra: Any) -> Path:
    sections: dict[str, Any] = {
        "rate_limits": {"default": {"requests_per_minute": RPM, "burst_size": BURST}},
        "scaling": {"workers": 2, "max_agents": 40, "max_concurrent_jobs": 40},
        "run": {"backend": "ray"},
        "ray": {"address": cluster.address, "worker_cpus": 1},
    }
    for section, values in extra.items():
        sections[section] = {**sections.get(section, {}), **values}
    return write_config(tmp_path / "anvil.yaml", sim.base_url, **sections)


def _start(tmp_path: Path, batch: Path, config: Path, *args: str) -> subprocess.Popen[str]:
    env = {**cli_env(), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    argv = anvil_cmd("run", str(batch), "--config", str(config), "-q", "--json", *args)
    return subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, dict[str, Any], str]:
    try:
        out, err = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, (json.loads(out) if out.strip() else {}), err


def _wait_for(predicate: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended first: {proc.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("no progress: the run hangs")
        time.sleep(0.05)  # sleep-ok: polling a live run's journal, bounded by a deadline


def _span_s(state_dir: Path) -> float:
    with Journal.open(state_dir) as journal:
        run = journal.latest_run()
        assert run is not None
        rows = [r for r in journal.iter_results(run.id) if r.get("attempts")]
    return max(r["finished_at"] for r in rows) - min(r["started_at"] for r in rows)


def _nodes_seen(tmp_path: Path, config: Path) -> set[str]:
    proc = run_cli("status", "--json", "--config", str(config), cwd=tmp_path)
    if proc.returncode != 0:
        return set()
    workers = json.loads(proc.stdout)["workers"]["list"]
    return {w["node"] for w in workers if w["node"]}


def test_a_rate_bound_run_on_two_nodes_holds_its_bound(tmp_path: Path, ray_cluster: LocalCluster) -> None:
    jobs = 500
    sim_cfg = SimConfig(rpm=RPM, burst=BURST, latency_ms=LATENCY_MS, seed=1)
    with SimServer(sim_cfg).start_thread() as sim:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(jobs)])
        config = _config(tmp_path, sim, ray_cluster)
        proc = _start(tmp_path, batch, config, "--workers", "4")
        workers_per_node: list[set[str]] = []
        _wait_for(lambda: len(_seen(workers_per_node, tmp_path, config)) >= 1, proc)
        code, summary, err = _finish(proc)
        stats = sim.stats()
    assert code == ExitCode.OK, err
    assert summary["counts"]["succeeded"] == jobs
    bound = (jobs - BURST) / RPM * 60 + LATENCY_MS / 1000
    span = _span_s(tmp_path / ".anvil")
    print(f"rate-bound on Ray: span {span:.2f}s, bound {bound:.2f}s ({span / bound:.3f}x), {stats}")
    assert span <= 1.05 * bound, (span, bound)  # clock-ok: the target, as a ratio to the bound
    assert stats["rate_limited"] <= 0.005 * stats["requests"], stats
    assert len(workers_per_node[-1]) == 2, workers_per_node  # workers on both nodes


def _seen(acc: list[set[str]], tmp_path: Path, config: Path) -> set[str]:
    nodes = _nodes_seen(tmp_path, config)
    if len(nodes) >= 2:
        acc.append(nodes)
    return nodes if len(nodes) >= 2 else set()


def test_killing_a_worker_actor_loses_nothing(tmp_path: Path, ray_cluster: LocalCluster) -> None:
    import ray

    jobs = 300
    with SimServer(SimConfig(latency_ms=150, seed=2)).start_thread() as sim:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"k{i}" for i in range(jobs)])
        config = _config(
            tmp_path, sim, ray_cluster, scaling={"workers": 2, "max_agents": 16, "max_concurrent_jobs": 16}
        )
        proc = _start(tmp_path, batch, config)
        _wait_for(lambda: succeeded_jobs(tmp_path / ".anvil") >= 60, proc)
        ray.init(address=ray_cluster.address, log_to_driver=False)
        try:
            names = [
                a
                for a in ray.util.list_named_actors(all_namespaces=True)
                if a["name"].startswith("anvil-worker-")
            ]
            assert len(names) == 2, names
            ray.kill(ray.get_actor(names[0]["name"], namespace=names[0]["namespace"]))
        finally:
            ray.shutdown()
        code, _summary, err = _finish(proc)
        stats = sim.stats()
    assert code == ExitCode.OK, err
    out = tmp_path / "out.jsonl"
    assert run_cli("export", "-o", str(out), "--config", str(config), cwd=tmp_path).returncode == 0
    results = read_results(out)
    assert len(results) == jobs and all(r["status"] == "succeeded" for r in results)
    requeued = requeued_from_lost_workers(tmp_path / ".anvil")
    assert stats["paid_duplicates"] <= requeued, (stats, requeued)  # only calls in flight run twice
    died = journal_query(tmp_path / ".anvil", "SELECT COUNT(*) FROM events WHERE kind = 'worker_died'")
    assert died[0][0] >= 1


def test_two_runs_sharing_a_governor_keep_one_rate_limit_and_one_budget(
    tmp_path: Path, ray_cluster: LocalCluster
) -> None:
    import ray

    cap = 0.15  # less than the two batches together cost: both must stop on it (after ~550 calls)
    runs = [tmp_path / "a", tmp_path / "b"]
    with SimServer(SimConfig(rpm=RPM, burst=BURST, latency_ms=100, seed=3)).start_thread() as sim:
        procs = []
        for i, root in enumerate(runs):
            root.mkdir()
            batch = write_jsonl_batch(
                root / "b.jsonl", [f"team {i} q{j}" for j in range(600)], max_tokens=256
            )
            config = _config(root, sim, ray_cluster, budget={"max_usd": cap}, ray={"governor": "shared-test"})
            procs.append(_start(root, batch, config))
        try:
            ends = [_finish(p) for p in procs]
        finally:
            ray.init(address=ray_cluster.address, log_to_driver=False)
            try:
                ray.kill(ray.get_actor("shared-test", namespace="anvil"))  # detached: it outlives the runs
            finally:
                ray.shutdown()
        stats = sim.stats()
    assert [code for code, _, _ in ends] == [ExitCode.STOPPED, ExitCode.STOPPED], [e[2][-800:] for e in ends]
    spent = []
    for root in runs:
        with Journal.open(root / ".anvil") as journal:
            run = journal.latest_run()
            assert run is not None
            spent.append(journal.totals(run.id)["cost_usd"])
    assert all(s > 0 for s in spent) and sum(spent) <= cap, spent  # one budget for both
    assert stats["rate_limited"] <= 0.005 * stats["requests"], stats  # one rate limit for both


def test_a_lost_governor_actor_is_started_again_with_the_run_s_spend(
    tmp_path: Path, ray_cluster: LocalCluster
) -> None:
    import ray

    jobs = 300
    with SimServer(SimConfig(latency_ms=150, seed=4)).start_thread() as sim:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"g{i}" for i in range(jobs)])
        config = _config(tmp_path, sim, ray_cluster, budget={"max_usd": 10.0})
        proc = _start(tmp_path, batch, config)
        _wait_for(lambda: succeeded_jobs(tmp_path / ".anvil") >= 60, proc)
        (started,) = journal_query(
            tmp_path / ".anvil", "SELECT data_json FROM events WHERE kind = 'governor_started'"
        )
        name = json.loads(str(started[0]))["name"]
        ray.init(address=ray_cluster.address, log_to_driver=False)
        try:
            ray.kill(ray.get_actor(name, namespace="anvil"))
        finally:
            ray.shutdown()
        code, _summary, err = _finish(proc)
        stats = sim.stats()
    assert code == ExitCode.OK, err
    rows = journal_query(
        tmp_path / ".anvil", "SELECT data_json FROM events WHERE kind = 'governor_restarted'"
    )
    (restarted,) = [json.loads(str(r[0])) for r in rows]
    assert restarted["generation"] == 1 and restarted["spent_usd"] > 0  # the budget carried over
    assert stats["paid_duplicates"] == 0 and stats["requests"] == jobs  # nothing was run twice


def test_losing_a_whole_node_loses_nothing(tmp_path: Path, ray_cluster: LocalCluster) -> None:
    from .conftest import NODE_ARGS

    jobs = 300
    cluster = ray_cluster.cluster
    with SimServer(SimConfig(latency_ms=150, seed=5)).start_thread() as sim:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"n{i}" for i in range(jobs)])
        config = _config(
            tmp_path, sim, ray_cluster, scaling={"workers": 4, "max_agents": 16, "max_concurrent_jobs": 16}
        )
        proc = _start(tmp_path, batch, config)
        _wait_for(lambda: succeeded_jobs(tmp_path / ".anvil") >= 60, proc)
        worker_node = next(n for n in cluster.list_all_nodes() if n is not cluster.head_node)
        cluster.remove_node(worker_node)  # its raylet and every actor on it, at once
        try:
            code, _summary, err = _finish(proc)
        finally:
            cluster.add_node(**NODE_ARGS)  # the next test gets its two nodes back
            cluster.wait_for_nodes()
        stats = sim.stats()
    assert code == ExitCode.OK, err
    out = tmp_path / "out.jsonl"
    assert run_cli("export", "-o", str(out), "--config", str(config), cwd=tmp_path).returncode == 0
    assert sorted(r["id"] for r in read_results(out)) == sorted(f"job-{i:04d}" for i in range(jobs))
    requeued = requeued_from_lost_workers(tmp_path / ".anvil")
    assert stats["paid_duplicates"] <= requeued, (stats, requeued)  # only calls in flight run twice
    died = journal_query(tmp_path / ".anvil", "SELECT COUNT(*) FROM events WHERE kind = 'worker_died'")
    assert died[0][0] >= 1  # the node's workers, replaced on the node left
