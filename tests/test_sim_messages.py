"""Messages over real HTTP with the official SDK: shapes, streaming, tools, caching, auth, 400s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import pytest

from anvil_cli.policy.tokens import estimate_input_tokens
from anvil_cli.sim import SimServer, messages_digest
from tests.sim_fixtures import (  # noqa: F401
    HAIKU,
    SimFactory,
    create,
    fixture_client,
    fixture_client_for,
    fixture_sim,
    fixture_sim_factory,
    raw_create,
    user,
)

WEATHER = {
    "name": "get_weather",
    "description": "Weather of a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "unit": {"enum": ["c", "f"]},
            "hourly": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "where": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]},
        },
        "required": ["city", "days", "unit", "hourly", "tags", "where"],
    },
}


def test_message_shape_and_digest(client: anthropic.Anthropic) -> None:
    messages = user("Say something")
    raw = client.messages.with_raw_response.create(model=HAIKU, max_tokens=100, messages=messages)
    msg = raw.parse()
    assert raw.headers["request-id"].startswith("req_")
    assert msg.id.startswith("msg_") and msg.role == "assistant" and msg.model == HAIKU
    assert msg.stop_reason == "end_turn"
    text = msg.content[0].text  # type: ignore[union-attr]
    assert text.startswith(f"sim:{messages_digest(messages)} ")
    assert msg.usage.output_tokens == 50
    assert msg.usage.input_tokens == estimate_input_tokens({"messages": messages})
    assert msg.usage.cache_read_input_tokens == 0 and msg.usage.cache_creation_input_tokens == 0


def test_max_tokens_caps_output(client: anthropic.Anthropic) -> None:
    msg = create(client, max_tokens=7)
    assert msg.stop_reason == "max_tokens" and msg.usage.output_tokens == 7


def test_stream_event_sequence(client: anthropic.Anthropic) -> None:
    messages = user("stream please @sim{output_tokens=120}")
    with client.messages.stream(model=HAIKU, max_tokens=500, messages=messages) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.count("content_block_start") == 1 and kinds.count("content_block_stop") == 1
    assert kinds.count("text") > 1 and "message_delta" in kinds
    assert final.content[0].text.startswith(f"sim:{messages_digest(messages)} ")  # type: ignore[union-attr]
    assert final.usage.output_tokens == 120 and final.stop_reason == "end_turn"


def test_raw_sse_stream_matches_message(client: anthropic.Anthropic) -> None:
    stream = client.messages.create(model=HAIKU, max_tokens=100, messages=user("x"), stream=True)
    with stream:
        events = list(stream)
    assert [e.type for e in events[:2]] == ["message_start", "content_block_start"]
    assert events[-2].type == "message_delta" and events[-2].usage.output_tokens == 50


def test_tool_use_then_final_text(client: anthropic.Anthropic) -> None:
    messages: list[dict[str, Any]] = user("What's the weather?")
    first = client.messages.create(model=HAIKU, max_tokens=300, messages=messages, tools=[WEATHER])
    assert first.stop_reason == "tool_use"
    call = first.content[0]
    assert call.type == "tool_use" and call.name == "get_weather" and call.id.startswith("toolu_")
    args = call.input
    assert isinstance(args["city"], str) and 1 <= args["days"] <= 7 and args["unit"] in ("c", "f")
    assert isinstance(args["hourly"], bool) and len(args["tags"]) >= 2
    assert isinstance(args["where"]["lat"], float)
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
    ]
    final = client.messages.create(model=HAIKU, max_tokens=300, messages=messages, tools=[WEATHER])
    assert final.stop_reason == "end_turn"
    assert final.content[0].text.startswith(f"sim:{messages_digest(messages)} ")  # type: ignore[union-attr]


def test_streamed_tool_use_uses_input_json_delta(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=HAIKU, max_tokens=300, messages=user("go"), tools=[WEATHER]) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_message()
    assert "input_json" in kinds and final.stop_reason == "tool_use"
    assert final.content[0].input["unit"] in ("c", "f")  # type: ignore[union-attr]


def test_tool_choice_none_gives_text(client: anthropic.Anthropic) -> None:
    msg = create(client, tools=[WEATHER], tool_choice={"type": "none"})
    assert msg.stop_reason == "end_turn"


def test_prompt_caching_write_then_read(client: anthropic.Anthropic) -> None:
    system = [{"type": "text", "text": "policy " * 400, "cache_control": {"type": "ephemeral"}}]
    first = create(client, "q1", system=system)
    second = create(client, "q2", system=system)
    assert first.usage.cache_creation_input_tokens > 500 and first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0
    total = estimate_input_tokens({"system": system, "messages": user("q2")})
    assert second.usage.input_tokens + second.usage.cache_read_input_tokens == total


def test_count_tokens(client: anthropic.Anthropic) -> None:
    messages = user("count me")
    assert client.messages.count_tokens(model=HAIKU, messages=messages).input_tokens == estimate_input_tokens(
        {"messages": messages}
    )
    counted = client.messages.count_tokens(model=HAIKU, messages=user("@sim{input_tokens=77}"))
    assert counted.input_tokens == 77


def test_missing_key_is_401(sim: SimServer) -> None:
    response = httpx2.post(
        f"{sim.base_url}/v1/messages", json={"model": HAIKU, "max_tokens": 5, "messages": user("hi")}
    )
    assert response.status_code == 401
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert body["request_id"] == response.headers["request-id"]


def test_x_api_key_and_bearer_both_accepted(sim: SimServer) -> None:
    payload = {"model": HAIKU, "max_tokens": 5, "messages": user("hi")}
    for headers in ({"x-api-key": "k"}, {"authorization": "Bearer k"}):
        response = httpx2.post(f"{sim.base_url}/v1/messages?beta=true", json=payload, headers=headers)
        assert response.status_code == 200


@pytest.mark.parametrize(
    "payload",
    [
        {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
        {"model": HAIKU, "messages": [{"role": "user", "content": "x"}]},
        {"model": HAIKU, "max_tokens": 5},
        {"model": HAIKU, "max_tokens": "5", "messages": [{"role": "user", "content": "x"}]},
        {"model": HAIKU, "max_tokens": 5, "messages": "hi"},
        {"model": HAIKU, "max_tokens": 5, "messages": [{"role": "robot", "content": "x"}]},
        {"model": HAIKU, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "temperature": 0.5},
        {"model": HAIKU, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "top_p": 0.5},
        {"model": HAIKU, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "top_k": 5},
        {"model": HAIKU, "max_tokens": 5, "messages": [{"role": "user", "content": "@sim{bogus=1}"}]},
    ],
)
def test_bad_bodies_are_400(client: anthropic.Anthropic, payload: dict[str, Any]) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.post("/v1/messages", cast_to=object, body=payload)
    err = caught.value
    assert err.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert err.request_id is not None and err.request_id.startswith("req_")


def test_bad_json_is_400(sim: SimServer) -> None:
    response = httpx2.post(f"{sim.base_url}/v1/messages", content=b"{not json", headers={"x-api-key": "k"})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_path_is_404(sim: SimServer) -> None:
    response = httpx2.get(f"{sim.base_url}/v1/nothing", headers={"x-api-key": "k"})
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"


def test_same_seed_same_answer_different_seed_differs(
    sim_factory: SimFactory, client_for: Callable[[SimServer], anthropic.Anthropic]
) -> None:
    settings = {"output_tokens_spread": 0.8, "latency_ms": 0.0}
    answers = []
    for seed in (7, 7, 8):
        seeded = client_for(sim_factory(seed=seed, **settings))
        answers.append([create(seeded, f"q{i}").model_dump() for i in range(5)])
    assert answers[0] == answers[1]
    assert answers[0] != answers[2]


def test_raw_response_has_no_ratelimit_headers_when_unlimited(client: anthropic.Anthropic) -> None:
    raw = raw_create(client)
    assert not any(h.startswith("anthropic-ratelimit") for h in raw.headers)
