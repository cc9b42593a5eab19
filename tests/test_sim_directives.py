"""`@sim{...}` directives: parsing, and their effect over HTTP."""

from __future__ import annotations

import anthropic
import pytest

from anvil_cli.sim.answers.directives import DirectiveError, parse_directives
from tests.sim_fixtures import (  # noqa: F401
    HAIKU,
    ClientFor,
    SimFactory,
    SimSleeps,
    create,
    fixture_client,
    fixture_client_for,
    fixture_sim,
    fixture_sim_factory,
    fixture_sim_sleeps,
    user,
)


def test_parse_all_keys() -> None:
    found = parse_directives(
        "x @sim{fail=529x2+500x1, retry_after=3, drop=1, latency_ms=5, output_tokens=9, input_tokens=8,"
        " tool=t, stream_error=2} y @sim{status=429spend}"
    )
    assert found.fail == [(529, 2), (500, 1)]
    assert [found.fail_status(a) for a in (1, 2, 3, 4)] == [529, 529, 500, None]
    assert (found.retry_after_s, found.drop, found.latency_ms) == (3, 1, 5.0)
    assert (found.output_tokens, found.input_tokens, found.tool, found.stream_error) == (9, 8, "t", 2)
    assert (found.status, found.spend_cap) == (429, True)


@pytest.mark.parametrize("text", ["@sim{fail=529}", "@sim{nope=1}", "@sim{drop}", "@sim{status=abc}"])
def test_parse_errors(text: str) -> None:
    with pytest.raises(DirectiveError):
        parse_directives(text)


def test_fail_chain_then_success(client: anthropic.Anthropic) -> None:
    text = "@sim{fail=529x2+500x1}"
    with pytest.raises(anthropic.OverloadedError):
        create(client, text)
    with pytest.raises(anthropic.OverloadedError):
        create(client, text)
    with pytest.raises(anthropic.InternalServerError) as caught:
        create(client, text)
    assert caught.value.status_code == 500 and caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert create(client, text).stop_reason == "end_turn"


def test_fail_counts_identical_requests_only(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.OverloadedError):
        create(client, "@sim{fail=529x1}")
    with pytest.raises(anthropic.OverloadedError):
        create(client, "@sim{fail=529x1}", max_tokens=201)  # a different request
    assert create(client, "@sim{fail=529x1}").stop_reason == "end_turn"


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (408, anthropic.RequestTimeoutError),
        (409, anthropic.ConflictError),
        (503, anthropic.ServiceUnavailableError),
    ],
)
def test_fail_other_codes(client: anthropic.Anthropic, code: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        create(client, f"@sim{{fail={code}x1}}")


def test_fail_429_carries_retry_after(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as caught:
        create(client, "@sim{fail=429x1, retry_after=7}")
    assert caught.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    ("code", "error", "kind"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (413, anthropic.RequestTooLargeError, "request_too_large"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_status_always(
    client: anthropic.Anthropic, code: int, error: type[anthropic.APIStatusError], kind: str
) -> None:
    for _ in range(2):
        with pytest.raises(error) as caught:
            create(client, f"@sim{{status={code}}}")
        assert caught.value.body["error"]["type"] == kind  # type: ignore[index]


def test_status_429_spend_cap(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as caught:
        create(client, "@sim{status=429spend}")
    assert caught.value.body["error"]["details"]["error_code"] == "enforced_spend_limit_reached"  # type: ignore[index]
    assert "retry-after" not in caught.value.response.headers


def test_drop_then_answer(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIConnectionError):
        create(client, "@sim{drop=1}")
    assert create(client, "@sim{drop=1}").stop_reason == "end_turn"


def test_latency_directive(sim_factory: SimFactory, client_for: ClientFor, sim_sleeps: SimSleeps) -> None:
    plain = client_for(sim_factory())
    create(plain, "@sim{latency_ms=150}")
    create(plain, "no directive")  # no latency configured: answered without waiting
    assert sim_sleeps.delays == [0.15]
    always_slow = sim_factory(slow_rate=1.0, slow_ms=1000)
    create(client_for(always_slow), "@sim{latency_ms=150}")  # the directive wins over the slow fault
    assert sim_sleeps.delays == [0.15, 0.15] and always_slow.stats()["slowed"] == 0


def test_token_directives(client: anthropic.Anthropic) -> None:
    msg = create(client, "@sim{output_tokens=12, input_tokens=3456}")
    assert (msg.usage.output_tokens, msg.usage.input_tokens) == (12, 3456)
    capped = create(client, "@sim{output_tokens=500}", max_tokens=20)
    assert (capped.usage.output_tokens, capped.stop_reason) == (20, "max_tokens")


def test_directive_in_system_prompt(client: anthropic.Anthropic) -> None:
    assert create(client, system="@sim{output_tokens=3}").usage.output_tokens == 3


def test_tool_directive(client: anthropic.Anthropic) -> None:
    tools = [{"name": n, "input_schema": {"type": "object", "properties": {}}} for n in ("a", "b")]
    assert create(client, "@sim{tool=b}", tools=tools).content[0].name == "b"  # type: ignore[union-attr]
    with pytest.raises(anthropic.BadRequestError):
        create(client, "@sim{tool=zzz}", tools=tools)


def test_stream_error_then_clean_stream(client: anthropic.Anthropic) -> None:
    messages = user("@sim{stream_error=1}")
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(model=HAIKU, max_tokens=100, messages=messages) as stream,
    ):
        stream.get_final_message()
    assert caught.value.status_code == 200
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    with client.messages.stream(model=HAIKU, max_tokens=100, messages=messages) as stream:
        assert stream.get_final_message().stop_reason == "end_turn"
