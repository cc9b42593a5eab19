"""A named endpoint that refuses the run's calls (401 authentication, 403 permission, a spend cap
reached: `Verdict.STOP_RUN`) is taken out of the run, not the run stopped: the governor opens
every breaker it has at once with the reason (policy/governor/pools.py), its jobs go to the
other endpoints, and it comes back only through a probe that succeeds after
`recovery_timeout_s`. Only when every endpoint serving a model has refused does the governor
deny the call, and the run stops as it does with one endpoint (exit 3). Without `endpoints:`
nothing changes.

The governor with a fake clock; then the worker's agent against the simulator's `/e/{name}`
endpoints (one refuses by a `@sim{status=401, for_model=...}` directive that matches only the
model id that endpoint's `models:` mapping sends); then whole runs."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.config.endpoint import Endpoint
from anvil_cli.engine.worker.agent import StopRun
from anvil_cli.engine.worker.broker import GovernorBroker
from anvil_cli.exitcodes import ExitCode
from anvil_cli.policy.governor import (
    BreakerPolicy,
    CallAsk,
    Deny,
    Governor,
    GovernorView,
    Grant,
    Granted,
    Limits,
    Outcome,
    Route,
    RouteTable,
    Wait,
)
from anvil_cli.sim import SimServer
from anvil_cli.sim.config import EndpointSim
from anvil_cli.snapshot.build import build_snapshot
from anvil_cli.snapshot.endpoints import endpoints_of
from anvil_cli.snapshot.history import describe_event, history_of
from anvil_cli.snapshot.metrics import RunMetrics
from anvil_cli.snapshot.state import EngineState
from tests.engine_support import journal_query, read_results, run_inprocess, write_config, write_jobs
from tests.governor_support import JumpingGovernor
from tests.sim_fixtures import SimFactory, fixture_sim_factory  # noqa: F401
from tests.test_worker_endpoints import HAIKU, KEY, jobs_in, run_job, settings_in

SONNET = "claude-sonnet-4-6"
POLICY = BreakerPolicy(failure_threshold=2, recovery_timeout_s=10.0, half_open_probes=1)
OK = Outcome(ok=True)
AUTH = Outcome(
    ok=False,
    status_code=401,
    refused=True,
    error="authentication_error",
    message="authentication_error (401): invalid x-api-key",
)
PERMISSION = Outcome(
    ok=False,
    status_code=403,
    refused=True,
    error="permission_error",
    message="permission_error (403): not allowed",
)
SPEND_CAP = Outcome(
    ok=False,
    status_code=429,
    refused=True,
    error="spend_limit",
    message="spend_limit (429): spend limit reached",
)


def _route(name: str, serves: Callable[[str], bool] = lambda _m: True) -> Route:
    limits = Limits(requests_per_minute=6_000, burst_size=100)
    return Route(name, lambda model: (f"default:{model.split('-')[1]}", limits) if serves(model) else None)


def _gov(*routes: Route) -> Governor:
    return Governor(RouteTable(tuple(routes)), POLICY, max_usd=None, warn_usd=None, now=0.0)


def _ask(gov: Governor, now: float, model: str = SONNET) -> Grant | Wait | Deny:
    return gov.acquire(model, 0, 0, 0.0, now=now)


def _grant(gov: Governor, now: float, model: str = SONNET) -> Grant:
    decision = _ask(gov, now, model)
    assert isinstance(decision, Grant), decision
    return decision


def _breaker_events(gov: Governor) -> list[dict[str, Any]]:
    return [dict(e.data, at=e.at) for e in gov.drain_events() if e.kind == "breaker"]


# --- the governor ---------------------------------------------------------------------------


def test_a_refusal_opens_every_breaker_of_its_endpoint_with_the_reason() -> None:
    gov = _gov(_route("a"), _route("b"))
    for model in (SONNET, HAIKU):  # a has a breaker for both models
        gov.settle(_grant(gov, 0.0, model).ticket, OK, now=0.0)
    refused = _grant(gov, 1.0)
    assert refused.endpoint == "a"
    gov.settle(refused.ticket, AUTH, now=1.0)

    view = gov.view(1.0)
    assert {k: (b.state, b.reason) for k, b in view.breakers.items()} == {
        f"a/{SONNET}": ("open", "authentication_error"),
        f"a/{HAIKU}": ("open", "authentication_error"),
        f"b/{SONNET}": ("closed", None),  # the other endpoint's are untouched
        f"b/{HAIKU}": ("closed", None),
    }
    assert view.breakers[f"a/{SONNET}"].retry_in_s == 10.0
    assert sorted((e["endpoint"], e["model"], e["state"], e["reason"]) for e in _breaker_events(gov)) == [
        ("a", HAIKU, "open", "authentication_error"),
        ("a", SONNET, "open", "authentication_error"),
    ]
    # its jobs go to the other endpoint, for every model
    assert [_grant(gov, 2.0, m).endpoint for m in (SONNET, HAIKU, SONNET)] == ["b", "b", "b"]
    # the view says which endpoint is out and why; the other's JSON is as it was
    endpoints = gov.view(2.0).to_dict()["endpoints"]
    assert endpoints["a"]["refused"] == {
        "reason": "authentication_error",
        "status_code": 401,
        "message": "authentication_error (401): invalid x-api-key",
    }
    assert "refused" not in endpoints["b"]
    breakers = gov.view(2.0).to_dict()["breakers"]
    assert breakers[f"a/{SONNET}"]["reason"] == "authentication_error"
    assert "reason" not in breakers[f"b/{SONNET}"]


def test_a_model_first_asked_after_the_refusal_finds_the_endpoint_out() -> None:
    gov = _gov(_route("a"), _route("b"))
    gov.settle(_grant(gov, 0.0).ticket, PERMISSION, now=0.0)
    assert _grant(gov, 3.0, HAIKU).endpoint == "b"  # a's Haiku breaker is made open, as of the refusal
    haiku = gov.view(3.0).breakers[f"a/{HAIKU}"]
    assert (haiku.state, haiku.reason, haiku.retry_in_s) == ("open", "permission_error", 7.0)


def test_the_endpoint_comes_back_only_through_its_probe() -> None:
    gov = _gov(_route("a"), _route("b"))
    gov.settle(_grant(gov, 0.0, HAIKU).ticket, OK, now=0.0)
    gov.settle(_grant(gov, 0.0).ticket, AUTH, now=0.0)
    assert all(_grant(gov, now).endpoint == "b" for now in (1.0, 5.0, 9.99))
    probe = _grant(gov, 10.0)  # the recovery timeout is over: a's probe goes first
    assert (probe.endpoint, probe.probe) == ("a", True)
    assert _grant(gov, 10.0).endpoint == "b"  # one probe at a time: the rest elsewhere
    _breaker_events(gov)
    gov.settle(probe.ticket, OK, now=10.5)

    view = gov.view(10.5)
    assert view.endpoints["a"].refused is None
    # back for every model: the breakers the refusal opened close with the probe
    assert {k: (b.state, b.reason) for k, b in view.breakers.items() if k.startswith("a/")} == {
        f"a/{SONNET}": ("closed", None),
        f"a/{HAIKU}": ("closed", None),
    }
    assert sorted((e["model"], e["state"]) for e in _breaker_events(gov)) == [
        (HAIKU, "closed"),
        (SONNET, "closed"),
    ]
    assert _grant(gov, 11.0, HAIKU).endpoint == "a"


def test_a_refused_probe_opens_it_again_for_another_timeout() -> None:
    gov = _gov(_route("a"), _route("b"))
    gov.settle(_grant(gov, 0.0).ticket, AUTH, now=0.0)
    probe = _grant(gov, 10.0)
    assert (probe.endpoint, probe.probe) == ("a", True)
    _breaker_events(gov)
    gov.settle(probe.ticket, AUTH, now=12.0)
    breaker = gov.view(12.0).breakers[f"a/{SONNET}"]
    assert (breaker.state, breaker.reason, breaker.retry_in_s) == ("open", "authentication_error", 10.0)
    assert [(e["state"], e["reason"], e["at"]) for e in _breaker_events(gov)] == [
        ("open", "authentication_error", 12.0)
    ]
    assert _grant(gov, 21.0).endpoint == "b"
    assert gov.view(21.0).endpoints["a"].refused is not None


def test_late_refusals_of_calls_in_flight_do_not_put_the_probe_off() -> None:
    gov = _gov(_route("a"), _route("b"))
    first, second = _grant(gov, 0.0), _grant(gov, 0.0)
    assert first.endpoint == second.endpoint == "a"
    gov.settle(first.ticket, AUTH, now=0.0)
    _breaker_events(gov)
    gov.settle(second.ticket, AUTH, now=4.0)  # was in flight: the same news
    assert _breaker_events(gov) == []
    assert gov.view(4.0).breakers[f"a/{SONNET}"].retry_in_s == 6.0


def test_when_every_endpoint_serving_the_model_refused_the_governor_denies_it() -> None:
    gov = _gov(_route("a"), _route("b"))
    gov.settle(_grant(gov, 0.0).ticket, AUTH, now=0.0)
    gov.settle(_grant(gov, 0.0).ticket, PERMISSION, now=1.0)
    for now in (1.0, 30.0):  # also once the probes are due: no waiting for them forever
        denied = _ask(gov, now)
        assert isinstance(denied, Deny)
        assert denied.reason == "permission_error"  # the last refusal's, as the run's stop reason
        assert "a: authentication_error, b: permission_error" in denied.message
        assert denied.message.endswith("last, b: permission_error (403): not allowed")
    granted = gov.acquire_many(SONNET, [CallAsk(0, 0, 0.0)] * 3, 2.0)
    assert granted == Granted([], denied)  # the broker hands every waiting call the Deny


def test_only_the_endpoints_serving_the_model_count() -> None:
    gov = _gov(_route("a"), _route("b", serves=lambda model: model == HAIKU))
    gov.settle(_grant(gov, 0.0).ticket, SPEND_CAP, now=0.0)  # a alone serves Sonnet
    assert isinstance(_ask(gov, 1.0), Deny)
    assert _grant(gov, 1.0, HAIKU).endpoint == "b"  # Haiku still has an endpoint


def test_an_endpoint_that_failed_without_refusing_is_waited_for_not_denied() -> None:
    gov = _gov(_route("a"), _route("b"))
    gov.settle(_grant(gov, 0.0).ticket, AUTH, now=0.0)
    failure = Outcome(ok=False, status_code=529, breaker_failure=True)
    for _ in range(2):
        gov.settle(_grant(gov, 0.0).ticket, failure, now=0.0)
    decision = _ask(gov, 1.0)
    assert isinstance(decision, Wait) and decision.reason == "breaker"  # b will probe


def test_an_operator_closing_a_refused_endpoint_s_breaker_lets_it_in_again() -> None:
    gov = _gov(_route("a"), _route("b"))
    gov.settle(_grant(gov, 0.0).ticket, AUTH, now=0.0)
    gov.settle(_grant(gov, 0.0).ticket, AUTH, now=0.0)
    assert isinstance(_ask(gov, 1.0), Deny)
    gov.set_breaker(f"a/{SONNET}", "closed", now=1.0)  # `anvil breaker` / POST /breaker
    assert gov.view(1.0).endpoints["a"].refused is None
    assert _grant(gov, 1.0).endpoint == "a"


def test_a_spend_cap_s_429_is_not_a_rate_limit() -> None:
    gov = _gov(_route("a"), _route("b"))
    gov.settle(_grant(gov, 0.0).ticket, SPEND_CAP, now=0.0)
    assert gov.paused_pools(0.0) == []
    assert [e.kind for e in gov.drain_events()] == ["breaker"]


def test_on_the_run_s_only_endpoint_a_refusal_changes_nothing() -> None:
    """Without `endpoints:` the worker stops the run itself, as before endpoints."""
    limits = Limits(requests_per_minute=6_000, burst_size=100)
    gov = Governor(lambda _m: ("default:sonnet", limits), POLICY, max_usd=None, warn_usd=None, now=0.0)
    grant = _grant(gov, 0.0)
    assert grant.endpoint == ""
    gov.settle(grant.ticket, AUTH, now=0.0)
    view = gov.view(0.0)
    assert view.breakers[SONNET].state == "closed" and view.endpoints == {}
    assert "reason" not in view.to_dict()["breakers"][SONNET]
    assert isinstance(_ask(gov, 0.0), Grant)


def test_the_snapshot_says_which_endpoint_is_out_and_why() -> None:
    gov = _gov(_route("a"), _route("b"))
    gov.settle(_grant(gov, 0.0).ticket, AUTH, now=0.0)
    _grant(gov, 1.0)
    state = EngineState(
        run_id="r", mode="messages", phase="running", paused=False, in_flight=0,
        agent_limit=1, agent_min=1, agent_max=4, queue_depth=0, governor=gov.view(1.0),
    )  # fmt: skip
    snap = build_snapshot(
        state, RunMetrics(total=1, started_at=0.0), batch_path="b", started_wall=0.0, now=1.0
    )
    assert snap["breakers"][f"a/{SONNET}"]["reason"] == "authentication_error"
    assert "reason" not in snap["breakers"][f"b/{SONNET}"]
    assert snap["governor"]["endpoints"]["a"]["refused"]["reason"] == "authentication_error"
    endpoints = endpoints_of({}, snap["limits"], snap["breakers"])
    assert endpoints["a"]["open_breakers"] == 1
    assert endpoints["a"]["breakers"][SONNET] == {
        "state": "open",
        "failures": 0,
        "retry_in_s": 9.0,
        "reason": "authentication_error",
    }


def test_the_breaker_history_names_the_endpoint_and_the_refusal() -> None:
    """As the journal keeps the governor's events and `anvil status`, the dashboard and alerts
    say them."""
    gov = _gov(_route("a"), _route("b"))
    gov.settle(_grant(gov, 0.0).ticket, AUTH, now=0.0)
    raws = [{"at": 1.0, "kind": e.kind, **e.data} for e in gov.drain_events()]
    (event,) = history_of(raws)
    assert describe_event(event) == f"breaker a/{SONNET} open (authentication_error)"
    plain = history_of([{"at": 1.0, "kind": "breaker", "model": SONNET, "state": "open", "failures": 5}])
    assert describe_event(plain[0]) == f"breaker {SONNET} open (5 failures)"  # as it always was


# --- the worker's agent against the simulator -------------------------------------------------


def table_governor(*names: str) -> JumpingGovernor:
    """The real Governor over routes `names` as the worker's GovernorClient; its clock moves a
    millisecond per round trip (no recovery timeout passes). Keeps what it saw."""
    gov = Governor(RouteTable(tuple(_route(n) for n in names)), POLICY, max_usd=None, warn_usd=None, now=0.0)
    return JumpingGovernor(gov=gov, step_s=0.001)


def _two_endpoints(sim_factory: SimFactory) -> tuple[SimServer, list[Endpoint]]:
    """One simulator serving endpoints a and b; a sends its own id for Haiku (`models:`)."""
    sim = sim_factory(endpoints={"a": EndpointSim(), "b": EndpointSim()})

    def at(name: str, **more: Any) -> Endpoint:
        return Endpoint(
            sim.endpoint_url(name), "endpoints", name=name, provider="anthropic", api_key=KEY, **more
        )

    return sim, [at("a", models=((HAIKU, f"{HAIKU}-at-a"),)), at("b")]


def test_a_job_refused_on_one_endpoint_succeeds_on_the_other(sim_factory: SimFactory, tmp_path: Path) -> None:
    sim, endpoints = _two_endpoints(sim_factory)
    # one try only: the refusal does not spend it
    settings = settings_in(tmp_path, retries={"max_attempts": 1})
    (job,) = jobs_in(tmp_path, {"id": "j", "prompt": f"@sim{{status=401, for_model={HAIKU}-at-a}} hello"})
    governor = table_governor("a", "b")
    ran = run_job(job, endpoints, governor, settings)  # type: ignore[arg-type]

    assert ran.result.succeeded and ran.result.endpoint == "b" and ran.result.attempts == 2
    refused, answered = ran.result.attempt_log
    assert (refused.status_code, refused.error_type, refused.endpoint) == (401, "authentication_error", "a")
    assert (answered.status_code, answered.endpoint) == (200, "b")
    assert ran.attempts == list(ran.result.attempt_log)  # the conductor heard of the 401 too
    stats = sim.stats()["endpoints"]
    assert (stats["a"]["by_status"], stats["b"]["successes"]) == ({"401": 1}, 1)
    # the agent told the governor: a is out, with the reason, for every model
    assert [(o.refused, o.error) for o in governor.outcomes] == [
        (True, "authentication_error"),
        (False, None),
    ]
    assert {
        "endpoint": "a",
        "model": HAIKU,
        "state": "open",
        "failures": 0,
        "reason": "authentication_error",
    } in (governor.events)
    assert governor.view().endpoints["a"].refused is not None


def test_a_job_refused_everywhere_stops_the_run(sim_factory: SimFactory, tmp_path: Path) -> None:
    _, endpoints = _two_endpoints(sim_factory)
    (job,) = jobs_in(tmp_path, {"id": "j", "prompt": "@sim{status=401} hello"})
    governor = table_governor("a", "b")
    with pytest.raises(StopRun) as stopped:
        run_job(job, endpoints, governor, settings_in(tmp_path))  # type: ignore[arg-type]
    assert stopped.value.reason == "authentication_error"
    assert "every endpoint that serves claude-haiku-4-5 refused" in stopped.value.message
    assert "a: authentication_error, b: authentication_error" in stopped.value.message
    assert stopped.value.attempts == 2  # one call on each, then the governor denied the third


def test_with_one_named_endpoint_a_refusal_stops_the_run(sim_factory: SimFactory, tmp_path: Path) -> None:
    _, endpoints = _two_endpoints(sim_factory)
    (job,) = jobs_in(tmp_path, {"id": "j", "prompt": "@sim{status=403} hello"})
    with pytest.raises(StopRun) as stopped:
        run_job(job, endpoints[1:], table_governor("b"), settings_in(tmp_path))  # type: ignore[arg-type]
    assert (stopped.value.reason, stopped.value.attempts) == ("permission_error", 1)


class GatedGovernor:
    """A GovernorClient that holds its first settling round until let go, and logs the order of
    what the broker sends it."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()

    def settle_many(self, settled: list[tuple[int, Outcome]], released: list[int]) -> list[str]:
        self.log.append(("settle", [ticket for ticket, _ in settled]))
        if not self.entered.is_set():
            self.entered.set()
            self.gate.wait(10)  # a hang guard only
        return []

    def acquire_many(self, model: str, asks: list[CallAsk], priority: int, owner: int) -> Granted:
        self.log.append(("acquire", len(asks)))
        return Granted([Grant(3, model, "b/default:sonnet", 0, 0, 0.0, False, "b")], None)

    def view(self) -> GovernorView:
        return GovernorView()


