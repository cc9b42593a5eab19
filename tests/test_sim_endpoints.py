"""Several simulated endpoints in one simulator, driven by the SDK's real clients over HTTP.

Each endpoint (`SimConfig.endpoints`, served under `/e/{name}/`) has its own buckets, prompt
cache and stats; the unprefixed routes keep behaving as without endpoints. Simulators with
limits or timed outages read `sim_clock`, so buckets refill and outages begin only when a test
says so.
"""

from __future__ import annotations

import asyncio
import urllib.error
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic import AsyncAnthropicBedrock, AsyncAnthropicVertex

from anvil_cli.sim import SimServer
from anvil_cli.sim.config import EndpointSim, SharedSim, SimConfig
from anvil_cli.sim.core import SimCore
from tests.sim_fixtures import (  # noqa: F401
    HAIKU,
    SimClock,
    SimFactory,
    SimSleeps,
    create,
    fixture_sim_clock,
    fixture_sim_factory,
    fixture_sim_sleeps,
    raw_post,
    user,
)

KEY = "test-key"


@pytest.fixture(name="clients")
def fixture_clients() -> Iterator[Any]:
    """`clients(url)`: an SDK client of that base URL without retries, closed at teardown."""
    made: list[anthropic.Anthropic] = []

    def make(url: str) -> anthropic.Anthropic:
        client = anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def answered(client: anthropic.Anthropic, n: int, text: str = "hello") -> list[int]:
    """The status of each of `n` different small requests."""
    statuses = []
    for i in range(n):
        try:
            create(client, f"{text} {i}")
            statuses.append(200)
        except anthropic.APIStatusError as exc:
            statuses.append(exc.status_code)
    return statuses


def two_endpoints(sim_factory: SimFactory, shared: Any = None, **more: EndpointSim) -> SimServer:
    """Endpoint a (60 rpm, burst 2) and b (120 rpm, burst 4), and `more`."""
    endpoints = {"a": EndpointSim(rpm=60, burst=2), "b": EndpointSim(rpm=120, burst=4)}
    return sim_factory(endpoints={**endpoints, **more}, shared=shared or {})


def test_each_endpoint_429s_at_its_own_limit(
    sim_factory: SimFactory, sim_clock: SimClock, clients: Any
) -> None:
    sim = two_endpoints(sim_factory)
    a, b = clients(sim.endpoint_url("a")), clients(sim.endpoint_url("b"))
    assert answered(a, 3, "a") == [200, 200, 429]
    assert answered(b, 5, "b") == [200, 200, 200, 200, 429]  # a's 429 took nothing of b's
    assert answered(clients(sim.base_url), 10, "root") == [200] * 10  # unprefixed: no limit set
    sim_clock.advance(1.0)  # a refills one a second, b two
    assert answered(a, 2, "a again") == [200, 429]
    assert answered(b, 3, "b again") == [200, 200, 429]


def test_an_endpoint_sends_its_own_rate_limit_headers(sim_factory: SimFactory, sim_clock: SimClock) -> None:
    sim = sim_factory(rpm=1000, endpoints={"a": EndpointSim(rpm=60, burst=2, itpm=50_000)})
    with anthropic.Anthropic(base_url=sim.endpoint_url("a"), api_key=KEY, max_retries=0) as client:
        headers = client.messages.with_raw_response.create(
            model=HAIKU, max_tokens=50, messages=user("hi")
        ).headers
    assert headers["anthropic-ratelimit-requests-limit"] == "60"
    assert headers["anthropic-ratelimit-requests-remaining"] == "1"
    assert headers["anthropic-ratelimit-input-tokens-limit"] == "50000"


