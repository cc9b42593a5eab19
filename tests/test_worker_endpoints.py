"""An agent sends each granted call where the grant says (anvil_cli/engine/worker/agent.py): through
that endpoint's real SDK client, over real HTTP to a simulator on 127.0.0.1, with the id that
provider knows the model by; attempts, spend and results name the endpoint and keep Anvil's model
id; a provider's throttling is retried as a rate limit; asks carry the digest of the cached
prompt prefix; every endpoint's secrets are redacted.

The governor behind the worker's broker is the real policy; its grants name the endpoint, as the
governor does once it routes calls across endpoints."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.config.endpoint import Endpoint
from anvil_cli.config.load import load_settings
from anvil_cli.config.settings import Settings
from anvil_cli.engine.attempts import Attempt
from anvil_cli.engine.backends.local import LocalBackend
from anvil_cli.engine.events import CallSettled, RunJob, WorkerReady
from anvil_cli.engine.governor_host.manager import start_governor
from anvil_cli.engine.outcomes import JobResult
from anvil_cli.engine.process.forkserver import worker_context
from anvil_cli.engine.requests import prepare_request
from anvil_cli.engine.worker.agent import Agent, AgentContext
from anvil_cli.engine.worker.broker import GovernorBroker
from anvil_cli.engine.worker.clients import make_clients
from anvil_cli.engine.worker.config import WorkerConfig
from anvil_cli.engine.worker.conversation import Conversation
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.loader import load_batch
from anvil_cli.policy.governor import (
    BreakerView,
)
from anvil_cli.policy.governor.view import endpoint_key
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.sim import SimServer
from tests.backend_contract import Gathered, contract_settings, journal_rows
from tests.governor_support import JumpingGovernor
from tests.sim_fixtures import SimFactory, fixture_sim_factory  # noqa: F401

HAIKU = "claude-haiku-4-5"
SONNET = "claude-sonnet-4-6"
KEY = "sk-endpoint-a-key"
ACCESS_KEY = "AKIAENDPOINTKEYID001"
SECRET_KEY = "endpoint/b/secret/key"
SESSION_TOKEN = "endpoint-b-session-token"
TOKEN = "ya29.endpoint-v-token"
LONG_SYSTEM = "You review pull requests for a storage engine. " * 4  # over prompt_caching_min_chars


@dataclass
class Ran:
    result: JobResult
    attempts: list[Attempt]  # as the conductor hears of them (on_attempt)
    spent: list[tuple[int, float, str]]  # (seq, USD, endpoint) as settled (on_spend -> CallSettled)


def settings_in(tmp_path: Path, **extra: Any) -> Settings:
    path = tmp_path / "anvil.yaml"
    file = {
        "state_dir": str(tmp_path / ".anvil"),
        "retries": {"max_attempts": 3, "backoff_base_s": 0.001, "backoff_max_s": 0.001},
        "cache": {"enabled": False, "prompt_caching_min_chars": 100},
        **extra,
    }
    path.write_text(json.dumps(file))
    return load_settings(path, env={})


def jobs_in(tmp_path: Path, *jobs: dict[str, Any]) -> list[Job]:
    path = tmp_path / "batch.yaml"
    path.write_text(json.dumps({"defaults": {"model": HAIKU, "max_tokens": 64}, "jobs": list(jobs)}))
    return list(load_batch(path))


def run_job(job: Job, endpoints: list[Endpoint], governor: JumpingGovernor, settings: Settings) -> Ran:
    """`job` run by one agent of a worker holding a client per endpoint."""

    async def main() -> Ran:
        broker = GovernorBroker(governor, 0, asyncio.get_running_loop()).start()  # type: ignore[arg-type]
        pricer = Pricer.from_settings(settings)
        clients = make_clients(endpoints, 10.0, 4, pricer)
        attempts: list[Attempt] = []
        spent: list[tuple[int, float, str]] = []
        agent = Agent(
            AgentContext(
                clients=clients,
                governor=broker,
                settings=settings,
                pricer=pricer,
                stopping=asyncio.Event(),
                on_attempt=lambda _seq, attempt: attempts.append(attempt),
                on_spend=lambda seq, usd, endpoint: spent.append((seq, usd, endpoint)),
            )
        )
        try:
            return Ran(await agent.run(job), attempts, spent)
        finally:
            broker.close()
            for each in clients.values():
                await each.client.close()

    return asyncio.run(asyncio.wait_for(main(), timeout=60))  # a hang guard only


def anthropic_at(sim: SimServer, name: str = "a") -> Endpoint:
    return Endpoint(sim.base_url, "endpoints", name=name, provider="anthropic", api_key=KEY)


def bedrock_at(sim: SimServer, name: str = "b", **more: Any) -> Endpoint:
    credentials = (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)
    return Endpoint(
        sim.base_url,
        "endpoints",
        name=name,
        provider="bedrock",
        region="us-east-1",
        aws_credentials=credentials,
        **more,
    )


def vertex_at(sim: SimServer) -> Endpoint:
    return Endpoint(
        sim.base_url,
        "endpoints",
        name="v",
        provider="vertex",
        region="us-east5",
        project_id="p",
        auth_token=TOKEN,
    )


def test_a_call_goes_to_the_endpoint_its_grant_names(sim_factory: SimFactory, tmp_path: Path) -> None:
    sim_a, sim_b = sim_factory(), sim_factory()
    settings = settings_in(tmp_path)
    (job,) = jobs_in(tmp_path, {"id": "j", "prompt": "hello"})
    bedrock = bedrock_at(sim_b)
    ran = run_job(job, [anthropic_at(sim_a), bedrock], JumpingGovernor("b"), settings)

    assert ran.result.succeeded and ran.result.endpoint == "b" and ran.result.model == HAIKU
    assert sim_a.stats()["requests"] == 0
    # Bedrock's id of the model was sent (the simulator refuses the Anthropic API's id on this route)
    assert sim_b.stats()["by_model"][HAIKU]["successes"] == 1
    assert [(a.status_code, a.endpoint, a.model) for a in ran.result.attempt_log] == [(200, "b", HAIKU)]
    assert ran.attempts == list(ran.result.attempt_log)
    assert ran.result.attempt_log[0].to_json()["endpoint"] == "b"
    usage = ran.result.usage
    assert usage is not None
    assert ran.spent == [(job.seq, ran.result.cost_usd, "b")]
    # paid at Bedrock's price in its region (data/prices.yaml: the regional premium)
    list_price = Pricer.from_settings(settings).cost_usd(HAIKU, usage.to_json())
    paid = Pricer.from_settings(settings).for_endpoint(bedrock).cost_usd(HAIKU, usage.to_json())
    assert ran.result.cost_usd == paid > list_price > 0


def test_the_endpoint_s_own_mapping_names_the_model_sent(sim_factory: SimFactory, tmp_path: Path) -> None:
    """`models:` wins over the catalog: here it sends Sonnet 4.5's profile for Anvil's Haiku, which
    the simulator answers as Sonnet 4.5; what Anvil records is still the job's model."""
    sim_b = sim_factory()
    profile = "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"
    endpoint = bedrock_at(sim_b, models=((HAIKU, profile),))
    (job,) = jobs_in(tmp_path, {"id": "j", "prompt": "hello"})
    ran = run_job(job, [endpoint], JumpingGovernor("b"), settings_in(tmp_path))
    assert ran.result.succeeded and ran.result.model == HAIKU
    assert list(sim_b.stats()["by_model"]) == ["claude-sonnet-4-5"]


