"""Several endpoints end to end, the way users run them: the real `anvil` command in its own
process, configured (mostly) by environment variables alone, against the simulator serving one
simulated endpoint per account under `/e/{name}` with the SDK's real Anthropic, Bedrock and
Vertex clients over HTTP on 127.0.0.1. Every figure is checked against the journal (attempt logs,
`endpoint_spend`, events) and the simulator's per-endpoint stats, by counts, never by time."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.sim.config import EndpointSim, SharedSim
from tests.engine_support import (
    anvil_cmd,
    cli_env,
    journal_query,
    read_results,
    succeeded_jobs,
    write_jsonl_batch,
)
from tests.test_api_e2e import TOKEN, Api, free_port, wait_for

TIMEOUT_S = 120

# Fast retries and test-sized scaling for every run (the variables users would set too).
FAST = {
    "ANVIL_RETRIES__MAX_ATTEMPTS": "8",
    "ANVIL_RETRIES__BACKOFF_BASE_S": "0.01",
    "ANVIL_RETRIES__BACKOFF_MAX_S": "0.2",
    "ANVIL_SCALING__WORKERS": "2",
    "ANVIL_RUN__GRACE_PERIOD_S": "5",
    "ANVIL_PROVIDER__TIMEOUT_S": "30",
}
CREDENTIALS = {"KEY_ANTH": "sk-ant-e2e", "KEY_BED": "bedrock-api-key-e2e", "TOK_VTX": "ya29.e2e-token"}


def endpoint_vars(i: int, **fields: Any) -> dict[str, str]:
    """`ANVIL_ENDPOINTS__{i}__FIELD=value` for each field (rate limits as `rpm`/`burst`)."""
    out: dict[str, str] = {}
    rpm, burst = fields.pop("rpm", None), fields.pop("burst", None)
    for key, value in fields.items():
        out[f"ANVIL_ENDPOINTS__{i}__{key.upper()}"] = str(value)
    limits = f"ANVIL_ENDPOINTS__{i}__RATE_LIMITS__DEFAULT__"
    if rpm is not None:
        out[limits + "REQUESTS_PER_MINUTE"] = str(rpm)
    if burst is not None:
        out[limits + "BURST_SIZE"] = str(burst)
    return out


def as_flow_text(numbered: dict[str, str]) -> dict[str, str]:
    """The same endpoints as one `ANVIL_ENDPOINTS` variable of JSON flow text (the list whole)."""
    entries: dict[int, dict[str, Any]] = {}
    for name, value in numbered.items():
        _, i, *path = name.lower().split("__")
        node = entries.setdefault(int(i), {})
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = int(value) if value.isdigit() else value
    return {"ANVIL_ENDPOINTS": json.dumps([entries[i] for i in sorted(entries)])}


def anthropic_vars(i: int, sim: SimServer, name: str, **limits: Any) -> dict[str, str]:
    base = sim.endpoint_url(name)
    return endpoint_vars(i, name=name, provider="anthropic", api_key_env="KEY_ANTH", base_url=base, **limits)


def bedrock_vars(
    i: int, sim: SimServer, name: str, region: str = "us-east-1", **limits: Any
) -> dict[str, str]:
    base = sim.endpoint_url(name)
    return endpoint_vars(
        i, name=name, provider="bedrock", region=region, api_key_env="KEY_BED", base_url=base, **limits
    )


def vertex_vars(i: int, sim: SimServer, name: str, **limits: Any) -> dict[str, str]:
    base = sim.endpoint_url(name)
    return endpoint_vars(
        i,
        name=name,
        provider="vertex",
        region="us-east5",
        project_id="anvil-e2e",
        auth_token_env="TOK_VTX",
        base_url=base,
        **limits,
    )


@dataclass
class Run:
    """One finished `anvil run`: its exit, summary, results and journal (read from outside)."""

    code: int
    stdout: str
    stderr: str
    cwd: Path
    env: dict[str, str]

    @property
    def state_dir(self) -> Path:
        return self.cwd / ".anvil"

    def results(self) -> list[dict[str, Any]]:
        return read_results(self.cwd / "results.jsonl")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return journal_query(self.state_dir, sql)

    def attempts(self) -> list[dict[str, Any]]:
        """Every call of every job, from the jobs' stored attempt logs."""
        out: list[dict[str, Any]] = []
        for (log,) in self.query("SELECT attempts_json FROM jobs"):
            out.extend(json.loads(log or "[]"))
        return out

    def events(self, kind: str) -> list[dict[str, Any]]:
        rows = self.query(f"SELECT data_json FROM events WHERE kind = '{kind}'")
        return [json.loads(str(r[0])) for r in rows]

    def spend(self) -> dict[str, dict[str, float]]:
        rows = self.query(
            "SELECT endpoint, SUM(cost_usd), SUM(calls), SUM(errors), SUM(rate_limited)"
            " FROM endpoint_spend GROUP BY endpoint"
        )
        return {str(n): {"cost_usd": c, "calls": k, "errors": e, "rate_limited": r} for n, c, k, e, r in rows}

    def succeeded(self) -> int:
        """Succeeded jobs (of a live run too: 0 while its journal is not there yet)."""
        return succeeded_jobs(self.state_dir)

    def anvil(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Another `anvil` command in the same directory and environment (status, plan...)."""
        return subprocess.run(
            anvil_cmd(*args), cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=TIMEOUT_S
        )


def run_env(tmp_path: Path, *parts: dict[str, str]) -> dict[str, str]:
    env = cli_env()
    del env["ANTHROPIC_API_KEY"]  # each endpoint names its own credential
    env.update(CREDENTIALS)
    env.update(FAST)
    env["ANVIL_STATE_DIR"] = str(tmp_path / ".anvil")
    for part in parts:
        env.update(part)
    return env


def anvil_run(tmp_path: Path, env: dict[str, str], *args: str, batch: str = "batch.jsonl") -> Run:
    argv = anvil_cmd("run", batch, "-o", "results.jsonl", "-q", "--json", *args)
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    return Run(done.returncode, done.stdout, done.stderr, tmp_path, env)


def calls_by_endpoint(attempts: list[dict[str, Any]]) -> Counter[str]:
    """Answered calls by endpoint, from the attempt logs (cache hits never reached an endpoint)."""
    return Counter(a["endpoint"] for a in attempts if a["status_code"] == 200 and not a.get("cache_hit"))


def sim_successes(sim: SimServer) -> dict[str, int]:
    return {name: int(s["successes"]) for name, s in sim.stats()["endpoints"].items() if s["successes"]}


# -- 1. three providers from environment variables only ----------------------------------------


@pytest.fixture(name="three")
def fixture_three() -> Iterator[SimServer]:
    config = SimConfig(
        seed=21,
        latency_ms=20,
        endpoints={
            "anth": EndpointSim(provider="anthropic"),
            "bed": EndpointSim(provider="bedrock"),
            "vtx": EndpointSim(provider="vertex"),
        },
    )
    with SimServer(config).start_thread() as sim:
        yield sim


@pytest.mark.slow
def test_three_providers_configured_by_variables_only(tmp_path: Path, three: SimServer) -> None:
    """Anthropic, Bedrock and Vertex endpoints from `ANVIL_ENDPOINTS__i__…` alone (no anvil.yaml),
    each a burst of 3 so that 9 jobs at once need all three: every job succeeds, each result
    names its endpoint, the simulator's endpoints answered exactly the calls the journal puts on
    them, and `anvil status --json` shows the journal's sums."""
    n = 9
    write_jsonl_batch(tmp_path / "batch.jsonl", [f"question {i}" for i in range(n)])
    env = run_env(
        tmp_path,
        anthropic_vars(0, three, "anth", rpm=60, burst=3),
        bedrock_vars(1, three, "bed", rpm=60, burst=3),
        vertex_vars(2, three, "vtx", rpm=60, burst=3),
    )
    run = anvil_run(tmp_path, env, "--agents", str(n))
    assert run.code == 0, run.stderr
    assert run.succeeded() == n
    results = run.results()
    assert len(results) == n and all(r["endpoint"] in {"anth", "bed", "vtx"} for r in results)
    journal_calls = calls_by_endpoint(run.attempts())
    assert dict(journal_calls) == sim_successes(three)
    assert set(journal_calls) == {"anth", "bed", "vtx"}  # a burst of 3 each: all three were needed
    assert Counter(r["endpoint"] for r in results) == journal_calls  # one call a job
    spend = run.spend()
    assert {name: s["calls"] for name, s in spend.items()} == dict(journal_calls)
    status = run.anvil("status", "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)["endpoints"]
    for name, s in spend.items():  # status shows dollars to the micro-dollar
        assert (shown[name]["calls"], shown[name]["errors"]) == (s["calls"], s["errors"])
        assert shown[name]["cost_usd"] == round(s["cost_usd"], 6)


@pytest.mark.slow
def test_a_live_runs_metrics_by_endpoint(tmp_path: Path, three: SimServer) -> None:
    """`anvil run --serve` with the Anthropic and Bedrock endpoints, each refilling one call a
    second (so the run outlasts its first results), paused once some results are in and nothing
    is in flight: `/metrics` (`anvil_endpoint_*{endpoint=...}`) and `/status` show, for each
    endpoint, the paid calls and cost the journal holds at that moment."""
    n = 12
    write_jsonl_batch(tmp_path / "batch.jsonl", [f"question {i}" for i in range(n)])
    env = run_env(
        tmp_path,
        anthropic_vars(0, three, "anth", rpm=60, burst=3),
        bedrock_vars(1, three, "bed", rpm=60, burst=3),
        {"ANVIL_API_TOKEN": TOKEN},
    )
    port = free_port()
    argv = anvil_cmd("run", "batch.jsonl", "-q", "--agents", "4", "--serve", f"127.0.0.1:{port}")
    proc = subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    api = Api(f"http://127.0.0.1:{port}")
    run = Run(0, "", "", tmp_path, env)
    try:
        wait_for(
            lambda: run.query("SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'") >= [(6,)],
            60,
            "6 results",
        )
        wait_for(api.up, 30, "the API")
        assert api.post("/pause")[0] == 200
        wait_for(lambda: api.status()["counts"]["running"] == 0, 60, "nothing in flight")
        spend = run.spend()
        code, text = api.get("/metrics")
        assert code == 200
        families = {f.name: f for f in text_string_to_metric_families(text)}
        calls = {s.labels["endpoint"]: s.value for s in families["anvil_endpoint_api_calls"].samples}
        cost = {s.labels["endpoint"]: s.value for s in families["anvil_endpoint_cost_usd"].samples}
        shown = api.status()["endpoints"]
        assert api.post("/resume")[0] == 200
        _, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert set(spend) == {"anth", "bed"}  # both were needed for the first results
    assert calls == {name: s["calls"] for name, s in spend.items()}
    assert cost == pytest.approx({name: s["cost_usd"] for name, s in spend.items()}, abs=1e-6)
    assert {name: e["calls"] for name, e in shown.items()} == calls
    assert run.succeeded() == n


# -- 2. failover: an endpoint goes off mid-run -------------------------------------------------


ENDPOINT_VARS = {"anthropic": anthropic_vars, "bedrock": bedrock_vars, "vertex": vertex_vars}


@pytest.mark.slow
@pytest.mark.parametrize("providers", [("anthropic", "anthropic"), ("bedrock", "vertex")], ids="-".join)
def test_an_endpoint_turned_off_mid_run_fails_over(tmp_path: Path, providers: tuple[str, str]) -> None:
    """Two endpoints (two Anthropic accounts; a Bedrock region and a Vertex one), `a` first: the
    9th job's prompt turns `a` off (its connections dropped, its calls in flight cut). Every job
    still succeeds, answered once; `a`'s breaker opened; the jobs it failed went to `b`; the
    simulator's paid duplicates are no more than the calls `a` had cut in flight."""
    n, off_at = 30, 8
    prompts = [f"question {i}" for i in range(n)]
    prompts[off_at] = "question @sim{endpoint_off=a}"
    write_jsonl_batch(tmp_path / "batch.jsonl", prompts)
    first, second = providers
    endpoints = {"a": EndpointSim(provider=first), "b": EndpointSim(provider=second)}
    config = SimConfig(seed=22, latency_ms=40, endpoints=endpoints)
    with SimServer(config).start_thread() as sim:
        env = run_env(
            tmp_path,
            ENDPOINT_VARS[first](0, sim, "a", rpm=60000, burst=100),
            ENDPOINT_VARS[second](1, sim, "b", rpm=60000, burst=100),
            {"ANVIL_CIRCUIT_BREAKER__RECOVERY_TIMEOUT_S": "3600"},
        )
        run = anvil_run(tmp_path, env, "--agents", "4")
        stats = sim.stats()
    assert run.code == 0, run.stderr
    assert run.succeeded() == n
    results = run.results()
    assert sorted(r["id"] for r in results) == [f"job-{i:04d}" for i in range(n)]
    for (log,) in run.query("SELECT attempts_json FROM jobs"):
        assert sum(a["status_code"] == 200 for a in json.loads(log)) == 1  # answered once each
    a_stats = stats["endpoints"]["a"]
    assert a_stats["off"] and a_stats["refused"] >= 1
    opened = [e for e in run.events("breaker") if e.get("endpoint") == "a" and e["state"] == "open"]
    assert opened, run.events("breaker")
    # The breaker kept the run off `a`: no probe within the hour, so `a` saw only the failures
    # that opened it and the calls already granted to it then (at most one an agent).
    assert a_stats["refused"] <= 5 + 4
    # Each job that failed on `a` was answered on `b`; `a` answered exactly what the journal says.
    for (log,) in run.query("SELECT attempts_json FROM jobs"):
        calls = json.loads(log)
        if any(c["endpoint"] == "a" and c["status_code"] != 200 for c in calls):
            assert calls[-1]["endpoint"] == "b" and calls[-1]["status_code"] == 200
    answered = calls_by_endpoint(run.attempts())
    assert answered["b"] == stats["endpoints"]["b"]["successes"]
    assert answered["a"] + a_stats["dropped"] == a_stats["successes"]  # cut calls were paid, not answered
    assert answered["b"] > 0
    assert stats["paid_duplicates"] <= a_stats["dropped"]
    # The views: `a`'s failed calls (refused and cut) are on it, its breaker shows open.
    failed_on_a = sum(c["endpoint"] == "a" and c["status_code"] != 200 for c in run.attempts())
    assert failed_on_a == a_stats["refused"] + a_stats["dropped"]
    shown = json.loads(run.anvil("status", "--json").stdout)["endpoints"]
    assert shown["a"]["errors"] == run.spend()["a"]["errors"] == failed_on_a
    assert shown["a"]["open_breakers"] == 1 and shown["b"]["open_breakers"] == 0


@pytest.mark.slow
def test_an_endpoint_back_on_gets_its_share_back_after_its_probe(tmp_path: Path) -> None:
    """The test turns `a` off once four results are in and, once its breaker has opened
    (journal), back on (by the control API: a directive would be sent again by its job's retry):
    its breaker's probe succeeds (recovery after 0.2 s), the breaker closes, and `a` answers
    again, while `b`, slow to refill, would have needed many seconds for the rest."""
    n = 30
    write_jsonl_batch(tmp_path / "batch.jsonl", [f"question {i}" for i in range(n)])
    config = SimConfig(seed=28, latency_ms=20, endpoints={"a": EndpointSim(), "b": EndpointSim()})
    with SimServer(config).start_thread() as sim:
        env = run_env(
            tmp_path,
            anthropic_vars(0, sim, "a", rpm=60000, burst=100),
            anthropic_vars(1, sim, "b", rpm=120, burst=3),
            {"ANVIL_CIRCUIT_BREAKER__RECOVERY_TIMEOUT_S": "0.2"},
        )
        argv = anvil_cmd("run", "batch.jsonl", "-o", "results.jsonl", "-q", "--agents", "4")
        proc = subprocess.Popen(
            argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        run = Run(0, "", "", tmp_path, env)
        try:
            wait_for(lambda: run.succeeded() >= 4, 60, "4 results")
            sim.endpoint_off("a")
            wait_for(lambda: any(e.get("endpoint") == "a" for e in run.events("breaker")), 60, "a's breaker")
            answered_while_off = sim.stats()["endpoints"]["a"]["successes"]
            sim.endpoint_on("a")
            _, err = proc.communicate(timeout=TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        stats = sim.stats()["endpoints"]
    assert proc.returncode == 0, err
    assert run.succeeded() == n
    states = [e["state"] for e in run.events("breaker") if e.get("endpoint") == "a"]
    assert states[0] == "open" and states[-1] == "closed", states
    assert stats["a"]["successes"] > answered_while_off  # its share back


def test_a_retry_leaves_an_endpoint_that_is_down(tmp_path: Path) -> None:
    """`a` (listed first) is off from the start, `retries.max_attempts` is 3 (under the breaker's
    5 failures), one job at a time: each job's retry goes to `b` instead of spending every
    attempt on `a` before its breaker opens. Every job succeeds, none has two failures on `a`."""
    n = 4
    write_jsonl_batch(tmp_path / "batch.jsonl", [f"question {i}" for i in range(n)])
    config = SimConfig(seed=31, latency_ms=10, endpoints={"a": EndpointSim(), "b": EndpointSim()})
    with SimServer(config).start_thread() as sim:
        sim.endpoint_off("a")
        env = run_env(
            tmp_path,
            anthropic_vars(0, sim, "a", rpm=60000, burst=100),
            anthropic_vars(1, sim, "b", rpm=60000, burst=100),
            {"ANVIL_RETRIES__MAX_ATTEMPTS": "3"},
        )
        run = anvil_run(tmp_path, env, "--agents", "1")
    assert run.code == 0, run.stderr
    for (log,) in run.query("SELECT attempts_json FROM jobs"):
        calls = [(c["endpoint"], c["status_code"]) for c in json.loads(log)]
        assert calls in ([("b", 200)], [("a", None), ("b", 200)]), calls


@pytest.mark.slow  # three `anvil` commands: ~8 s
def test_an_interrupted_run_resumes_with_its_endpoints_spend(tmp_path: Path) -> None:
    """Ctrl-C once four results are in, then the same command again: the resumed run finishes,
    every paid call on each endpoint (both sessions) is in the journal exactly as the simulator
    answered it, and every result names its endpoint."""
    n = 12
    write_jsonl_batch(tmp_path / "batch.jsonl", [f"question {i}" for i in range(n)])
    endpoints = {"a": EndpointSim(provider="anthropic"), "b": EndpointSim(provider="bedrock")}
    with SimServer(SimConfig(seed=27, latency_ms=100, endpoints=endpoints)).start_thread() as sim:
        env = run_env(
            tmp_path,
            anthropic_vars(0, sim, "a", rpm=60, burst=3),
            bedrock_vars(1, sim, "b", rpm=60000, burst=100),
        )
        argv = anvil_cmd("run", "batch.jsonl", "-o", "results.jsonl", "-q", "--agents", "3")
        proc = subprocess.Popen(
            argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        run = Run(0, "", "", tmp_path, env)
        try:
            wait_for(lambda: run.succeeded() >= 4, 60, "4 results")
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 130, err
        assert run.succeeded() < n
        resumed = anvil_run(tmp_path, env)
        stats, answered = sim.stats(), sim_successes(sim)
    assert resumed.code == 0, resumed.stderr
    assert resumed.succeeded() == n
    results = resumed.results()
    assert len(results) == n and all(r["endpoint"] in {"a", "b"} for r in results)
    spend = resumed.spend()
    assert {name: s["calls"] for name, s in spend.items()} == answered
    assert dict(calls_by_endpoint(resumed.attempts())) == answered
    assert stats["paid_duplicates"] == 0
    shown = json.loads(resumed.anvil("status", "--json").stdout)["endpoints"]
    assert {name: e["calls"] for name, e in shown.items()} == {name: s["calls"] for name, s in spend.items()}


# -- 3. a shared ceiling -----------------------------------------------------------------------

SHARED = "{org: {endpoints: [a, b], rate_limits: {default: {requests_per_minute: 600, burst_size: 10}}}}"


@pytest.mark.parametrize(
    "shared", [SHARED, pytest.param(None, marks=pytest.mark.slow)], ids=["ceiling", "unknown-to-anvil"]
)
@pytest.mark.slow
def test_a_shared_ceiling_below_the_endpoints_sum(tmp_path: Path, shared: str | None) -> None:
    """Two keys of one organisation, 600 requests a minute each, under the organisation's ceiling
    of 600 (the simulator's too: past it, 429s). Told of the ceiling, Anvil keeps under it: every
    job done with next to no 429; not told, the same run meets the ceiling's 429s."""
    n = 24
    write_jsonl_batch(tmp_path / "batch.jsonl", [f"question {i}" for i in range(n)])
    config = SimConfig(
        seed=23,
        latency_ms=20,
        endpoints={"a": EndpointSim(rpm=600, burst=10), "b": EndpointSim(rpm=600, burst=10)},
        shared={"org": SharedSim(endpoints=("a", "b"), rpm=600, burst=10)},
    )
    with SimServer(config).start_thread() as sim:
        env = run_env(
            tmp_path,
            anthropic_vars(0, sim, "a", rpm=600, burst=10),
            anthropic_vars(1, sim, "b", rpm=600, burst=10),
            {"ANVIL_SHARED_LIMITS": shared} if shared else {},
        )
        run = anvil_run(tmp_path, env, "--agents", "20")
        stats = sim.stats()
    assert run.code == 0, run.stderr
    assert run.succeeded() == n
    limited = sum(a["status_code"] == 429 for a in run.attempts())
    assert limited == stats["rate_limited"]  # every 429 the simulator sent is in an attempt log
    if shared:
        assert limited <= 2
    else:
        assert limited > 2


# -- 4. a rate learned from a provider's 429s --------------------------------------------------


@pytest.mark.slow  # its 429s pause the pool a second each: ~8 s
@pytest.mark.parametrize("provider", ["bedrock", "vertex"])
def test_a_rate_set_too_high_is_learned(tmp_path: Path, provider: str) -> None:
    """Bedrock and Vertex send no rate-limit headers: an endpoint configured at 2.5 times its
    real rate (3,000 requests a minute against the simulator's 1,200) learns it from its
    throttling answers (`ThrottlingException`, `RESOURCE_EXHAUSTED`). Every job is done, a
    `limit_adapted` event says the rate was learned, and the 429s stay bounded (every one of
    them in an attempt log)."""
    n = 24
    write_jsonl_batch(tmp_path / "batch.jsonl", [f"question {i}" for i in range(n)])
    real = EndpointSim(rpm=1200, burst=5, provider=provider)
    config = SimConfig(seed=24, latency_ms=20, endpoints={"cloud": real})
    with SimServer(config).start_thread() as sim:
        env = run_env(tmp_path, ENDPOINT_VARS[provider](0, sim, "cloud", rpm=3000, burst=10))
        run = anvil_run(tmp_path, env, "--agents", "10")
        stats = sim.stats()
    assert run.code == 0, run.stderr
    assert run.succeeded() == n
    learned = [e for e in run.events("limit_adapted") if e.get("learned")]
    assert learned and all(e["pool"].startswith("cloud/") for e in learned)
    assert any(e["effective_per_min"] < e["configured_per_min"] for e in learned)
    limited = sum(a["status_code"] == 429 for a in run.attempts())
    assert 0 < limited == stats["rate_limited"] <= n


# -- 5. the user's order or the cheapest, with capacity to spare -------------------------------


@pytest.mark.parametrize(("order", "expected"), [("listed", "bed"), ("cheapest", "anth")])
def test_listed_or_cheapest_order(tmp_path: Path, order: str, expected: str) -> None:
    """A regional Bedrock endpoint (10% over list price) listed before an Anthropic one, both
    with capacity to spare, one job at a time: `listed` sends every call to the first,
    `cheapest` to the Anthropic one."""
    n = 4
    write_jsonl_batch(tmp_path / "batch.jsonl", [f"question {i}" for i in range(n)])
    config = SimConfig(
        seed=25,
        latency_ms=10,
        endpoints={"bed": EndpointSim(provider="bedrock"), "anth": EndpointSim(provider="anthropic")},
    )
    with SimServer(config).start_thread() as sim:
        env = run_env(
            tmp_path,
            bedrock_vars(0, sim, "bed", rpm=6000, burst=50),
            anthropic_vars(1, sim, "anth", rpm=6000, burst=50),
            {"ANVIL_ROUTING__ENDPOINT_ORDER": order},
        )
        run = anvil_run(tmp_path, env, "--agents", "1")
        answered = sim_successes(sim)
    assert run.code == 0, run.stderr
    assert [r["endpoint"] for r in run.results()] == [expected] * n
    assert answered == {expected: n}


# -- 6. prompt-cache affinity ------------------------------------------------------------------

SYSTEM = "You are a careful assistant for the Anvil end-to-end tests. " * 120  # ~7,000 characters


def test_jobs_sharing_a_cached_prefix_stay_where_it_is_cached(tmp_path: Path) -> None:
    """Ten jobs, one at a time, sharing a long system prompt (cached: prompt caching is on by
    default). `a` is listed first with a burst of 2 and refills 2 calls a second; `b` has room to
    spare. Once a job's prefix went to `b` (when `a` had run dry), every later job stays on `b`,
    where its prefix is cached, even when `a` has refilled: the results' endpoints never go back,
    and every job after the first on an endpoint reads the prefix from that endpoint's cache."""
    n = 10
    write_jsonl_batch(tmp_path / "batch.jsonl", [f"question {i}" for i in range(n)], system=SYSTEM)
    config = SimConfig(seed=26, latency_ms=30, endpoints={"a": EndpointSim(), "b": EndpointSim()})
    with SimServer(config).start_thread() as sim:
        env = run_env(
            tmp_path,
            anthropic_vars(0, sim, "a", rpm=600, burst=2),
            anthropic_vars(1, sim, "b", rpm=60000, burst=100),
        )
        run = anvil_run(tmp_path, env, "--agents", "1")
        stats = sim.stats()["endpoints"]
    assert run.code == 0, run.stderr
    results = run.results()
    order = [r["endpoint"] for r in results]
    switched = order.index("b") if "b" in order else n
    assert order == ["a"] * switched + ["b"] * (n - switched)  # never back to `a`
    for endpoint, first in (("a", 0), ("b", switched)):
        used = [r for r in results if r["endpoint"] == endpoint]
        if not used:
            continue
        assert used[0]["id"] == results[first]["id"]
        assert used[0]["usage"]["cache_creation_input_tokens"] > 0  # the prefix written once
        assert all(r["usage"]["cache_read_input_tokens"] > 0 for r in used[1:])  # then read
        assert (
            stats[endpoint]["cache_creation_input_tokens"] == used[0]["usage"]["cache_creation_input_tokens"]
        )


# -- 7. `anvil plan` with the same variables ---------------------------------------------------


@pytest.mark.parametrize("form", ["numbered", "flow-text"])
def test_plan_names_the_endpoints_and_the_pooled_rate(tmp_path: Path, three: SimServer, form: str) -> None:
    """The three providers' endpoints of test 1, from variables only (entry by entry, or the
    list whole in `ANVIL_ENDPOINTS`), at 600, 600 and 300 requests a minute: `anvil validate`
    accepts them; the plan names each with its rate and share, and pools their 1,500."""
    write_jsonl_batch(tmp_path / "batch.jsonl", [f"question {i}" for i in range(5)])
    numbered = {
        **anthropic_vars(0, three, "anth", rpm=600, burst=20),
        **bedrock_vars(1, three, "bed", rpm=600, burst=20),
        **vertex_vars(2, three, "vtx", rpm=300, burst=10),
    }
    env = run_env(tmp_path, numbered if form == "numbered" else as_flow_text(numbered))
    run = Run(0, "", "", tmp_path, env)
    validated = run.anvil("validate", "batch.jsonl")
    assert validated.returncode == 0, validated.stderr
    done = subprocess.run(
        anvil_cmd("plan", "batch.jsonl"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()]
    assert lines[0] == "5 job(s); input tokens: exact, from count_tokens"
    assert "endpoints: 3; each pool's rate is their sum, capped by shared limits" in lines
    pooled = "pool default:haiku: pooled 1,500 requests/min, burst 50; binding: requests,"
    assert f"{pooled} set by the endpoints' sum" in lines
    assert "anth (anthropic): 600 requests/min, burst 20; list prices; 40% of the pooled requests" in lines
    assert (
        "bed (bedrock us-east-1): 600 requests/min, burst 20; prices x1.1; 40% of the pooled requests"
        in lines
    )
    assert (
        "vtx (vertex us-east5): 300 requests/min, burst 10; prices x1.1; 20% of the pooled requests" in lines
    )
    assert (
        "count_tokens failed" not in done.stdout
    )  # counted by the first Anthropic endpoint: the simulator's


# -- 8. Message Batches mode with an Anthropic and a Bedrock endpoint --------------------------


@pytest.mark.slow
def test_batches_mode_runs_on_the_anthropic_endpoint_and_says_so(tmp_path: Path) -> None:
    """`--mode batches --simulate` with a Bedrock endpoint listed first and an Anthropic one:
    every job's request goes in a batch on the Anthropic endpoint (results, journal, status), and
    the run says Bedrock's sits it out."""
    n = 5
    write_jsonl_batch(tmp_path / "batch.jsonl", [f"question {i}" for i in range(n)])
    env = run_env(
        tmp_path,
        endpoint_vars(0, name="bed", provider="bedrock", region="us-east-1"),
        endpoint_vars(1, name="anth", provider="anthropic"),
        {"ANVIL_BATCHES__POLL_INTERVAL_S": "0.05"},
    )
    argv = anvil_cmd(
        "run", "batch.jsonl", "-o", "results.jsonl", "--simulate", "--mode", "batches", "--no-dashboard"
    )
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    note = "Message Batches run on endpoint anth; not used in batches mode: bed (bedrock)"
    assert done.stderr.splitlines().count(note) == 1, done.stderr
    run = Run(done.returncode, done.stdout, done.stderr, tmp_path, env)
    assert [r["endpoint"] for r in run.results()] == ["anth"] * n
    assert {a["endpoint"] for a in run.attempts()} == {"anth"}
    assert run.query("SELECT COUNT(*) FROM batches WHERE state = 'ended'")[0][0] >= 1
    status = json.loads(run.anvil("status", "--json").stdout)
    assert set(status["endpoints"]) == {"anth"} and status["endpoints"]["anth"]["calls"] == n