def test_stats_count_per_endpoint_and_in_total(
    sim_factory: SimFactory, sim_clock: SimClock, clients: Any
) -> None:
    sim = two_endpoints(sim_factory)
    answered(clients(sim.endpoint_url("a")), 3, "a")
    answered(clients(sim.endpoint_url("b")), 1, "b")
    answered(clients(sim.base_url), 2, "root")
    stats = sim.stats()
    a, b = stats["endpoints"]["a"], stats["endpoints"]["b"]
    assert (a["requests"], a["successes"], a["rate_limited"]) == (3, 2, 1)
    assert (b["requests"], b["successes"], b["rate_limited"]) == (1, 1, 0)
    assert (stats["requests"], stats["successes"], stats["rate_limited"]) == (6, 5, 1)
    assert a["output_tokens"] == 2 * 50 and stats["output_tokens"] == 5 * 50
    assert a["by_model"][HAIKU]["successes"] == 2
    assert (a["off"], a["provider"]) == (False, None)
    # one endpoint's own stats, at its own address
    status, _, body = raw_get(sim.endpoint_url("b") + "/_sim/stats")
    assert status == 200 and b'"requests":1' in body


def raw_get(url: str) -> tuple[int, dict[str, str], bytes]:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


def test_without_endpoints_stats_and_routes_are_unchanged(sim_factory: SimFactory, clients: Any) -> None:
    sim = sim_factory()
    assert create(clients(sim.base_url)).content[0].text.startswith("sim:")
    assert "endpoints" not in sim.stats()
    with pytest.raises(anthropic.NotFoundError):
        create(clients(f"{sim.base_url}/e/a"))


def test_unknown_endpoint_is_not_found(sim_factory: SimFactory, clients: Any) -> None:
    sim = two_endpoints(sim_factory)
    with pytest.raises(anthropic.NotFoundError):
        create(clients(sim.endpoint_url("c")))


def test_a_request_retried_elsewhere_is_a_paid_duplicate_in_the_total_only(
    sim_factory: SimFactory, clients: Any
) -> None:
    sim = two_endpoints(sim_factory)
    first = create(clients(sim.endpoint_url("a")), "same job")
    again = create(clients(sim.endpoint_url("b")), "same job")
    assert first.content[0].text.split()[0] == again.content[0].text.split()[0]  # sim:<digest>
    stats = sim.stats()
    assert stats["paid_duplicates"] == 1
    assert stats["endpoints"]["a"]["paid_duplicates"] == stats["endpoints"]["b"]["paid_duplicates"] == 0


def test_attempts_count_across_endpoints(sim_factory: SimFactory, clients: Any) -> None:
    sim = two_endpoints(sim_factory)
    with pytest.raises(anthropic.InternalServerError):
        create(clients(sim.endpoint_url("a")), "@sim{fail=529x1}")
    assert create(clients(sim.endpoint_url("b")), "@sim{fail=529x1}").stop_reason == "end_turn"


def test_each_endpoint_has_its_own_prompt_cache(sim_factory: SimFactory, clients: Any) -> None:
    sim = two_endpoints(sim_factory)
    system = [{"type": "text", "text": "long context " * 400, "cache_control": {"type": "ephemeral"}}]
    a, b = clients(sim.endpoint_url("a")), clients(sim.endpoint_url("b"))
    assert create(a, "one", system=system).usage.cache_creation_input_tokens > 0
    assert create(a, "two", system=system).usage.cache_read_input_tokens > 0
    cold = create(b, "three", system=system).usage
    assert cold.cache_read_input_tokens == 0 and cold.cache_creation_input_tokens > 0


def test_a_shared_ceiling_limits_its_endpoints_together(
    sim_factory: SimFactory, sim_clock: SimClock, clients: Any
) -> None:
    shared = {"org": SharedSim(endpoints=("a", "b"), rpm=60, burst=3)}
    sim = two_endpoints(sim_factory, c=EndpointSim(rpm=60, burst=2), shared=shared)
    assert answered(clients(sim.endpoint_url("a")), 2, "a") == [200, 200]
    assert answered(clients(sim.endpoint_url("b")), 2, "b") == [200, 429]  # the ceiling's third, then none
    assert answered(clients(sim.endpoint_url("c")), 2, "c") == [200, 200]  # not in the ceiling
    sim_clock.advance(1.0)  # the ceiling refills one a second
    assert answered(clients(sim.endpoint_url("b")), 2, "b again") == [200, 429]
    assert sim.stats()["endpoints"]["b"]["rate_limited"] == 2