def test_a_call_asked_again_after_a_refusal_is_asked_after_the_refusal_is_settled() -> None:
    """The broker settles every outcome queued before an ask ahead of that ask: the governor
    that answers it already took the refused endpoint out."""
    gov = GatedGovernor()

    async def main() -> Grant | Wait | Deny:
        loop = asyncio.get_running_loop()
        broker = GovernorBroker(gov, 0, loop).start()  # type: ignore[arg-type]
        try:
            broker.settle(1, OK)
            assert await loop.run_in_executor(None, gov.entered.wait, 10)  # the round is under way
            broker.settle(2, AUTH)  # the agent's refusal ...
            asked = asyncio.ensure_future(broker.acquire(SONNET, CallAsk(0, 0, 0.0), 2))  # ... and its ask
            await asyncio.sleep(0)
            gov.gate.set()
            return await asyncio.wait_for(asked, 10)
        finally:
            broker.close()

    assert isinstance(asyncio.run(main()), Grant)
    assert gov.log[:3] == [("settle", [1]), ("settle", [2]), ("acquire", 1)]


# --- whole runs -------------------------------------------------------------------------------


def _endpoints_run(
    tmp_path: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch, jobs: list[dict[str, Any]]
) -> tuple[Any, dict[str, dict[str, Any]]]:
    monkeypatch.setenv("ANVIL_TEST_KEY_A", "key-of-a")
    monkeypatch.setenv("ANVIL_TEST_KEY_B", "key-of-b")
    limits = {"default": {"requests_per_minute": 60_000, "burst_size": 1_000}}
    endpoints = [
        {
            "name": "a",
            "provider": "anthropic",
            "api_key_env": "ANVIL_TEST_KEY_A",
            "base_url": sim.endpoint_url("a"),
            "models": {HAIKU: f"{HAIKU}-at-a"},
            "rate_limits": limits,
        },
        {
            "name": "b",
            "provider": "anthropic",
            "api_key_env": "ANVIL_TEST_KEY_B",
            "base_url": sim.endpoint_url("b"),
            "rate_limits": limits,
        },
    ]
    config = write_config(tmp_path / "anvil.yaml", sim.base_url, endpoints=endpoints)
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    out = tmp_path / "out.jsonl"
    report = run_inprocess(config, batch, out)
    return report, {r["id"]: r for r in read_results(out)}


