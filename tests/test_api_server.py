"""The HTTP API over real HTTP, against a fake in-memory controller."""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from anvil_cli.alerts.rules import AlertEngine
from anvil_cli.config.settings import Alerts
from anvil_cli.errors import InputError, Problem, UsageError
from anvil_cli.snapshot.metrics import PROM_BOUNDS_S
from anvil_cli.snapshot.state import WorkerInfo
from anvil_cli.views.api.server import ApiServer
from tests.snapshot_support import HAIKU, SONNET, T0, real_governor, snapshot

TOKEN = "test-token-0123456789abcdef"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def real_status() -> dict[str, Any]:
    """A run's status as the real builder and alert rules make it: 20 of 20 agents busy, one of
    two workers dead (1 restart), sonnet's breaker open, a growing backlog of 800 jobs."""
    gov = real_governor(sonnet_breaker_open=True, spent_usd=0.6, now=T0 + 60)
    snap = snapshot(
        run_id="run-1",
        governor=gov.view(T0 + 60),
        in_flight=20,
        workers=(WorkerInfo(0, 1, True, 20), WorkerInfo(1, 2, False, 0)),
        growing=800,
    )
    alerts = AlertEngine(Alerts())
    alerts.evaluate(snap, snap["updated_at"])
    snap["alerts"] = alerts.active()
    return dict(snap)


STATUS = real_status()


