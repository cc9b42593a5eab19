"""What the many-agent benchmarks (`bench_async.py`, `bench_priority.py`) share: running `anvil run`
and the floor (`floor_async.py`) as whole process trees against a simulator in its own process,
the first request seen, CPU and memory counted (`proctree.py`), and the tables they print."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(REPO), str(HERE)]  # this checkout's anvil_cli, then bench_engine / proctree

import bench_engine  # noqa: E402
from proctree import TreeMeter, TreeRun, raised_nofile  # noqa: E402

from anvil_cli.sim import SimConfig, SimServer  # noqa: E402

MODEL = bench_engine.MODEL
PROBE_INTERVAL_S = 0.005
BYTECODE = {"on": True}  # measured processes use compiled bytecode, as an installed package does
FAST_LIMITS = {"requests_per_minute": 10**7, "burst_size": 10**5}  # no client limit in the way


# -- running things --------------------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    """The environment of measured processes: this checkout first on the path, no ANVIL_* of the
    caller's, a fake key, nothing proxied."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_")}
    env.pop("ANTHROPIC_BASE_URL", None)
    if BYTECODE["on"]:  # else every process compiles this checkout's sources at each start
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    old = env.get("PYTHONPATH")
    env.update(
        PYTHONPATH=str(REPO) + (os.pathsep + old if old else ""),
        ANTHROPIC_API_KEY="bench-key",
        NO_COLOR="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    env.update(extra)
    return env


def _get_json(conn: http.client.HTTPConnection, path: str) -> Any:
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    if response.status >= 400:
        raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
    return json.loads(body)


class FirstRequestProbe:
    """Polls the simulator's stats every 5 ms until a request has arrived; `first_at` (epoch s) is
    when the poll that first saw it was sent (the arrival is within one poll of it)."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.first_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="first-request-probe", daemon=True)

    def _poll(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            while not self._stop.is_set():
                seen = time.time()
                stats = _get_json(conn, "/_sim/stats")
                if stats["requests"] or stats["in_flight"]:
                    self.first_at = seen
                    return
                self._stop.wait(PROBE_INTERVAL_S)
        finally:
            conn.close()

    def __enter__(self) -> FirstRequestProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class Measured:
    """One process tree measured against its own simulator."""

    run: TreeRun
    sim: dict[str, Any]  # the simulator's stats at the end
    first_request_at: float | None  # epoch s, when the simulator first saw a request
    side: dict[str, Any] = field(default_factory=dict)  # what the side task reported

    @property
    def ttfr_s(self) -> float | None:
        """Spawn to the simulator's first request."""
        return None if self.first_request_at is None else self.first_request_at - self.run.started_at


Side = Callable[[dict[str, Any], threading.Event], None]


def measure(
    make_argv: Callable[[str], list[str]],
    sim_config: SimConfig,
    workdir: Path,
    timeout_s: float,
    env: dict[str, str],
    side: Side | None = None,
) -> Measured:
    """Start a simulator (its own process, not measured), then run `make_argv(base_url)` as a
    measured tree; `side(report, done)` runs in a thread meanwhile (`done` is set at the end)."""
    with raised_nofile():  # thousands of sockets for the simulator; the tree gets the caller's limit
        server = SimServer(sim_config).start_process()
    with server as sim:
        argv = make_argv(sim.base_url)
        report: dict[str, Any] = {}
        done = threading.Event()
        helper = threading.Thread(target=_guarded, args=(side, report, done), daemon=True)
        with (
            FirstRequestProbe(sim.base_url) as probe,
            TreeMeter(argv, env=env, cwd=workdir, timeout_s=timeout_s) as meter,
        ):
            if side is not None:
                helper.start()
            try:
                run = meter.wait()
            finally:
                done.set()
                if side is not None:
                    helper.join(10)
        stats = sim.stats()
    return Measured(run=run, sim=stats, first_request_at=probe.first_at, side=report)


def _guarded(fn: Side, report: dict[str, Any], done: threading.Event) -> None:
    try:
        fn(report, done)
    except Exception as exc:  # reported, never raised into the measurement
        report["error"] = f"{type(exc).__name__}: {exc}"


def run_anvil(
    cfg: dict[str, Any],
    batch: Path,
    sim_config: SimConfig,
    workdir: Path,
    timeout_s: float,
    extra_args: tuple[str, ...] = (),
    env_extra: dict[str, str] | None = None,
    side: Side | None = None,
) -> tuple[Measured, dict[str, Any]]:
    """`anvil run` (this checkout) measured; returns the measurement and what it left behind."""
    state = workdir / ".anvil"

    def make_argv(base_url: str) -> list[str]:
        full = {**cfg, "state_dir": str(state), "provider": {"base_url": base_url, "timeout_s": 120}}
        config = workdir / "anvil.yaml"
        config.write_text(yaml.safe_dump(full))
        return [
            sys.executable, "-m", "anvil_cli", "run", str(batch), "--config", str(config),
            "--json", "--quiet", "--no-dashboard", "--fresh", *extra_args,
        ]  # fmt: skip

    m = measure(make_argv, sim_config, workdir, timeout_s, child_env(**(env_extra or {})), side)
    return m, anvil_facts(m, state / "journal.sqlite")


def anvil_facts(m: Measured, journal: Path) -> dict[str, Any]:
    """The --json summary and, from the journal, first dispatch, last result, jobs succeeded."""
    facts: dict[str, Any] = {"summary": None, "first_started": None, "last_finished": None, "succeeded": 0}
    with contextlib.suppress(ValueError):
        facts["summary"] = json.loads(m.run.stdout)
    if journal.exists():
        with contextlib.closing(sqlite3.connect(journal)) as db:
            first, last, ok = db.execute(
                "SELECT MIN(started_at), MAX(finished_at), TOTAL(state = 'succeeded') FROM jobs"
            ).fetchone()
        facts.update(first_started=first, last_finished=last, succeeded=int(ok))
    return facts


def run_floor(
    jobs: int, agents: int, sim_config: SimConfig, workdir: Path, timeout_s: float
) -> tuple[Measured, dict[str, Any]]:
    def make_argv(base_url: str) -> list[str]:
        return [
            sys.executable, str(HERE / "floor_async.py"), "--base-url", base_url,
            "--jobs", str(jobs), "--agents", str(agents),
        ]  # fmt: skip

    m = measure(make_argv, sim_config, workdir, timeout_s, child_env())
    facts: dict[str, Any] = {}
    lines = m.run.stdout.strip().splitlines()
    with contextlib.suppress(ValueError, IndexError):
        facts = json.loads(lines[-1])
    return m, facts


BARE_SDK_CALL = """
import sys, anthropic
client = anthropic.Anthropic(base_url=sys.argv[1], max_retries=0)
client.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
"""


def run_bare_sdk(sim_config: SimConfig, workdir: Path) -> Measured:
    """The least any process that calls through the SDK needs before its first request: a
    script that imports it and makes one call (the first-request baseline of benchmark 1)."""

    def make_argv(base_url: str) -> list[str]:
        return [sys.executable, "-c", BARE_SDK_CALL, base_url]

    return measure(make_argv, sim_config, workdir, 60.0, child_env())


# -- reporting -------------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def fmt(value: float | None, unit: str, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}{unit}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def cpu_pair(run: TreeRun) -> str:
    return f"{run.cpu_s:.1f} ({run.cpu_sampled_s:.1f})"


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Left-aligned first column, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        print("  " + "  ".join(cells))


def print_roles(run: TreeRun) -> None:
    """Where the tree's CPU and memory went, by process (sampled: a lower bound of each)."""
    parts = [
        f"{name} {'' if n == 1 else f'x{n} '}{cpu:.2f} s / {rss:.0f} MB"
        for name, (n, cpu, rss) in sorted(run.by_role().items(), key=lambda kv: -kv[1][1])
    ]
    print("  by process (CPU s sampled / peak RSS of one): " + "; ".join(parts))


def problems(m: Measured, label: str) -> list[str]:
    """Lines worth showing when a run did not end cleanly."""
    out = []
    run = m.run
    if run.timed_out:
        out.append(f"{label}: TIMED OUT after {run.wall_s:.0f} s; its tree was killed")
    elif run.returncode not in (0, None):
        out.append(f"{label}: exit code {run.returncode}")
    if run.returncode != 0 and run.stderr.strip():
        out.append(f"{label} stderr (tail): " + run.stderr.strip()[-600:].replace("\n", "\n    "))
    if run.killed and not run.timed_out:
        out.append(f"{label}: {len(run.killed)} process(es) outlived it by > 20 s and were killed")
    return out