def test_a_shared_ceiling_must_name_endpoints() -> None:
    with pytest.raises(ValueError, match="names no simulated endpoint 'z'"):
        SimCore(SimConfig(endpoints={"a": EndpointSim()}, shared={"org": SharedSim(endpoints=("a", "z"))}))


# -- turning an endpoint off ------------------------------------------------------------------


def test_directive_turns_an_endpoint_off_and_back_on(sim_factory: SimFactory, clients: Any) -> None:
    sim = two_endpoints(sim_factory)
    a, b = clients(sim.endpoint_url("a")), clients(sim.endpoint_url("b"))
    assert create(b, "@sim{endpoint_off=a}").stop_reason == "end_turn"  # the carrier is answered
    with pytest.raises(anthropic.APIConnectionError):
        create(a, "refused")
    assert create(b, "b still answers").stop_reason == "end_turn"
    stats = sim.stats()
    assert stats["endpoints"]["a"]["off"] is True and stats["endpoints"]["a"]["refused"] == 1
    assert stats["refused"] == 1 and stats["endpoints"]["a"]["requests"] == 0
    create(clients(sim.base_url), "@sim{endpoint_on=a}")
    assert create(a, "back").stop_reason == "end_turn"
    assert sim.stats()["endpoints"]["a"]["off"] is False


def test_directive_naming_no_endpoint_is_refused(sim_factory: SimFactory, clients: Any) -> None:
    sim = two_endpoints(sim_factory)
    with pytest.raises(anthropic.BadRequestError, match="names no simulated endpoint"):
        create(clients(sim.base_url), "@sim{endpoint_off=c}")


def test_timed_outage_uses_the_injected_clock(
    sim_factory: SimFactory, sim_clock: SimClock, clients: Any
) -> None:
    sim = sim_factory(endpoints={"a": EndpointSim(off_after_s=30, off_for_s=10), "b": EndpointSim()})
    a = clients(sim.endpoint_url("a"))
    sim_clock.advance(29.9)
    assert create(a, "before").stop_reason == "end_turn"
    sim_clock.advance(0.1)
    with pytest.raises(anthropic.APIConnectionError):
        create(a, "during")
    assert create(clients(sim.endpoint_url("b")), "b is not affected").stop_reason == "end_turn"
    sim_clock.advance(10.0)
    assert create(a, "after").stop_reason == "end_turn"


def test_a_timed_outage_without_end_lasts_until_switched_on(
    sim_factory: SimFactory, sim_clock: SimClock, clients: Any
) -> None:
    sim = sim_factory(endpoints={"a": EndpointSim(off_after_s=5)})
    a = clients(sim.endpoint_url("a"))
    sim_clock.advance(1_000)
    with pytest.raises(anthropic.APIConnectionError):
        create(a, "off")
    sim.endpoint_on("a")
    assert create(a, "on").stop_reason == "end_turn"
    sim.reset()  # timed outages count from the reset; the thrown switch is forgotten
    sim_clock.advance(4)
    assert create(a, "on again").stop_reason == "end_turn"
    sim_clock.advance(1)
    with pytest.raises(anthropic.APIConnectionError):
        create(a, "off again")


def test_control_api_switches_an_endpoint(sim_factory: SimFactory, clients: Any) -> None:
    sim = two_endpoints(sim_factory)
    b = clients(sim.endpoint_url("b"))
    sim.endpoint_off("b")
    with pytest.raises(anthropic.APIConnectionError):
        create(b)
    assert raw_get(sim.endpoint_url("b") + "/_sim/stats")[0] == 200  # its stats stay readable
    sim.endpoint_on("b")
    assert create(b).stop_reason == "end_turn"
    with pytest.raises(urllib.error.HTTPError) as missing:
        sim.endpoint_off("c")
    assert missing.value.code == 404