class FakeController:
    """An in-memory run: jobs by id, an agent limit, breakers, pause/drain flags."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {"job-1": {"id": "job-1", "status": "succeeded"}}
        self.agents = 10
        self.breakers: dict[str, str] = {}
        self.paused = False
        self.drained = False
        self.gate: threading.Event | None = None  # when set, status() blocks until released
        self.entered = threading.Event()  # status() was called
        self.left = threading.Event()  # status() returned

    def status(self) -> dict[str, Any]:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(60)  # a hang guard: the test releases it
        self.left.set()
        return {**STATUS, "paused": self.paused}

    def job(self, job_id: str) -> dict[str, Any] | None:
        return self.jobs.get(job_id)

    def add_jobs(self, raw_jobs: list[dict[str, Any]]) -> list[str]:
        problems = [
            Problem("POST /jobs", "expected 'prompt' or 'messages'", line=n, job_id=str(raw.get("id")))
            for n, raw in enumerate(raw_jobs, start=1)
            if "prompt" not in raw and "params" not in raw
        ]
        if problems:
            raise InputError(problems)
        ids = [str(raw.get("id") or raw.get("custom_id")) for raw in raw_jobs]
        for job_id in ids:
            self.jobs[job_id] = {"id": job_id, "status": "pending", "state": "pending"}
        return ids

    def scale(self, agents: int) -> int:
        if not 1 <= agents <= 50:
            raise ValueError(f"agents must be between 1 and 50, got {agents}")
        self.agents = agents
        return agents

    def set_breaker(self, model: str, state: str) -> None:
        if state not in ("open", "closed"):
            raise ValueError(f"bad state {state!r}")
        self.breakers[model] = state

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def drain(self) -> None:
        self.drained = True


class Broken(FakeController):
    def status(self) -> dict[str, Any]:
        raise RuntimeError(f"kaboom {TOKEN}")


@pytest.fixture
def ctl() -> FakeController:
    return FakeController()


@pytest.fixture
def server(ctl: FakeController) -> Iterator[ApiServer]:
    with ApiServer(ctl, "127.0.0.1", 0, TOKEN).start() as srv:
        yield srv


def call(
    srv: ApiServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    token: str | None = TOKEN,
    auth: str | None = None,
) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body or text) of one request."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(srv.url + path, method=method, data=data)
    if auth is not None:
        request.add_header("Authorization", auth)
    elif token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with NO_PROXY.open(request, timeout=5) as response:
            status, headers, payload = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            status, headers, payload = exc.code, dict(exc.headers), exc.read()
    text = payload.decode()
    is_json = headers.get("Content-Type", "").startswith("application/json")
    return status, headers, json.loads(text) if is_json else text


# -- endpoints --------------------------------------------------------------------------------


def test_healthz_and_status(server: ApiServer) -> None:
    assert call(server, "GET", "/healthz")[::2] == (200, {"ok": True})
    status, _, body = call(server, "GET", "/status")
    assert status == 200 and body["run_id"] == "run-1" and body["counts"]["total"] == 1000


@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Bearer {TOKEN}"])
def test_healthz_answers_without_the_token_and_says_only_that_it_is_alive(
    server: ApiServer, ctl: FakeController, auth: str | None
) -> None:
    status, headers, body = call(server, "GET", "/healthz", token=None, auth=auth)
    assert (status, body) == (200, {"ok": True})  # no run id, no counts, no version: nothing else
    assert "WWW-Authenticate" not in headers
    assert call(server, "POST", "/healthz", token=None)[0] == 401  # only the GET is public
    assert call(server, "GET", "/healthz/x", token=None)[0] == 401  # exactly the path
    assert not ctl.paused


def test_job_found_and_unknown(server: ApiServer) -> None:
    assert call(server, "GET", "/jobs/job-1")[::2] == (200, {"id": "job-1", "status": "succeeded"})
    status, _, body = call(server, "GET", "/jobs/nope")
    assert status == 404 and "nope" in body["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"id": "a", "prompt": "hi"},
        [{"id": "a", "prompt": "hi"}, {"custom_id": "b", "params": {}}],
        {"jobs": [{"id": "a", "prompt": "hi"}, {"custom_id": "b", "params": {}}]},
    ],
)
def test_post_jobs_shapes(server: ApiServer, ctl: FakeController, body: Any) -> None:
    status, _, answer = call(server, "POST", "/jobs", body)
    expected = ["a"] if isinstance(body, dict) and "jobs" not in body else ["a", "b"]
    assert (status, answer) == (202, {"accepted": expected})
    assert all(job_id in ctl.jobs for job_id in expected)


def test_post_jobs_invalid_job_lists_problems(server: ApiServer, ctl: FakeController) -> None:
    status, _, body = call(server, "POST", "/jobs", [{"id": "ok", "prompt": "x"}, {"id": "bad"}])
    assert status == 400
    assert body["problems"] == ["POST /jobs:2: job 'bad': expected 'prompt' or 'messages'"]
    assert "ok" not in ctl.jobs


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "UTF-8"),
        (b"[]", "no jobs"),
        (b'{"jobs": []}', "no jobs"),
        (b'{"jobs": {}}', "must be a list"),
        (b'{"jobs": [], "x": 1}', "unexpected key"),
        (b'"hello"', "got str"),
        (b'[{"prompt": "x"}, 3]', "jobs[1] must be a job object"),
        pytest.param(b"[" * 100_000, "nested too deeply", id="deep"),
    ],
)
def test_post_jobs_bad_body(server: ApiServer, raw: bytes, reason: str) -> None:
    status, _, body = call(server, "POST", "/jobs", raw=raw)
    assert status == 400 and reason in body["error"], body


def test_scale(server: ApiServer, ctl: FakeController) -> None:
    assert call(server, "POST", "/scale", {"agents": 7})[::2] == (200, {"agents": 7})
    assert ctl.agents == 7


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({}, '{"agents": N}'),
        ([3], '{"agents": N}'),
        ({"agents": "5"}, "whole number"),
        ({"agents": 2.5}, "whole number"),
        ({"agents": True}, "whole number"),
        ({"agents": 5, "extra": 1}, "unexpected key"),
        ({"agents": 0}, "between 1 and 50"),
        ({"agents": 51}, "between 1 and 50"),
    ],
)
def test_scale_bad_input(server: ApiServer, ctl: FakeController, body: Any, reason: str) -> None:
    status, _, answer = call(server, "POST", "/scale", body)
    assert status == 400 and reason in answer["error"]
    assert ctl.agents == 10


def test_breakers(server: ApiServer, ctl: FakeController) -> None:
    status, _, body = call(server, "POST", "/breakers/claude-haiku-4-5/open")
    assert (status, body["state"]) == (200, "open")
    assert call(server, "POST", "/breakers/claude-haiku-4-5/close")[0] == 200
    assert ctl.breakers == {"claude-haiku-4-5": "closed"}
    assert call(server, "POST", "/breakers/claude-haiku-4-5/explode")[0] == 404


def test_pause_resume_drain(server: ApiServer, ctl: FakeController) -> None:
    assert call(server, "POST", "/pause")[::2] == (200, {"ok": True, "paused": True})
    assert ctl.paused and call(server, "GET", "/status")[2]["paused"] is True
    assert call(server, "POST", "/resume")[::2] == (200, {"ok": True, "paused": False})
    assert not ctl.paused
    assert call(server, "POST", "/drain")[::2] == (200, {"ok": True, "draining": True})
    assert ctl.drained


def test_unknown_path_and_wrong_method(server: ApiServer) -> None:
    status, _, body = call(server, "GET", "/nope")
    assert status == 404 and "no such endpoint" in body["error"]
    status, headers, body = call(server, "GET", "/pause")
    assert status == 405 and "POST" in headers["Allow"] and "not allowed" in body["error"]
    assert call(server, "POST", "/status")[0] == 405


def test_controller_failure_is_a_500_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    with ApiServer(Broken(), "127.0.0.1", 0, TOKEN).start() as srv:
        status, _, body = call(srv, "GET", "/status")
    assert status == 500 and body == {"error": "internal error (RuntimeError); see the run's log"}
    assert any("failed" in r.getMessage() for r in caplog.records)


# -- metrics ----------------------------------------------------------------------------------


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_prometheus_text(server: ApiServer) -> None:
    status, headers, text = call(server, "GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    s = _samples(text)
    jobs = {
        state: s[("anvil_jobs", (("state", state),))]
        for state in ("succeeded", "failed", "pending", "running")
    }
    assert jobs == {"succeeded": 593, "failed": 7, "pending": 380, "running": 20}
    assert s[("anvil_jobs_per_second", ())] == pytest.approx(10.0)
    assert s[("anvil_api_calls_total", ())] == 605
    assert s[("anvil_api_call_errors_total", (("type", "overloaded_error"),))] == 12
    assert s[("anvil_retries_total", (("type", "overloaded_error"),))] == 12
    assert s[("anvil_rate_limited_total", ())] == 0
    assert s[("anvil_job_failures_total", (("type", "invalid_request_error"),))] == 7
    assert s[("anvil_tokens_total", (("kind", "output"),))] == 600 * 120
    assert s[("anvil_cost_usd_total", ())] == pytest.approx(0.6)
    assert s[("anvil_agents_in_flight", ())] == s[("anvil_agents_limit", ())] == 20
    assert s[("anvil_workers_alive", ())] == 1 and s[("anvil_workers", ())] == 2
    assert s[("anvil_worker_restarts_total", ())] == 1
    assert s[("anvil_queue_depth", ())] == 350 and s[("anvil_paused", ())] == 0
    assert (
        s[("anvil_limiter_in_use_percent", (("dimension", "output_tokens"), ("pool", "default:haiku")))] == 75
    )
    assert s[("anvil_limiter_binding", (("dimension", "output_tokens"), ("pool", "default:haiku")))] == 1
    assert s[("anvil_breaker_state", (("model", SONNET), ("state", "open")))] == 1
    assert s[("anvil_breaker_state", (("model", SONNET), ("state", "closed")))] == 0
    assert s[("anvil_breaker_open", (("model", HAIKU),))] == 0
    assert s[("anvil_budget_max_usd", ())] == 5.0
    active = {labels[0][1]: v for (name, labels), v in s.items() if name == "anvil_alerts_active"}
    assert active == {"high": 1, "medium": 0, "low": 1}  # queue_depth; agent_utilisation
    assert s[("anvil_alert_active", (("name", "queue_depth"), ("severity", "high")))] == 1


def test_latency_is_a_histogram_per_model_for_calls_and_for_jobs(server: ApiServer) -> None:
    families = {f.name: f for f in text_string_to_metric_families(call(server, "GET", "/metrics")[2])}
    calls, jobs = families["anvil_call_latency_seconds"], families["anvil_job_duration_seconds"]
    assert calls.type == jobs.type == "histogram"
    buckets = {
        (x.labels["model"], float(x.labels["le"])): x.value
        for x in calls.samples
        if x.name.endswith("_bucket")
    }
    counts = {x.labels["model"]: x.value for x in calls.samples if x.name.endswith("_count")}
    for model in (HAIKU, SONNET):
        assert counts[model] == STATUS["call_latency_by_model_s"][model]["count"]
        ladder = [buckets[(model, b)] for b in (*PROM_BOUNDS_S, float("inf"))]
        assert ladder == sorted(ladder) and ladder[-1] == counts[model]
        assert buckets[(model, 0.1)] == 0 and buckets[(model, 1.0)] == counts[model]  # calls took 0.2-0.6 s
    job_buckets = {
        float(x.labels["le"]): x.value
        for x in jobs.samples
        if x.name.endswith("_bucket") and x.labels["model"] == HAIKU
    }
    haiku_jobs = STATUS["job_time_by_model_s"][HAIKU]["count"]
    assert (
        job_buckets[0.5] == 0 and 0 < job_buckets[2.5] < job_buckets[10.0] == haiku_jobs
    )  # jobs took 1-10 s


def test_metrics_before_the_first_snapshot_expose_only_the_run() -> None:
    from anvil_cli.views.api.prom import render

    s = _samples(render({"run_id": "r", "state": "starting"}).decode())
    assert s == {("anvil_run_info", (("run_id", "r"), ("state", "starting"))): 1}


# -- auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth", [None, "", f"Basic {TOKEN}", "Bearer wrong", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"]
)
@pytest.mark.parametrize(("method", "path"), [("GET", "/metrics"), ("GET", "/status"), ("POST", "/pause")])
def test_requests_without_the_token_are_refused(
    server: ApiServer, ctl: FakeController, auth: str | None, method: str, path: str
) -> None:
    status, headers, body = call(server, method, path, token=None, auth=auth)
    assert status == 401 and "bearer token" in body["error"]
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert not ctl.paused


def test_unknown_paths_need_the_token_too(server: ApiServer) -> None:
    assert call(server, "GET", "/nope", token=None)[0] == 401


def test_scheme_is_case_insensitive(server: ApiServer) -> None:
    assert call(server, "GET", "/status", auth=f"bearer {TOKEN}")[0] == 200


def test_port_in_use_is_a_usage_error(server: ApiServer) -> None:
    with pytest.raises(UsageError, match="cannot serve the API"):
        ApiServer(FakeController(), "127.0.0.1", server.port, TOKEN).start()


def test_ipv6_loopback() -> None:
    try:
        srv = ApiServer(FakeController(), "::1", 0, TOKEN).start()
    except UsageError:
        pytest.skip("no IPv6 loopback here")
    with srv:
        assert srv.url.startswith("http://[::1]:")
        assert call(srv, "GET", "/healthz")[0] == 200


def test_stop_is_bounded_and_idempotent_even_with_a_call_stuck() -> None:
    ctl = FakeController()
    ctl.gate = threading.Event()
    srv = ApiServer(ctl, "127.0.0.1", 0, TOKEN).start()
    errors: list[BaseException] = []

    def stuck_request() -> None:
        try:
            call(srv, "GET", "/status")
        except OSError as exc:  # the server went away under it: expected
            errors.append(exc)

    client = threading.Thread(target=stuck_request)
    client.start()
    try:
        assert ctl.entered.wait(60)
        srv.stop()
        assert not ctl.left.is_set()  # stop() returned while the call was still stuck
        srv.stop()
        with pytest.raises(OSError):
            NO_PROXY.open(srv.url + "/healthz", timeout=2)
    finally:
        ctl.gate.set()
        client.join(10)
    assert not client.is_alive()


def test_env_token_unused_by_default_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server never reads the environment itself: only the token it was given counts."""
    monkeypatch.setenv("ANVIL_API_TOKEN", "other-token-0123456789")
    with ApiServer(FakeController(), "127.0.0.1", 0, TOKEN).start() as srv:
        assert call(srv, "GET", "/status", token="other-token-0123456789")[0] == 401
        assert call(srv, "GET", "/status")[0] == 200
    assert os.environ["ANVIL_API_TOKEN"] == "other-token-0123456789"
