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

from anvil_cli.api.server import ApiServer
from anvil_cli.errors import InputError, Problem, UsageError

TOKEN = "test-token-0123456789abcdef"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

STATUS: dict[str, Any] = {
    "run_id": "run-1",
    "state": "running",
    "counts": {"total": 10, "succeeded": 6, "failed": 1, "pending": 2, "running": 1},
    "metrics": {
        "jobs_per_s": 1.5,
        "recent_jobs_per_s": 2.5,
        "recent_requests_per_min": 120.0,
        "latency_s": {"p50": 0.4, "p95": 0.9, "p99": None},
        "attempts": 9,
        "retries": 2,
        "rate_limited": 1,
        "errors_by_type": {"overloaded_error": 2},
        "tokens": {"input": 1000, "output": 500, "cache_read": 0, "cache_write": 0},
        "cost_usd": 0.0125,
    },
    "agents": {"in_flight": 1, "limit": 10, "min": 1, "max": 50},
    "queue_depth": 2,
    "paused": False,
    "workers": [
        {"id": 0, "pid": 1, "alive": True, "jobs": 1},
        {"id": 1, "pid": 2, "alive": False, "jobs": 0},
    ],
    "worker_restarts": 1,
    "governor": {
        "pools": {
            "default": {
                "dimensions": {
                    "requests": {
                        "capacity": 50,
                        "level": 42.5,
                        "rate_per_min": 1000,
                        "configured_per_min": 1000,
                        "reserved_in_flight": 1,
                    }
                },
                "paused_until_s": None,
            }
        },
        "breakers": {"claude-haiku-4-5": {"state": "open", "failures": 5, "retry_in_s": 3.0}},
        "budget": {"spent_usd": 0.0125, "reserved_usd": 0.001, "max_usd": None, "warn_usd": None},
    },
    "alerts": [{"name": "slow", "severity": "warning", "message": "p95 latency high"}],
}


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
    assert status == 200 and body["run_id"] == "run-1" and body["counts"]["total"] == 10


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
    assert s[("anvil_jobs", (("state", "succeeded"),))] == 6
    assert s[("anvil_jobs_per_second", ())] == 2.5
    assert s[("anvil_requests_per_minute", ())] == 120
    assert s[("anvil_latency_seconds", (("quantile", "0.95"),))] == 0.9
    assert ("anvil_latency_seconds", (("quantile", "0.99"),)) not in s  # None: left out
    assert s[("anvil_attempts_total", ())] == 9
    assert s[("anvil_errors_total", (("type", "overloaded_error"),))] == 2
    assert s[("anvil_tokens_total", (("kind", "output"),))] == 500
    assert s[("anvil_cost_usd_total", ())] == 0.0125
    assert s[("anvil_limiter_level", (("dimension", "requests"), ("pool", "default")))] == 42.5
    assert s[("anvil_breaker_open", (("model", "claude-haiku-4-5"), ("state", "open")))] == 1
    assert s[("anvil_alerts_active", (("severity", "warning"),))] == 1
    assert s[("anvil_alerts_active", (("severity", "critical"),))] == 0
    assert s[("anvil_paused", ())] == 0
    assert s[("anvil_workers_alive", ())] == 1
    assert s[("anvil_worker_restarts_total", ())] == 1
    assert ("anvil_budget_max_usd", ()) not in s


def test_metrics_tolerate_a_sparse_or_odd_status() -> None:
    from anvil_cli.api.prom import render

    text = render(
        {"run_id": "r", "counts": "?", "metrics": {"tokens": {"input": "x"}}, "alerts": None}
    ).decode()
    s = _samples(text)
    assert s[("anvil_run_info", (("run_id", "r"), ("state", "")))] == 1
    assert not any(name == "anvil_tokens_total" for name, _ in s)


# -- auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth", [None, "", f"Basic {TOKEN}", "Bearer wrong", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"]
)
@pytest.mark.parametrize(("method", "path"), [("GET", "/healthz"), ("GET", "/status"), ("POST", "/pause")])
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
    assert call(server, "GET", "/healthz", auth=f"bearer {TOKEN}")[0] == 200


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
        assert call(srv, "GET", "/healthz", token="other-token-0123456789")[0] == 401
        assert call(srv, "GET", "/healthz")[0] == 200
    assert os.environ["ANVIL_API_TOKEN"] == "other-token-0123456789"
