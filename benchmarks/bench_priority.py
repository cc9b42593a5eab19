"""Benchmark 8 of issue 10: priority under a binding limit (300 RPM, burst 5): 200 low then 20
critical jobs; every critical job among the first 30 to finish; a critical job posted over the
HTTP API mid-run answered within 3 s. Run it through `bench_async.py --only 8`, which measures
the process tree the same way as its other benchmarks."""

from __future__ import annotations

import contextlib
import http.client
import json
import secrets
import socket
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from treebench import MODEL, Side, fmt, print_table, problems, run_anvil, verdict

from anvil_cli.sim import SimConfig

# -- benchmark 8: priority under a binding limit -----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def api_poster(port: int, token: str, post_after: int, job: dict[str, Any]) -> Side:
    """Once `post_after` jobs have succeeded (GET /status), POST `job` and poll GET /jobs/{id}
    until it has a result; reports the times."""

    def call(conn: http.client.HTTPConnection, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")

    def side(report: dict[str, Any], done: threading.Event) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not done.is_set():
            try:
                code, status = call(conn, "GET", "/status")
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()  # not listening yet
                done.wait(0.1)
                continue
            succeeded = (status.get("counts") or {}).get("succeeded", 0) if code == 200 else 0
            if succeeded >= post_after:
                report["succeeded_before_post"] = succeeded
                break
            done.wait(0.1)
        else:
            return
        report["posted_at"] = time.time()
        code, body = call(conn, "POST", "/jobs", job)
        report["post_answer"] = (code, body)
        while not done.is_set():
            code, got = call(conn, "GET", f"/jobs/{job['id']}")
            if code == 200 and got.get("status") not in ("pending", None):
                report["answered_at"] = time.time()
                report["status"] = got["status"]
                return
            done.wait(0.02)

    return side


def run(quick: bool) -> None:
    n_low, n_crit, post_after = (60, 10, 20) if quick else (200, 20, 50)
    rank_target = n_crit + 10
    wait_target_s = 3.0
    rpm, burst, latency_ms = 300, 5, 300
    print(
        f"\n[8] priority under a binding limit: {n_low} low then {n_crit} critical jobs, "
        f"{rpm} RPM burst {burst} (server and Anvil), {latency_ms} ms latency; "
        f"one critical job posted over HTTP after {post_after} have succeeded"
    )
    sim_config = SimConfig(rpm=rpm, burst=burst, latency_ms=latency_ms, seed=8)
    cfg = {
        "rate_limits": {"default": {"requests_per_minute": rpm, "burst_size": burst}},
        "cache": {"enabled": False},
        "run": {"progress_interval_s": 3600},
    }
    port, token = free_port(), secrets.token_urlsafe(24)
    api_job = {"id": "api-crit", "prompt": "now", "model": MODEL, "max_tokens": 64, "priority": "critical"}
    with tempfile.TemporaryDirectory(prefix="anvil-bench8-") as tmp:
        work = Path(tmp)
        batch = work / "batch.jsonl"
        with batch.open("w") as fh:
            for i in range(n_low):
                job = {"id": f"low-{i:03d}", "prompt": f"low {i}", "model": MODEL, "max_tokens": 64,
                       "priority": "low"}  # fmt: skip
                fh.write(json.dumps(job) + "\n")
            for i in range(n_crit):
                job = {"id": f"crit-{i:02d}", "prompt": f"crit {i}", "model": MODEL, "max_tokens": 64,
                       "priority": "critical"}  # fmt: skip
                fh.write(json.dumps(job) + "\n")
        results = work / "results.jsonl"
        timeout_s = 4 * (n_low + n_crit + 1) / (rpm / 60) + 120
        m, _ = run_anvil(
            cfg, batch, sim_config, work, timeout_s,
            extra_args=("--serve", f"127.0.0.1:{port}", "-o", str(results)),
            env_extra={"ANVIL_API_TOKEN": token},
            side=api_poster(port, token, post_after, api_job),
        )  # fmt: skip
        order: list[tuple[str, float]] = []
        journal = work / ".anvil" / "journal.sqlite"
        if journal.exists():
            with contextlib.closing(sqlite3.connect(journal)) as db:
                order = db.execute(
                    "SELECT id, finished_at FROM jobs WHERE finished_at IS NOT NULL ORDER BY finished_at, seq"
                ).fetchall()
        lines = [json.loads(x) for x in results.read_text().splitlines()] if results.exists() else []

    rank = {job_id: i + 1 for i, (job_id, _) in enumerate(order)}
    finished_at = dict(order)
    crit_ranks = sorted(rank.get(f"crit-{i:02d}", 10**6) for i in range(n_crit))
    worst = crit_ranks[-1] if crit_ranks else None
    side = m.side
    wait_s = side["answered_at"] - side["posted_at"] if "answered_at" in side else None
    journal_wait = overtaken = None
    if "api-crit" in finished_at and "posted_at" in side:
        journal_wait = finished_at["api-crit"] - side["posted_at"]
        overtaken = sum(1 for _, t in order if side["posted_at"] < t < finished_at["api-crit"])
    worst_shown = "—" if worst is None or worst >= 10**6 else str(worst)
    ok = sum(1 for x in lines if x.get("status") == "succeeded")
    rows = [
        (f"worst finishing rank of the {n_crit} critical jobs", worst_shown, f"≤ {rank_target}",
         verdict(None if worst is None else worst <= rank_target)),
        ("API-posted critical job: POST → result (GET /jobs)", fmt(wait_s, " s"), f"≤ {wait_target_s:g} s",
         verdict(None if wait_s is None else wait_s <= wait_target_s)),
        ("  ... POST → finished_at in the journal", fmt(journal_wait, " s"), "", "info"),
        ("  ... jobs finished between its POST and it", fmt(overtaken, "", 0), "", "info"),
        ("jobs ok (results file)", f"{ok}/{n_low + n_crit + 1}", "all", verdict(ok == n_low + n_crit + 1)),
        ("429s from the simulator", f"{m.sim['rate_limited']} of {m.sim['requests']}", "", "info"),
        ("wall: spawn → exit", fmt(m.run.wall_s, " s"), "", "info"),
        ("CPU per job, all processes", fmt(1000 * m.run.cpu_s / max(1, len(lines)), " ms"), "", "info"),
        ("peak RSS of the tree (sum)", fmt(m.run.peak_rss_mb, " MB", 0), "", "info"),
    ]  # fmt: skip
    print_table(("", "anvil", "target", ""), rows)
    print(f"  critical ranks: {crit_ranks}")
    if "error" in side or ("post_answer" in side and side["post_answer"][0] != 202):
        print(f"  API side: {side}")
    for line in problems(m, "anvil"):
        print("  " + line)