def test_the_run_s_only_endpoint_is_named_nowhere(sim_factory: SimFactory, tmp_path: Path) -> None:
    """Without `endpoints:`, attempts, results and spend are what they were before endpoints."""
    sim = sim_factory()
    (job,) = jobs_in(tmp_path, {"id": "j", "prompt": "hello"})
    ran = run_job(job, [anthropic_at(sim, name="")], JumpingGovernor(""), settings_in(tmp_path))
    assert ran.result.succeeded and ran.result.endpoint is None
    assert [a.endpoint for a in ran.result.attempt_log] == [None]
    assert "endpoint" not in ran.result.attempt_log[0].to_json()
    assert [endpoint for _, _, endpoint in ran.spent] == [""]


def test_a_grant_without_an_endpoint_goes_to_the_first(sim_factory: SimFactory, tmp_path: Path) -> None:
    sim_a, sim_b = sim_factory(), sim_factory()
    (job,) = jobs_in(tmp_path, {"id": "j", "prompt": "hello"})
    ran = run_job(job, [anthropic_at(sim_a), bedrock_at(sim_b)], JumpingGovernor(""), settings_in(tmp_path))
    assert ran.result.endpoint == "a" and sim_a.stats()["successes"] == 1 and sim_b.stats()["requests"] == 0


