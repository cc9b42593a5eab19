"""Every latency percentile a real run shows is within 2% of the exact one, computed from the
journal's own call latencies (each job's attempt log): the run summary (printed and stored),
`anvil status` (text and --json), GET /status per model, every window of GET /series, and the
report's embedded data. A real `anvil run --serve` in a subprocess, the real SDK over HTTP
against the simulator with varied latencies (lognormal, plus a slow sixth at 1.2 s) and two
models. Every wait polls real progress, bounded; nothing sleeps for pacing.

A window's calls: one worker hands its results over in the order they finished, and the
conductor counts them in that order, so a sample whose counts say `done` jobs finished and whose
window holds `count` calls covers the jobs ranked `done - count + 1 .. done` by `finished_at`.
Jobs finishing within `TIE_S` of a window's edge may fall on either side: the figure must then be
within 2% of the exact one for some such choice (`_window_band`)."""

from __future__ import annotations

import json
import math
import re
import sqlite3
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import anvil_cmd, cli_env, invoke_cli, write_config, write_jobs
from tests.test_api_e2e import TOKEN, Api, free_port, wait_for

HAIKU, SONNET = "claude-haiku-4-5", "claude-sonnet-4-6"
N_JOBS = 150
AGENTS = 4
TOLERANCE = 0.02
TIE_S = 0.02  # jobs finishing this close to a window's edge may be counted on either side
PCTS = (("p50", 50.0), ("p95", 95.0), ("p99", 99.0))
WAIT_S = 120.0  # bound of every wait (a busy machine is slow)


@dataclass(frozen=True)
class Call:
    finished_at: float
    model: str
    latency_s: float