def test_calls_in_flight_when_an_endpoint_goes_off_are_cut(
    sim_factory: SimFactory, sim_sleeps: SimSleeps
) -> None:
    """One call to `a` is answering (its latency) when another turns `a` off: it is cut, and
    was paid (counted as a success), as a real outage would leave it."""
    sim = two_endpoints(sim_factory)
    sim_sleeps.hold(2)  # both calls wait in their latency until both are there

    async def main() -> list[Any]:
        async with (
            anthropic.AsyncAnthropic(base_url=sim.endpoint_url("a"), api_key=KEY, max_retries=0) as a,
            anthropic.AsyncAnthropic(base_url=sim.endpoint_url("b"), api_key=KEY, max_retries=0) as b,
        ):
            params: dict[str, Any] = {"model": HAIKU, "max_tokens": 50}
            in_flight = a.messages.create(messages=user("@sim{latency_ms=100} cut"), **params)
            switch = b.messages.create(messages=user("@sim{latency_ms=100, endpoint_off=a}"), **params)
            return await asyncio.gather(in_flight, switch, return_exceptions=True)

    cut, switched = asyncio.run(main())
    assert isinstance(cut, anthropic.APIConnectionError)
    assert switched.stop_reason == "end_turn"
    a = sim.stats()["endpoints"]["a"]
    assert a["dropped"] == 1 and a["successes"] == 1 and a["refused"] == 0


# -- other wire formats under an endpoint -----------------------------------------------------


def test_bedrock_and_vertex_endpoints_limit_on_their_own(
    sim_factory: SimFactory, sim_clock: SimClock
) -> None:
    sim = sim_factory(
        endpoints={
            "aws": EndpointSim(rpm=60, burst=1, provider="bedrock"),
            "gcp": EndpointSim(rpm=60, burst=2, provider="vertex"),
        }
    )

    async def main() -> tuple[list[int], list[int]]:
        async with (
            AsyncAnthropicBedrock(
                api_key="bedrock-api-key",
                aws_region="us-east-1",
                base_url=sim.endpoint_url("aws"),
                max_retries=0,
            ) as aws,
            AsyncAnthropicVertex(
                region="us-east5",
                project_id="p",
                access_token="token",
                base_url=sim.endpoint_url("gcp"),
                max_retries=0,
            ) as gcp,
        ):
            return (
                await statuses(aws, "us.anthropic.claude-haiku-4-5-20251001-v1:0", 2),
                await statuses(gcp, "claude-haiku-4-5@20251001", 3),
            )

    assert asyncio.run(main()) == ([200, 429], [200, 200, 429])
    stats = sim.stats()["endpoints"]
    assert stats["aws"]["rate_limited"] == 1 and stats["aws"]["provider"] == "bedrock"
    assert stats["gcp"]["successes"] == 2


async def statuses(client: Any, model: str, n: int) -> list[int]:
    out = []
    for i in range(n):
        try:
            await client.messages.create(model=model, max_tokens=50, messages=user(f"call {i}"))
            out.append(200)
        except anthropic.APIStatusError as exc:
            out.append(exc.status_code)
    return out


def test_an_endpoint_with_a_provider_serves_only_its_routes(sim_factory: SimFactory, clients: Any) -> None:
    sim = sim_factory(endpoints={"aws": EndpointSim(provider="bedrock")})
    with pytest.raises(anthropic.NotFoundError):
        create(clients(sim.endpoint_url("aws")))
    status, _, _ = raw_post(
        sim.endpoint_url("aws") + "/model/anthropic.claude-haiku-4-5-v1:0/invoke",
        {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": user("hi")},
        {"authorization": "Bearer k"},
    )
    assert status == 200


def test_message_batches_under_an_endpoint(sim_factory: SimFactory, clients: Any) -> None:
    sim = sim_factory(batch_seconds_per_request=0.0, endpoints={"a": EndpointSim()})
    client = clients(sim.endpoint_url("a"))
    params = {"model": HAIKU, "max_tokens": 20, "messages": user("in a batch")}
    batch = client.messages.batches.create(requests=[{"custom_id": "one", "params": params}])  # type: ignore[list-item]
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and f"/e/a/v1/messages/batches/{batch.id}" in str(
        ended.results_url
    )
    results = list(client.messages.batches.results(batch.id))
    assert [r.result.type for r in results] == ["succeeded"]
    stats = sim.stats()
    assert stats["endpoints"]["a"]["batches_created"] == 1 and stats["batches_created"] == 1
    assert [b.id for b in client.messages.batches.list().data] == [batch.id]
    assert [b.id for b in clients(sim.base_url).messages.batches.list().data] == []  # not the root's