def test_a_run_whose_one_endpoint_refuses_finishes_on_the_other(
    sim_factory: SimFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = sim_factory(endpoints={"a": EndpointSim(), "b": EndpointSim()})
    refuse_at_a = f"@sim{{status=401, for_model={HAIKU}-at-a}}"
    jobs = [{"id": f"j{i}", "prompt": f"{refuse_at_a} job {i}"} for i in range(12)]
    report, results = _endpoints_run(tmp_path, sim, monkeypatch, jobs)

    assert report.exit_code == ExitCode.OK, report.message
    assert all(r["status"] == "succeeded" and r["endpoint"] == "b" for r in results.values())
    stats = sim.stats()["endpoints"]
    assert stats["a"]["successes"] == 0 and stats["a"]["by_status"]["401"] >= 1
    assert stats["b"]["successes"] == 12
    state_dir = tmp_path / ".anvil"
    attempts = [
        a for (raw,) in journal_query(state_dir, "SELECT attempts_json FROM jobs") for a in json.loads(raw)
    ]
    refused = [a for a in attempts if a["status_code"] == 401]
    assert refused and all((a["endpoint"], a["error_type"]) == ("a", "authentication_error") for a in refused)
    events = [
        json.loads(raw)
        for (raw,) in journal_query(state_dir, "SELECT data_json FROM events WHERE kind = 'breaker'")
    ]
    assert {
        "endpoint": "a",
        "model": HAIKU,
        "state": "open",
        "failures": 0,
        "reason": "authentication_error",
    } in events


def test_a_run_refused_by_every_endpoint_stops_with_exit_3(
    sim_factory: SimFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = sim_factory(endpoints={"a": EndpointSim(), "b": EndpointSim()})
    jobs = [{"id": f"j{i}", "prompt": f"@sim{{status=401}} job {i}"} for i in range(12)]
    report, results = _endpoints_run(tmp_path, sim, monkeypatch, jobs)

    assert report.exit_code == ExitCode.STOPPED
    assert "every endpoint that serves claude-haiku-4-5 refused" in (report.message or "")
    assert all(r["status"] == "pending" for r in results.values())  # resumable, not failed
    assert sim.stats()["requests"] <= 2 * 20  # stopped fast: no one waits for a probe
