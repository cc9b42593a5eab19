"""What a worker's agent holds per job and per call (issue 24, leaner agents): a job's
conversation, job and answer are freed by reference counting as soon as the job ends (no
reference cycle leaves them for the garbage collector, as tenacity's per-call `AsyncRetrying`
did); the wait for a grant makes no task per call (`stopping.Asks`: one watcher per worker);
the retries follow tenacity's rules exactly (`retries.RetryPolicy`); the SDK makes no span of
its own per call.

The agent is the real one, over real HTTP to the simulator, its broker in front of the real
governor (`JumpingGovernor`)."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from tenacity import Retrying, retry_if_exception, stop_after_attempt

from anvil_cli.config.endpoint import Endpoint
from anvil_cli.config.load import load_settings
from anvil_cli.config.settings import Retries
from anvil_cli.engine.outcomes import JobResult
from anvil_cli.engine.worker.agent import Agent, AgentContext
from anvil_cli.engine.worker.broker import GovernorBroker
from anvil_cli.engine.worker.clients import make_clients
from anvil_cli.engine.worker.conversation import Conversation, JobCalls
from anvil_cli.engine.worker.retries import RetryPolicy, is_transient
from anvil_cli.engine.worker.stopping import Abandoned, Asks
from anvil_cli.jobs.loader import load_batch
from anvil_cli.policy.governor.backoff import WaitBackoff
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.sim import SimConfig, SimServer
from tests.governor_support import JumpingGovernor

HAIKU = "claude-haiku-4-5"
PLAIN = 12
RETRIED = 6  # each answered after a 529, then a 429


def _anvil_objects(objects: list[Any]) -> dict[str, int]:
    """How many of `objects` are Anvil's (the simulator's own aside), by type."""
    counts: dict[str, int] = {}
    for each in objects:
        module = getattr(type(each), "__module__", None)
        ours = isinstance(module, str) and module.startswith("anvil_cli")
        if ours and not module.startswith("anvil_cli.sim"):
            counts[type(each).__qualname__] = counts.get(type(each).__qualname__, 0) + 1
    return counts


class Ran:
    results: list[JobResult]
    alive: dict[str, int]  # Anvil's objects still alive once every job ended, uncollected
    cyclic: dict[str, int]  # Anvil's objects the collector then found in reference cycles
    asks_waiting: int  # the governor's answers the agent still waits for
    tasks: list[str]  # the tasks the agent left alive once its jobs ended


@pytest.fixture(name="ran", scope="module")
def fixture_ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    """One agent runs plain jobs and retried ones at once, the collector off throughout."""
    tmp = tmp_path_factory.mktemp("memory")
    config = tmp / "anvil.yaml"
    config.write_text(
        json.dumps(
            {
                "state_dir": str(tmp / ".anvil"),
                "retries": {"max_attempts": 3, "backoff_base_s": 0.001, "backoff_max_s": 0.001},
                "cache": {"enabled": False},
            }
        )
    )
    settings = load_settings(config, env={})
    batch = tmp / "batch.yaml"
    prompts = [f"plain {i}" for i in range(PLAIN)] + [f"@sim{{fail=529x1+429x1}} {i}" for i in range(RETRIED)]
    batch.write_text(
        json.dumps({"defaults": {"model": HAIKU, "max_tokens": 32}, "jobs": [{"prompt": p} for p in prompts]})
    )
    jobs = list(load_batch(batch))
    server = SimServer(SimConfig()).start_thread()
    ran = Ran()

    async def main() -> None:
        broker = GovernorBroker(JumpingGovernor(), 0, asyncio.get_running_loop()).start()  # type: ignore[arg-type]
        pricer = Pricer.from_settings(settings)
        endpoint = Endpoint(server.base_url, "provider", api_key="test-key")
        clients = make_clients([endpoint], 10.0, len(jobs) + 4, pricer)
        agent = Agent(
            AgentContext(
                clients=clients, governor=broker, settings=settings, pricer=pricer, stopping=asyncio.Event()
            )
        )
        before = asyncio.all_tasks()
        try:
            ran.results = list(await asyncio.gather(*(agent.run(job) for job in jobs)))
            ran.alive = _anvil_objects(gc.get_objects())
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()  # the agent, its clients and broker alive still: what the jobs left
            ran.cyclic = _anvil_objects(gc.garbage)
            ran.asks_waiting = len(agent._asks._waiting)
            ran.tasks = [t.get_coro().__qualname__ for t in asyncio.all_tasks() - before]
        finally:
            broker.close()
            for each in clients.values():
                await each.client.close()

    gc.collect()
    gc.disable()
    try:
        asyncio.run(asyncio.wait_for(main(), timeout=60))  # a hang guard only
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        server.stop()
    yield ran


def test_every_job_answered_the_retried_ones_after_two_failures(ran: Ran) -> None:
    assert [r.succeeded for r in ran.results] == [True] * (PLAIN + RETRIED)
    assert [r.attempts for r in ran.results] == [1] * PLAIN + [3] * RETRIED
    assert [a.status_code for a in ran.results[-1].attempt_log or ()] == [529, 429, 200]


def test_a_job_s_conversation_is_freed_when_it_ends_without_the_collector(ran: Ran) -> None:
    # reference counting alone freed them: the collector was off while the jobs ran
    for kind in (Conversation, JobCalls):
        assert ran.alive.get(kind.__qualname__, 0) == 0, ran.alive
    assert ran.cyclic == {}  # nothing of Anvil's waited in a reference cycle
    assert ran.asks_waiting == 0


def test_the_agent_keeps_one_task_of_its_own_whatever_its_calls(ran: Ran) -> None:
    assert ran.tasks == ["Asks._give_up"]  # the watcher of the run's stopping, none per call


# -- the wait for a grant ---------------------------------------------------------------------


def test_asks_are_given_up_when_the_run_stops_by_one_watcher() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        asks = Asks(stopping)
        futures: list[asyncio.Future[str]] = [loop.create_future() for _ in range(20)]
        waiting = [asyncio.ensure_future(asks.answer(f)) for f in futures]
        futures[0].set_result("grant")
        assert await waiting[0] == "grant"
        assert len(asyncio.all_tasks()) == 1 + 19 + 1  # this test, the 19 waiting, one watcher
        stopping.set()
        ended = await asyncio.gather(*waiting[1:], return_exceptions=True)
        assert all(isinstance(e, Abandoned) for e in ended)
        # done, so a grant the broker draws for one of them goes back (`_deliver_all`)
        assert all(f.done() for f in futures)
        late: asyncio.Future[str] = loop.create_future()
        with pytest.raises(Abandoned):
            await asks.answer(late)
        assert late.cancelled()  # the broker never asks for it

    asyncio.run(main())


# -- the retries ------------------------------------------------------------------------------

REQUEST = httpx2.Request("POST", "http://127.0.0.1/v1/messages")
SLOW = {"retry-after-ms": "20000"}  # beyond backoff_max_s: honoured all the same


def status_error(status: int, etype: str, headers: dict[str, str] | None = None) -> anthropic.APIStatusError:
    body = {"type": "error", "error": {"type": etype, "message": f"{etype} happened"}}
    response = httpx2.Response(status, json=body, headers=headers or {}, request=REQUEST)
    client = anthropic.Anthropic(api_key="k", base_url="http://127.0.0.1", max_retries=0)
    try:
        return client._make_status_error(f"{status}", body=body, response=response)
    finally:
        client.close()


def waits_of(policy: RetryPolicy, errors: list[BaseException]) -> tuple[list[float], BaseException | None]:
    """The waits the agent's loop takes over `errors`, raised one per try, and what it raises."""
    waits: list[float] = []
    for tried, exc in enumerate(errors, start=1):
        wait = policy.wait_s(tried, exc)
        if wait is None:
            return waits, exc
        waits.append(wait)
    return waits, None