def nearest_rank(values: Sequence[float], pct: float) -> float:
    """The exact nearest-rank percentile, computed here, not by Anvil."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100.0 * len(ordered) - 1e-9)) - 1]


def assert_close(shown: Any, exact: float, what: str) -> None:
    assert isinstance(shown, int | float), f"{what}: shows {shown!r}, exact {exact}"
    assert abs(shown - exact) <= TOLERANCE * exact, f"{what}: shows {shown}, exact {exact}"


def assert_figures(shown: dict[str, Any], values: Sequence[float], what: str) -> None:
    """count, p50, p95 and p99 of `values` as one view shows them."""
    assert shown["count"] == len(values), (what, shown)
    for key, pct in PCTS:
        assert_close(shown[key], nearest_rank(values, pct), f"{what} {key}")


def journal_calls(state_dir: Path) -> tuple[list[Call], list[float]]:
    """Every API call the journal holds (finished jobs' attempt logs; cached answers are no
    call), oldest first by its job's `finished_at`, and the jobs' times."""
    with sqlite3.connect(state_dir / "journal.sqlite", timeout=10) as db:
        rows = db.execute(
            "SELECT model, attempts_json, finished_at, latency_s FROM jobs WHERE finished_at IS NOT NULL"
        ).fetchall()
    calls: list[Call] = []
    for model, attempts_json, finished_at, _ in rows:
        log = json.loads(attempts_json)
        assert len(log) == 1 and log[0]["status_code"] == 200, log  # one call a job: no fault injected
        calls.append(Call(float(finished_at), str(log[0].get("model") or model), float(log[0]["latency_s"])))
    calls.sort(key=lambda c: c.finished_at)
    return calls, [float(r[3]) for r in rows]


def by_model(calls: Sequence[Call]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for c in calls:
        out.setdefault(c.model, []).append(c.latency_s)
    return out


def _window_band(calls: Sequence[Call], done: int, count: int, pct: float) -> tuple[float, float]:
    """(lowest, highest) exact percentile of the `count` calls counted last before a sample
    taken when `done` had been counted, over every order of the calls tied at its edges."""
    first, last = done - count, done  # the window, ranked by finished_at: calls[first:last]
    edges = [e for e in (first, last) if 0 < e < len(calls)]

    def near_edge(i: int) -> bool:
        return any(abs(calls[i].finished_at - (calls[e - 1].finished_at + calls[e].finished_at) / 2) <= TIE_S
                   for e in edges)  # fmt: skip

    certain = [calls[i].latency_s for i in range(first, last) if not near_edge(i)]
    maybe = sorted(calls[i].latency_s for i in range(len(calls)) if near_edge(i))
    k = count - len(certain)
    assert 0 <= k <= len(maybe), (done, count, len(certain), len(maybe))
    low = nearest_rank(certain + maybe[:k], pct)
    high = nearest_rank(certain + maybe[len(maybe) - k :], pct)
    return low, high


def assert_windows(samples: Sequence[dict[str, Any]], calls: Sequence[Call], what: str) -> int:
    """Each sample's window, all models and each model, against the journal. Returns how many
    windows with calls were checked."""
    checked = 0
    models = {c.model for c in calls}
    for s in samples:
        done, window = s["counts"]["done"], s["latency_s"]
        assert done <= len(calls), (what, s["t"])
        if window["count"] == 0:
            assert window["p50"] is None and s["latency_by_model_s"] == {}, (what, s)
            continue
        checked += 1
        for key, pct in PCTS:
            low, high = _window_band(calls, done, window["count"], pct)
            shown_all = window[key]
            assert (1 - TOLERANCE) * low <= shown_all <= (1 + TOLERANCE) * high, (what, s["t"], key)
        members = calls[done - window["count"] : done]
        for model in models:  # each model's own window: the same calls, that model's
            shown = s["latency_by_model_s"].get(model)
            if shown is None:  # no call of it in the window (but for one tied at the older edge)
                edge = members[0].finished_at
                assert all(c.finished_at - edge <= TIE_S for c in members if c.model == model), (what, s)
                continue
            mine = [c for c in calls if c.model == model]
            done_mine = sum(c.model == model for c in calls[:done])
            for key, pct in PCTS:
                low, high = _window_band(mine, done_mine, shown["count"], pct)
                figure = shown[key]
                assert (1 - TOLERANCE) * low <= figure <= (1 + TOLERANCE) * high, (what, model, s["t"], key)
    return checked


def _seconds(text: str) -> float:
    """A latency as the terminal shows it (`dashboard.render.fmt_s`): 45.0ms, 0.412s, 12.3s."""
    return float(text[:-2]) / 1000 if text.endswith("ms") else float(text.removesuffix("s"))


def printed_figures(text: str, label: str) -> dict[str, float]:
    match = re.search(label + r" p50 (\S+) p95 (\S+) p99 (\S+)", text)
    assert match, f"no '{label} p50 .. p95 .. p99 ..' in:\n{text}"
    return {key: _seconds(match.group(i + 1)) for i, (key, _) in enumerate(PCTS)}


def embedded_data(report: Path) -> dict[str, Any]:
    tag = r'<script type="application/json" id="anvil-data">(.*?)</script>'
    found = re.search(tag, report.read_text(), re.S)
    assert found, "the report embeds no data"
    data: dict[str, Any] = json.loads(found.group(1))  # `<`, `>` and `&` come as JSON \u escapes
    return data


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Api, Path]]:
    """`anvil run --serve` of 150 jobs on 4 agents of one worker, two models; answers take a
    lognormal ~0.25 s (sigma 0.6), every sixth 1.2 s."""
    with SimServer(SimConfig(latency_ms=250, latency_spread=0.6, seed=11)).start_thread() as sim:
        jobs = [
            {
                "id": f"job-{i:04d}",
                "model": (HAIKU, SONNET)[i % 2],
                "prompt": f"question {i}" + (" @sim{latency_ms=1200}" if i % 6 == 5 else ""),
            }
            for i in range(N_JOBS)
        ]
        batch = write_jobs(tmp_path / "b.jsonl", jobs)
        config = write_config(
            tmp_path / "anvil.yaml",
            sim.base_url,
            scaling={"workers": 1, "max_agents": AGENTS, "max_concurrent_jobs": AGENTS, "min_agents": AGENTS},
        )
        port = free_port()
        with (tmp_path / "run.stdout").open("w") as out, (tmp_path / "run.stderr").open("w") as err:
            proc = subprocess.Popen(
                anvil_cmd("run", str(batch), "--config", str(config), "--serve", f"127.0.0.1:{port}"),
                cwd=tmp_path,
                env={**cli_env(), "ANVIL_API_TOKEN": TOKEN},
                stdout=out,
                stderr=err,
                text=True,
            )
        try:
            yield proc, Api(f"http://127.0.0.1:{port}"), config
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_every_percentile_shown_is_within_two_percent_of_the_journal(
    served: tuple[subprocess.Popen[str], Api, Path],
) -> None:
    proc, api, config = served
    state_dir, cwd = config.parent / ".anvil", config.parent
    wait_for(lambda: api.up() or proc.poll() is not None, timeout_s=WAIT_S, what="the API answering")
    wait_for(lambda: api.status()["counts"]["succeeded"] >= 60, timeout_s=WAIT_S, what="60 jobs done")

    # live, paused and idle: the last snapshot has counted every call the journal holds
    assert api.post("/pause")[0] == 200
    wait_for(lambda: (s := api.status())["paused"] and s["agents"]["in_flight"] == 0, timeout_s=WAIT_S,
             what="paused, idle")  # fmt: skip
    calls, _ = journal_calls(state_dir)
    wait_for(lambda: api.status()["call_latency_s"]["count"] == len(calls), timeout_s=WAIT_S,
             what="a snapshot of every journaled call")  # fmt: skip
    status = api.status()
    assert_figures(status["call_latency_s"], [c.latency_s for c in calls], "GET /status")
    for model, values in by_model(calls).items():
        assert_figures(status["call_latency_by_model_s"][model], values, f"GET /status {model}")
    code, series = api.get("/series")
    assert code == 200 and not series["downsampled"]
    assert assert_windows(series["samples"], calls, "GET /series") >= 5

    assert api.post("/resume")[0] == 200
    assert proc.wait(timeout=WAIT_S) == ExitCode.OK
    calls, job_times = journal_calls(state_dir)
    assert len(calls) == N_JOBS
    latencies, per_model = [c.latency_s for c in calls], by_model(calls)

    printed = (cwd / "run.stdout").read_text()  # the run's closing summary
    calls_printed = printed_figures(printed, "API call latency")
    jobs_printed = printed_figures(printed, "job time")
    for key, pct in PCTS:
        assert_close(calls_printed[key], nearest_rank(latencies, pct), f"printed {key}")
        assert_close(jobs_printed[key], nearest_rank(job_times, pct), f"printed job time {key}")

    done = invoke_cli("status", "--json", "--config", str(config), cwd=cwd)
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout)
    for shown, what in ((final, "status --json"), (final["summary"], "stored summary")):
        assert_figures(shown["call_latency_s"], latencies, what)
        assert_figures(shown["job_time_s"], job_times, f"{what} job time")
        for model, values in per_model.items():
            assert_figures(shown["call_latency_by_model_s"][model], values, f"{what} {model}")
    text = invoke_cli("status", "--config", str(config), cwd=cwd)
    assert text.returncode == 0, text.stderr
    for key, pct in PCTS:
        assert_close(printed_figures(text.stdout, "API call latency")[key], nearest_rank(latencies, pct), key)

    report = cwd / "report.html"
    made = invoke_cli("report", "-o", str(report), "--config", str(config), cwd=cwd)
    assert made.returncode == 0, made.stderr
    data = embedded_data(report)
    assert_figures(data["status"]["call_latency_s"], latencies, "report")
    for model, values in per_model.items():
        assert_figures(data["status"]["call_latency_by_model_s"][model], values, f"report {model}")
    assert data["sample_count"] == len(data["samples"])  # none thinned: every window is checked
    assert assert_windows(data["samples"], calls, "report") >= 10