@pytest.mark.parametrize(
    ("at", "error_type"), [(bedrock_at, "ThrottlingException"), (vertex_at, "RESOURCE_EXHAUSTED")]
)
def test_a_provider_s_throttling_is_retried_as_a_rate_limit(
    sim_factory: SimFactory, tmp_path: Path, at: Any, error_type: str
) -> None:
    sim = sim_factory()
    endpoint: Endpoint = at(sim)
    governor = JumpingGovernor(endpoint.name)
    (job,) = jobs_in(tmp_path, {"id": "j", "prompt": "@sim{fail=429x1} hello"})
    ran = run_job(job, [endpoint], governor, settings_in(tmp_path))

    assert ran.result.succeeded and ran.result.attempts == 2
    first, second = ran.result.attempt_log
    assert (first.status_code, first.error_type, first.endpoint) == (429, error_type, endpoint.name)
    assert (second.status_code, second.endpoint) == (200, endpoint.name)
    throttled, ok = governor.outcomes
    assert throttled.status_code == 429 and not throttled.ok and not throttled.breaker_failure  # a rate limit
    assert ok.ok
    assert [(seq, endpoint_name) for seq, _, endpoint_name in ran.spent] == [(job.seq, endpoint.name)]


def test_a_bedrock_stream_s_error_frame_is_retried(sim_factory: SimFactory, tmp_path: Path) -> None:
    sim = sim_factory()
    governor = JumpingGovernor("b")
    # max_tokens above what the SDK lets a non-streaming call ask for: the agent streams
    (job,) = jobs_in(tmp_path, {"id": "j", "prompt": "@sim{stream_error=1} hello", "max_tokens": 30_000})
    ran = run_job(job, [bedrock_at(sim)], governor, settings_in(tmp_path))

    assert ran.result.succeeded and sim.stats()["stream_errors"] == 1
    first, second = ran.result.attempt_log
    assert (first.status_code, first.error_type, first.endpoint) == (200, "modelStreamErrorException", "b")
    assert second.status_code == 200 and second.error_type is None
    assert governor.outcomes[0].breaker_failure  # a failing stream counts against the breaker


def test_asks_carry_the_digest_of_the_cached_prefix(sim_factory: SimFactory, tmp_path: Path) -> None:
    sim = sim_factory()
    settings = settings_in(tmp_path)
    cached, plain = jobs_in(
        tmp_path,
        {"id": "c", "prompt": "first", "system": LONG_SYSTEM},
        {"id": "p", "prompt": "second", "system": "Be brief."},
    )
    governor = JumpingGovernor("a")
    for job in (cached, plain):
        assert run_job(job, [anthropic_at(sim)], governor, settings).result.succeeded
    expected = prepare_request(cached, settings).affinity
    assert expected is not None
    assert [ask.affinity for ask in governor.asks] == [expected, None]


def _digest(tmp_path: Path, settings: Settings, **job: Any) -> str | None:
    (loaded,) = jobs_in(tmp_path, {"id": "j", **job})
    return prepare_request(loaded, settings).affinity


