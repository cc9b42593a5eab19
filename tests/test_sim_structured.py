"""Structured outputs in the simulator: `output_config.format` answered with JSON valid for its
schema (Messages, streamed or not, Message Batches, Bedrock, Vertex, Foundry), and the
`invalid`, `score` and `say` directives and the invalid rate, over real HTTP with the SDK."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import anthropic
import pydantic
import pytest
from anthropic import AsyncAnthropicBedrock, AsyncAnthropicFoundry, AsyncAnthropicVertex
from typer.testing import CliRunner

import anvil_cli.sim.server as sim_server
from anvil_cli.cli import app
from anvil_cli.config.settings import Settings
from anvil_cli.errors import ConfigError
from anvil_cli.policy.checks.judge import grade_schema, judge_request, question_of, read_judgement
from anvil_cli.policy.checks.schema import check_answer, reask_message, schema_instruction
from anvil_cli.policy.checks.spec import CheckSpec
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.sim.embedded import INVALID_RATE_ENV, embedded_config
from tests.sim_fixtures import (  # noqa: F401
    HAIKU,
    ClientFor,
    SimFactory,
    create,
    fixture_client,
    fixture_client_for,
    fixture_sim,
    fixture_sim_factory,
    user,
)
from tests.test_api_e2e import wait_for

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 3, "maxLength": 12},
        "age": {"type": "integer", "minimum": 18, "maximum": 99},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4},
        "kind": {"enum": ["a", "b", "c"]},
    },
    "required": ["name", "age", "tags", "kind"],
    "additionalProperties": False,
}
SCHEMAS: list[dict[str, Any]] = [
    PERSON,
    {"type": "string", "minLength": 40},
    {"type": "integer", "exclusiveMinimum": 5, "exclusiveMaximum": 7},
    {"type": "number", "minimum": -3.5, "maximum": -1.25},
    {"type": "boolean"},
    {"type": "null"},
    {"const": {"fixed": [1, 2]}},
    {"type": "array", "items": {"type": "integer", "multipleOf": 5}, "minItems": 3, "maxItems": 3},
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
    {
        "anyOf": [
            {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]},
            {"type": "null"},
        ]
    },
    {"oneOf": [{"type": "string", "format": "date"}, {"type": "integer"}]},
    {
        "allOf": [
            {"properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"required": ["b"], "properties": {"b": {"type": "boolean"}}},
        ]
    },
    {"type": "object", "minProperties": 3, "additionalProperties": {"type": "integer"}},
    {"type": ["string", "null"], "maxLength": 4},
    {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"id": {"type": "string", "format": "uuid"}, "child": {"$ref": "#/$defs/leaf"}},
                "required": ["id", "child"],
                "additionalProperties": False,
            },
            "leaf": {
                "type": "object",
                "properties": {"v": {"type": "integer", "minimum": 1}},
                "required": ["v"],
            },
        },
        "type": "object",
        "properties": {"nodes": {"type": "array", "items": {"$ref": "#/$defs/node"}, "minItems": 1}},
        "required": ["nodes"],
    },
    {
        "$ref": "#/$defs/root",
        "$defs": {
            "root": {"type": "array", "items": {"enum": [1, 2, 3]}, "uniqueItems": True, "minItems": 3}
        },
    },
]


def fmt(schema: dict[str, Any]) -> dict[str, Any]:
    return {"format": {"type": "json_schema", "schema": schema}}


def text_of(msg: Any) -> str:
    return "".join(b.text for b in msg.content if b.type == "text")


def ask(
    client: anthropic.Anthropic, messages: list[dict[str, Any]], schema: dict[str, Any] | None, **kw: Any
) -> Any:
    params: dict[str, Any] = {"model": HAIKU, "max_tokens": 400, "messages": messages, **kw}
    if schema is not None:
        params["output_config"] = fmt(schema)
    return client.messages.create(**params)


@pytest.mark.parametrize("index", range(len(SCHEMAS)))
def test_every_answer_is_valid_for_its_schema(client: anthropic.Anthropic, index: int) -> None:
    schema = SCHEMAS[index]
    for i in range(12):  # different prompts: different draws
        msg = ask(client, user(f"question {i}"), schema)
        verdict = check_answer(schema, text_of(msg))
        assert verdict.valid, (text_of(msg), verdict.error)
        assert msg.stop_reason == "end_turn"


def test_same_request_same_answer_and_tokens_follow_the_text(
    sim_factory: SimFactory, client_for: ClientFor
) -> None:
    first, again = (ask(client_for(sim_factory(seed=3)), user("same"), PERSON) for _ in range(2))
    assert text_of(first) == text_of(again)
    assert first.usage.output_tokens == max(1, -(-len(text_of(first)) // 4))


def test_streamed_answer_is_valid(client: anthropic.Anthropic) -> None:
    params: dict[str, Any] = {
        "model": HAIKU,
        "max_tokens": 400,
        "messages": user("s"),
        "output_config": fmt(PERSON),
    }
    with client.messages.stream(**params) as stream:
        final = stream.get_final_message()
    assert check_answer(PERSON, text_of(final)).valid


def test_an_answer_past_max_tokens_is_cut(client: anthropic.Anthropic) -> None:
    msg = ask(client, user("long"), {"type": "string", "minLength": 400}, max_tokens=20)
    assert msg.stop_reason == "max_tokens" and msg.usage.output_tokens == 20
    assert not check_answer({"type": "string"}, text_of(msg)).valid


def test_invalid_once_then_valid_in_a_reask_conversation(client: anthropic.Anthropic) -> None:
    messages = user("extract the person @sim{invalid=1}")
    verdicts = []
    for _ in range(3):
        answer = text_of(ask(client, messages, PERSON))
        verdict = check_answer(PERSON, answer)
        verdicts.append(verdict.valid)
        if verdict.valid:
            break
        messages = [
            *messages,
            {"role": "assistant", "content": answer},
            reask_message(PERSON, verdict.error or ""),
        ]
    assert verdicts == [False, True]


def test_invalid_two_and_always(client: anthropic.Anthropic) -> None:
    for directive, expected in (
        ("invalid=2", [False, False, True]),
        ("invalid=always", [False, False, False]),
    ):
        messages = user(f"go @sim{{{directive}}}")
        seen = []
        for _ in range(3):
            answer = text_of(ask(client, messages, PERSON))
            verdict = check_answer(PERSON, answer)
            seen.append(verdict.valid)
            messages = [
                *messages,
                {"role": "assistant", "content": answer},
                reask_message(PERSON, verdict.error or "x"),
            ]
        assert seen == expected, directive


def test_an_invalid_answer_for_a_schema_only_json_can_break(client: anthropic.Anthropic) -> None:
    verdict = check_answer({}, text_of(ask(client, user("@sim{invalid=1}"), {})))
    assert not verdict.valid and "not valid JSON" in (verdict.error or "")


def test_invalid_without_a_schema_is_not_json(client: anthropic.Anthropic) -> None:
    text = text_of(ask(client, user("@sim{invalid=1, say=[1]}"), None))
    assert not check_answer({}, text).valid


def test_schema_quoted_in_the_system_prompt_is_honoured(client: anthropic.Anthropic) -> None:
    system = "You extract people.\n\n" + schema_instruction(PERSON)
    assert check_answer(PERSON, text_of(ask(client, user("p"), None, system=system))).valid
    bad = text_of(ask(client, user("p @sim{invalid=1}"), None, system=system))
    assert not check_answer(PERSON, bad).valid


def test_tool_calls_are_not_answers(client: anthropic.Anthropic) -> None:
    tools = [{"name": "look", "description": "d", "input_schema": {"type": "object", "properties": {}}}]
    messages = user("use the tool @sim{invalid=1}")
    call = ask(client, messages, PERSON, tools=tools)
    assert call.stop_reason == "tool_use"
    block = call.content[0]
    messages = [
        *messages,
        {"role": "assistant", "content": [block.model_dump()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "ok"}]},
    ]
    assert not check_answer(PERSON, text_of(ask(client, messages, PERSON, tools=tools))).valid


@pytest.mark.parametrize(("given", "expected"), [("4", 4), ("9", 5), ("-2", 1), ("3.6", 4)])
def test_score_sets_every_score_property(client: anthropic.Anthropic, given: str, expected: int) -> None:
    spec = CheckSpec("quality", "judge", {"rubric": "is it good", "scale": [1, 5]})
    schema = grade_schema(spec)
    msg = ask(client, user(f"grade @sim{{score={given}}}"), schema)
    assert json.loads(text_of(msg))["score"] == expected
    number = {
        "type": "object",
        "properties": {"score": {"type": "number", "maximum": 0.5}},
        "required": ["score"],
    }
    assert json.loads(text_of(ask(client, user(f"n @sim{{score={given}}}"), number)))["score"] <= 0.5


def test_a_judge_quoting_the_prompt_grades_validly(client: anthropic.Anthropic) -> None:
    """The judge's request quotes the job's prompt, `invalid=` and `tool=` included: they are the
    job's, so the judge still answers a valid grade, with the `score=` the prompt sets."""
    spec = CheckSpec("quality", "judge", {"rubric": "is it good", "scale": [1, 5]})
    job = user("write a poem @sim{invalid=always, score=2, tool=look, say=hello, output_tokens=5000}")
    answer = text_of(ask(client, user("write a poem"), None))
    request = judge_request(spec, HAIKU, question_of(job), answer)
    reply = client.messages.create(**request, output_config=fmt(grade_schema(spec)))
    result = read_judgement(spec, HAIKU, text_of(reply))
    assert reply.stop_reason == "end_turn" and reply.usage.output_tokens < 50
    assert result.value == 2 and result.passed is False and result.detail
    high = judge_request(spec, HAIKU, question_of(user("@sim{score=5}")), answer)
    assert read_judgement(
        spec, HAIKU, text_of(client.messages.create(**high, output_config=fmt(grade_schema(spec))))
    ).passed


