"""Rate limits over HTTP: 429 with retry-after and headers, then success once the bucket refills.

The simulators here read `sim_clock`, which moves only when a test advances it: a bucket cannot
refill between two requests because a loaded machine sent them slowly.
"""

from __future__ import annotations

import anthropic
import pytest

from tests.sim_fixtures import (  # noqa: F401
    HAIKU,
    ClientFor,
    SimClock,
    SimFactory,
    create,
    fixture_client_for,
    fixture_sim_clock,
    fixture_sim_factory,
    raw_create,
)

pytestmark = pytest.mark.usefixtures("sim_clock")


def test_requests_bucket_drains_then_refills(
    sim_factory: SimFactory, client_for: ClientFor, sim_clock: SimClock
) -> None:
    server = sim_factory(rpm=600, burst=2)  # 10 requests/s, 2 at once
    client = client_for(server)
    first = raw_create(client, "a")
    assert first.headers["anthropic-ratelimit-requests-limit"] == "600"
    assert first.headers["anthropic-ratelimit-requests-remaining"] == "1"
    assert first.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    raw_create(client, "b")
    with pytest.raises(anthropic.RateLimitError) as caught:
        create(client, "c")
    headers = caught.value.response.headers
    assert headers["retry-after"] == "1"
    assert "retry-after-ms" not in headers
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    sim_clock.advance(0.12)  # a little over one request at 10/s
    assert create(client, "c").stop_reason == "end_turn"
    assert server.stats()["rate_limited"] == 1


def test_model_classes_have_separate_pools(sim_factory: SimFactory, client_for: ClientFor) -> None:
    client = client_for(sim_factory(rpm=60, burst=1))
    create(client, model="claude-opus-4-8")
    with pytest.raises(anthropic.RateLimitError):
        create(client, model="claude-opus-4-7")  # same pool as opus-4-5
    assert create(client, model="claude-sonnet-4-6").stop_reason == "end_turn"


def test_input_tokens_limit_bites_alone(sim_factory: SimFactory, client_for: ClientFor) -> None:
    client = client_for(sim_factory(itpm=60_000))
    ok = raw_create(client, "@sim{input_tokens=45000}")
    assert ok.headers["anthropic-ratelimit-input-tokens-remaining"] == "15000"
    assert "anthropic-ratelimit-requests-limit" not in ok.headers
    with pytest.raises(anthropic.RateLimitError) as caught:
        create(client, "@sim{input_tokens=20000}")
    assert caught.value.response.headers["retry-after"] == "5"  # 5,000 tokens at 1,000/s
    assert create(client, "@sim{input_tokens=10000}").usage.input_tokens == 10_000


def test_output_tokens_limit_bites_alone(sim_factory: SimFactory, client_for: ClientFor) -> None:
    client = client_for(sim_factory(otpm=600, output_tokens=300))  # 10 output tokens/s
    create(client, "a", max_tokens=400)
    create(client, "b", max_tokens=400)
    with pytest.raises(anthropic.RateLimitError) as caught:
        create(client, "c", max_tokens=400)
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.response.headers["anthropic-ratelimit-output-tokens-remaining"] == "0"


def test_token_remaining_rounds_down_to_thousands(sim_factory: SimFactory, client_for: ClientFor) -> None:
    client = client_for(sim_factory(itpm=100_000, otpm=100_000))
    raw = raw_create(client, "@sim{input_tokens=1500, output_tokens=10}")
    assert raw.headers["anthropic-ratelimit-input-tokens-remaining"] == "98000"
    assert raw.headers["anthropic-ratelimit-output-tokens-remaining"] == "99000"