def test_the_digest_is_shared_by_requests_sharing_a_cached_prefix(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    one = _digest(tmp_path, settings, prompt="review PR 1", system=LONG_SYSTEM)
    assert one is not None
    assert _digest(tmp_path, settings, prompt="review PR 2", system=LONG_SYSTEM) == one
    assert _digest(tmp_path, settings, prompt="review PR 1", system=LONG_SYSTEM + "Be strict.") != one
    assert _digest(tmp_path, settings, prompt="review PR 1", system=LONG_SYSTEM, model=SONNET) != one
    assert _digest(tmp_path, settings, prompt="review PR 1", system="Be brief.") is None  # too short to cache
    off = settings_in(tmp_path, cache={"enabled": False, "prompt_caching": False})
    assert _digest(tmp_path, off, prompt="review PR 1", system=LONG_SYSTEM) is None


def test_the_digest_ends_at_the_user_s_last_breakpoint(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)

    def conversation(document: str, question: str) -> list[dict[str, Any]]:
        block = {"type": "text", "text": document, "cache_control": {"type": "ephemeral"}}
        return [{"role": "user", "content": [block, {"type": "text", "text": question}]}]

    one = _digest(tmp_path, settings, messages=conversation("the document", "question 1"))
    assert one is not None
    assert _digest(tmp_path, settings, messages=conversation("the document", "question 2")) == one
    assert _digest(tmp_path, settings, messages=conversation("another document", "question 1")) != one


def test_every_endpoint_s_secrets_are_redacted(sim_factory: SimFactory, tmp_path: Path) -> None:
    sim = sim_factory()
    settings = settings_in(tmp_path)
    endpoints = [anthropic_at(sim), bedrock_at(sim), vertex_at(sim)]

    async def main() -> str:
        pricer = Pricer.from_settings(settings)
        clients = make_clients(endpoints, 10.0, 1, pricer)
        try:
            ctx = AgentContext(
                clients=clients, governor=None, settings=settings, pricer=pricer, stopping=asyncio.Event()
            )  # type: ignore[arg-type]
            return Agent(ctx).redact(f"a={KEY} b={SECRET_KEY} s={SESSION_TOKEN} v={TOKEN} id={ACCESS_KEY}")
        finally:
            for each in clients.values():
                await each.client.close()

    shown = asyncio.run(main())
    assert (
        shown == f"a=[redacted] b=[redacted] s=[redacted] v=[redacted] id={ACCESS_KEY}"
    )  # a key id is no secret


class _Breakers:
    def __init__(self, breakers: dict[str, BreakerView]) -> None:
        self._breakers = breakers

    def breakers(self) -> dict[str, BreakerView]:
        return self._breakers


@pytest.mark.parametrize(("open_on", "switched"), [([], True), (["b"], True), (["a", "b"], False)])
def test_a_fallback_is_taken_while_some_endpoint_serves_it(
    sim_factory: SimFactory, tmp_path: Path, open_on: list[str], switched: bool
) -> None:
    """Breakers are per endpoint and model ("a/claude-haiku-4-5"): a fallback model is refused
    only while its breaker is open on every endpoint."""
    settings = settings_in(tmp_path, routing={"fallbacks": {SONNET: [HAIKU]}})
    (job,) = jobs_in(tmp_path, {"id": "j", "prompt": "hello", "model": SONNET, "system": LONG_SYSTEM})
    state = {"closed": BreakerView("closed", 0, None, 0), "open": BreakerView("open", 5, 30.0, 0)}
    breakers = {
        endpoint_key(e, m): state["open" if e in open_on and m == HAIKU else "closed"]
        for e in "ab"
        for m in (SONNET, HAIKU)
    }
    sim = sim_factory()

    async def main() -> tuple[bool, str, str | None]:
        pricer = Pricer.from_settings(settings)
        clients = make_clients([anthropic_at(sim), bedrock_at(sim)], 10.0, 1, pricer)
        try:
            ctx = AgentContext(
                clients=clients,
                governor=_Breakers(breakers),
                settings=settings,
                pricer=pricer,
                stopping=asyncio.Event(),
            )  # type: ignore[arg-type]
            agent = Agent(ctx)
            request = prepare_request(job, settings)
            st = Conversation(
                job=job, model=request.model, request=request.params, est_input=1, affinity=request.affinity
            )
            return agent._switch_to_fallback(st), st.model, st.affinity
        finally:
            for each in clients.values():
                await each.client.close()

    took, model, affinity = asyncio.run(main())
    assert (took, model) == ((True, HAIKU) if switched else (False, SONNET))
    before = prepare_request(job, settings).affinity
    assert (affinity != before) is switched  # another model's cache is another prefix


def test_a_worker_process_reports_the_endpoint_it_called(sim_factory: SimFactory, tmp_path: Path) -> None:
    """A local worker process given two endpoints (over its pipe, credentials included): its
    events name the endpoint paid and the result names it too; it reports the first's host."""
    sim_a, sim_b = sim_factory(), sim_factory()
    settings = contract_settings(tmp_path, sim_a.base_url)
    run_id, rows = journal_rows(settings, tmp_path)
    endpoints = (bedrock_at(sim_a, name="a"), vertex_at(sim_b))
    ctx = worker_context()
    manager, governor = start_governor(settings, ctx)
    settings_json = settings.model_dump_json()
    backend = LocalBackend(
        ctx, lambda wid: WorkerConfig(wid, settings_json, endpoints, 4, os.getpid(), run_id), governor
    )
    try:
        (wid,) = backend.start(1)
        seen = Gathered(backend)
        seen.until(lambda: wid in seen.ready())
        row = rows[0]
        assert backend.send(wid, RunJob(row))
        seen.until(lambda: bool(seen.done()))
    finally:
        backend.kill()
        manager.shutdown()
    (ready,) = [e for e in seen.events if isinstance(e, WorkerReady)]
    assert ready.api_host == endpoints[0].host
    (done,) = seen.done()
    assert done.result.succeeded and done.result.endpoint == "a"  # the governor's grant named none: the first
    paid = [e for e in seen.events if isinstance(e, CallSettled)]
    assert [(e.seq, e.endpoint) for e in paid] == [(row.seq, "a")] and paid[
        0
    ].cost_usd == done.result.cost_usd
    assert sim_a.stats()["successes"] == 1 and sim_b.stats()["requests"] == 0


def test_bedrock_s_overload_counts_toward_the_fallback(sim_factory: SimFactory, tmp_path: Path) -> None:
    """Bedrock answers an overloaded model with 503 ServiceUnavailableException, not 529: it
    counts as an overload all the same, and the job moves to its fallback model."""
    sim = sim_factory()
    settings = settings_in(tmp_path, routing={"fallbacks": {SONNET: [HAIKU]}, "fallback_after_529": 1})
    prompt = f"@sim{{for_model={SONNET},status=529}} hello"
    (job,) = jobs_in(tmp_path, {"id": "j", "prompt": prompt, "model": SONNET})
    ran = run_job(job, [bedrock_at(sim)], JumpingGovernor("b"), settings)

    assert ran.result.succeeded and ran.result.model == HAIKU
    first, second = ran.result.attempt_log
    assert (first.model, first.status_code, first.error_type) == (SONNET, 503, "ServiceUnavailableException")
    assert (second.model, second.status_code, second.endpoint) == (HAIKU, 200, "b")


@dataclass(frozen=True)
class _RegionalPricer(Pricer):
    """A Pricer with per-provider prices (`at`, as the pricing table is getting): Bedrock's
    Haiku at ten times the price."""

    def at(self, provider: str, region: str | None) -> Pricer:
        if provider != "bedrock":
            return self
        return Pricer.from_overrides({HAIKU: {"input": 10.0, "output": 50.0}})


def test_a_call_is_paid_at_its_endpoint_s_prices(sim_factory: SimFactory, tmp_path: Path) -> None:
    sim_a, sim_b = sim_factory(), sim_factory()
    settings = settings_in(tmp_path)
    (job,) = jobs_in(tmp_path, {"id": "j", "prompt": "hello"})
    base = _RegionalPricer(table=Pricer.from_settings(settings).table)
    costs = {}
    for name in ("a", "b"):

        async def main(name: str = name) -> JobResult:
            broker = GovernorBroker(JumpingGovernor(name), 0, asyncio.get_running_loop()).start()  # type: ignore[arg-type]
            clients = make_clients([anthropic_at(sim_a), bedrock_at(sim_b)], 10.0, 2, base)
            ctx = AgentContext(
                clients=clients, governor=broker, settings=settings, pricer=base, stopping=asyncio.Event()
            )
            try:
                return await Agent(ctx).run(job)
            finally:
                broker.close()
                for each in clients.values():
                    await each.client.close()

        result = asyncio.run(asyncio.wait_for(main(), timeout=60))
        assert result.usage is not None and result.endpoint == name
        costs[name] = (
            result.cost_usd,
            base.at("bedrock" if name == "b" else "anthropic", None).cost_usd(HAIKU, result.usage.to_json()),
        )
    assert costs["a"][0] == costs["a"][1] and costs["b"][0] == costs["b"][1]
    assert costs["b"][0] > costs["a"][0] * 5  # the same answer, at Bedrock's (made-up) prices