def tenacity_waits(errors: list[BaseException], attempts: int) -> tuple[list[float], BaseException | None]:
    """The same over tenacity, as the agent used it before."""
    slept: list[float] = []
    raised = iter(errors)

    def call() -> None:
        raise next(raised)

    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=WaitBackoff(1.0, 8.0, rand=lambda: 0.5, wall_clock=lambda: 0.0),
        retry=retry_if_exception(is_transient),
        sleep=slept.append,
        reraise=True,
    )
    try:
        retrying(call)
    except BaseException as exc:  # what it raised is the point
        return slept, exc
    return slept, None


@pytest.mark.parametrize(
    "errors",
    [
        [status_error(529, "overloaded_error")] * 3 + [status_error(500, "api_error")] * 2,  # tries run out
        [status_error(429, "rate_limit_error", {"retry-after": "3"}), status_error(400, "bad_request")],
        [status_error(500, "api_error"), status_error(429, "rate_limit_error", SLOW)] * 2,
        [status_error(401, "authentication_error")],
        [ValueError("not an API error")],
    ],
)
def test_the_retries_follow_tenacity_s_rules(errors: list[BaseException]) -> None:
    policy = RetryPolicy(4, 1.0, 8.0, rand=lambda: 0.5, wall_clock=lambda: 0.0)
    assert waits_of(policy, errors) == tenacity_waits(errors, 4)


def test_the_retry_policy_is_the_settings_retries() -> None:
    policy = RetryPolicy.of(Retries(max_attempts=5, backoff_base_s=0.5, backoff_max_s=30.0))
    overloaded = status_error(529, "overloaded_error")
    waits, raised = waits_of(policy, [overloaded] * 6)
    assert len(waits) == 4 and raised is overloaded  # five tries in all
    assert all(0.0 <= w <= 0.5 * 2.0**i for i, w in enumerate(waits))  # from 0.5 s, doubling


# -- the SDK's own spans ----------------------------------------------------------------------


def test_the_sdk_makes_no_spans_of_its_own(tmp_path: Path) -> None:
    async def main() -> list[Any]:
        common: dict[str, Any] = {"base_url": "http://127.0.0.1:1", "base_url_from": "endpoints"}
        endpoints = [
            Endpoint(name="a", provider="anthropic", api_key="k", **common),
            Endpoint(name="b", provider="bedrock", region="us-east-1", api_key="k", **common),
            Endpoint(name="v", provider="vertex", region="r", project_id="p", auth_token="t", **common),
            Endpoint(name="f", provider="foundry", api_key="k", **common),
        ]
        made = make_clients(endpoints, 10.0, 2, Pricer.from_overrides())
        try:
            return [getattr(each.client, "open_telemetry", None) for each in made.values()]
        finally:
            for each in made.values():
                await each.client.close()

    options = asyncio.run(main())
    if options[0] is None:
        pytest.skip("this SDK has no OpenTelemetry spans to turn off")
    assert [o["traces"]["enabled"] for o in options] == [False] * 4