def test_say_is_the_exact_text(client: anthropic.Anthropic) -> None:
    msg = create(client, 'answer @sim{say=Paris is "the" capital}')
    assert text_of(msg) == 'Paris is "the" capital' and msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens == 6
    assert json.loads(text_of(ask(client, user("@sim{say=nope}"), {"type": "integer"}))) is not None


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"format": {"type": "json_schema"}}, "output_config.format.schema: Field required"),
        (
            {"format": {"type": "xml", "schema": {}}},
            "output_config.format.type: Input should be 'json_schema'",
        ),
        (
            {"format": {"type": "json_schema", "schema": []}},
            "output_config.format.schema: Input should be an object",
        ),
        ({"format": {"type": "json_schema", "schema": {"type": "nope"}}}, "not a valid JSON Schema"),
        ({"format": "json"}, "output_config.format: Input should be an object"),
        ({"effort": "huge"}, "output_config.effort"),
        ({"formats": {}}, "output_config.formats: Extra inputs"),
    ],
)
def test_bad_output_config_is_refused(
    client: anthropic.Anthropic, config: dict[str, Any], problem: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        create(client, "x", output_config=config)
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert problem in caught.value.body["error"]["message"]  # type: ignore[index]


def test_unknown_directive_still_raises(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError):
        create(client, "@sim{invalidd=1}")
    with pytest.raises(anthropic.BadRequestError):
        create(client, "@sim{invalid=some}")


def test_invalid_rate_picks_a_stable_share_of_first_answers(
    sim_factory: SimFactory, client_for: ClientFor
) -> None:
    client = client_for(sim_factory(invalid_rate=0.3, seed=4))
    first = [check_answer(PERSON, text_of(ask(client, user(f"job {i}"), PERSON))).valid for i in range(200)]
    share = first.count(False) / len(first)
    assert 0.2 < share < 0.4
    again = [
        check_answer(PERSON, text_of(ask(client, user(f"job {i}"), PERSON, max_tokens=401))).valid
        for i in range(200)
    ]
    assert again == first  # the same conversations, whatever else differs
    bad = first.index(False)
    messages = user(f"job {bad}")
    answer = text_of(ask(client, messages, PERSON))
    retry = [*messages, {"role": "assistant", "content": answer}, reask_message(PERSON, "e")]
    assert check_answer(PERSON, text_of(ask(client, retry, PERSON))).valid


def test_batches_answer_structured_and_invalid(sim_factory: SimFactory, client_for: ClientFor) -> None:
    client = client_for(sim_factory(batch_seconds_per_request=0.001))
    texts = {"ok": "a person", "bad": "a person @sim{invalid=1}"}
    requests = [
        {
            "custom_id": cid,
            "params": {"model": HAIKU, "max_tokens": 300, "messages": user(t), "output_config": fmt(PERSON)},
        }
        for cid, t in texts.items()
    ]
    requests.append(
        {
            "custom_id": "refused",
            "params": {
                "model": HAIKU,
                "max_tokens": 9,
                "messages": user("x"),
                "output_config": {"format": {"type": "json_schema"}},
            },
        }
    )
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    wait_for(
        lambda: client.messages.batches.retrieve(batch.id).processing_status == "ended",
        timeout_s=30,
        what="the batch ended",
    )
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    valid = {
        cid: check_answer(PERSON, text_of(r.message)).valid
        for cid, r in results.items()
        if r.type == "succeeded"
    }
    assert valid == {"ok": True, "bad": False}
    assert results["refused"].type == "errored"


def _provider_text(client: Any, model: str) -> str:
    async def main() -> str:
        async with client:
            msg = await client.messages.create(
                model=model,
                max_tokens=300,
                messages=user("p @sim{score=3}"),
                output_config=fmt(
                    PERSON | {"properties": {**PERSON["properties"], "score": {"type": "integer"}}}
                ),
            )
            return text_of(msg)

    return asyncio.run(main())


def test_provider_wire_formats_carry_the_format(sim_factory: SimFactory) -> None:
    sim = sim_factory()
    schema = PERSON | {"properties": {**PERSON["properties"], "score": {"type": "integer"}}}
    clients = [
        (
            AsyncAnthropicBedrock(aws_region="us-east-1", api_key="k", base_url=sim.base_url, max_retries=0),
            "anthropic.claude-sonnet-4-6-v1:0",
        ),
        (
            AsyncAnthropicVertex(
                region="us-east5", project_id="p", access_token="t", base_url=sim.base_url, max_retries=0
            ),
            "claude-sonnet-4-6",
        ),
        (AsyncAnthropicFoundry(base_url=sim.base_url + "/anthropic", api_key="k", max_retries=0), HAIKU),
    ]
    for client, model in clients:
        verdict = check_answer(schema, _provider_text(client, model))
        assert verdict.valid and verdict.value.get("score", 3) == 3, model


def test_the_cli_sets_the_invalid_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[SimConfig] = []
    monkeypatch.setattr(sim_server, "serve_forever", lambda config, on_ready: served.append(config))
    result = CliRunner().invoke(app, ["simulate", "--port", "0", "--invalid-rate", "0.2"], prog_name="anvil")
    assert result.exit_code == 0, result.output
    assert served[0].invalid_rate == 0.2
    refused = CliRunner().invoke(
        app, ["simulate", "--invalid-rate", "1.5"], env={"NO_COLOR": "1", "COLUMNS": "200"}
    )
    assert refused.exit_code == 2 and "--invalid-rate" in refused.output


def test_the_embedded_simulator_takes_its_invalid_rate_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.model_validate({"state_dir": str(tmp_path)})
    assert embedded_config(settings, {}).invalid_rate == 0.0
    assert embedded_config(settings, {INVALID_RATE_ENV: "0.2"}).invalid_rate == 0.2
    with pytest.raises(ConfigError, match=f"{INVALID_RATE_ENV}: must be a share from 0 to 1, got 'lots'"):
        embedded_config(settings, {INVALID_RATE_ENV: "lots"})


def test_stats_count_structured_and_invalid_answers(client: anthropic.Anthropic, sim: SimServer) -> None:
    ask(client, user("a"), PERSON)
    ask(client, user("b @sim{invalid=1}"), PERSON)
    ask(client, user("c"), None)
    stats = sim.stats()
    assert (stats["structured"], stats["invalid_answers"], stats["successes"]) == (2, 1, 3)


class Person(pydantic.BaseModel):
    name: str
    age: int
    tags: list[str]
    address: Address | None


class Address(pydantic.BaseModel):
    city: str
    zip_code: str


def test_the_sdks_parse_helper_reads_the_answer(client: anthropic.Anthropic) -> None:
    """`messages.parse(output_format=Model)`: the SDK's own schema ($defs, anyOf with null) and
    its own reading of the answer into the model."""
    Person.model_rebuild()
    parsed = client.messages.parse(model=HAIKU, max_tokens=400, messages=user("who"), output_format=Person)
    assert isinstance(parsed.parsed_output, Person)
