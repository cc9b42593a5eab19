"""`anvil plan` with `endpoints:`: each endpoint's rate, the shared ceilings, the pooled rate (the
sum capped by the ceilings), what binds it, the duration at the pooled rate, and prices per
endpoint; without `endpoints:` the plan is what it was."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from anvil_cli.cli import app
from anvil_cli.commands import plan as plan_cmd
from anvil_cli.config.endpoint import Endpoint
from anvil_cli.config.load import load_settings
from anvil_cli.config.settings import Settings
from anvil_cli.jobs.job import Job
from anvil_cli.plan.estimate import OutputModel, make_plan
from anvil_cli.plan.render import render
from anvil_cli.policy.pricing.pricer import Pricer
from tests.engine_support import run_cli, write_jsonl_batch

OUT = OutputModel(latency_s=2.0, mean_tokens=50)
AGENTS = {"max_agents": 1000, "max_concurrent_jobs": 1000}


def _jobs(n: int, model: str = "claude-sonnet-4-6") -> list[Job]:
    msgs = [{"role": "user", "content": "x" * 396}]  # 111 estimated tokens
    return [Job(id=f"j{i}", seq=i, messages=msgs, model=model, max_tokens=100) for i in range(n)]


def _rl(rpm: float, burst: int = 20, **tokens: float) -> dict[str, Any]:
    return {"default": {"requests_per_minute": rpm, "burst_size": burst, **tokens}}


def two_orgs_and_bedrock(ceiling_rpm: float = 1000, **ceiling_tokens: float) -> Settings:
    return Settings.model_validate(
        {
            "scaling": AGENTS,
            "endpoints": [
                {"name": "org-a", "api_key_env": "KEY_A", "rate_limits": _rl(600)},
                {"name": "org-a-2", "api_key_env": "KEY_A2", "rate_limits": _rl(600)},
                {
                    "name": "bedrock-east",
                    "provider": "bedrock",
                    "region": "us-east-1",
                    "rate_limits": _rl(300),
                },
            ],
            "shared_limits": {
                "org": {
                    "endpoints": ["org-a", "org-a-2"],
                    "rate_limits": _rl(ceiling_rpm, 30, **ceiling_tokens),
                }
            },
        }
    )


def test_without_endpoints_the_plan_has_no_endpoints_section() -> None:
    settings = Settings.model_validate({"scaling": AGENTS})
    plan = make_plan(_jobs(100), settings, None, OUT)
    assert plan.endpoints is None and "endpoints" not in plan.as_dict()
    assert not any(line.startswith("endpoints:") for line in render(plan))
    # the one endpoint of ANTHROPIC_*: the top-level rate_limits, list prices
    assert plan.pools[0].pool == "default:sonnet" and plan.pools[0].requests_per_minute == 300


def test_a_shared_ceiling_caps_the_sum_and_binds() -> None:
    plan = make_plan(_jobs(2000), two_orgs_and_bedrock(), None, OUT)
    (pool,) = plan.endpoints or []
    assert pool["pool"] == "default:sonnet"
    assert pool["sum_per_minute"]["requests"] == 1500  # 600 + 600 + 300
    assert pool["pooled_per_minute"]["requests"] == 1300  # org's 1,000 + bedrock's 300
    assert pool["burst_size"] == 50  # org's ceiling 30 + bedrock 20
    assert (pool["binding_limit"], pool["bound_by"]) == ("requests", "shared limit org")
    (ceiling,) = pool["ceilings"]
    assert ceiling["caps"] == ["requests"]
    shares = {e["endpoint"]: e["share"] for e in pool["endpoints"]}
    assert shares == pytest.approx(
        {"org-a": 500 / 1300, "org-a-2": 500 / 1300, "bedrock-east": 300 / 1300}, abs=1e-4
    )
    # the duration at the pooled rate: (2,000 - 50 in the buckets) / 1,300 a minute, plus a call
    assert plan.pools[0].requests_per_minute == 1300
    assert plan.duration_s == pytest.approx((2000 - 50) / 1300 * 60 + 2.0)


def test_without_a_ceiling_reached_the_endpoints_sum_binds() -> None:
    plan = make_plan(_jobs(2000), two_orgs_and_bedrock(ceiling_rpm=5000), None, OUT)
    (pool,) = plan.endpoints or []
    assert pool["pooled_per_minute"]["requests"] == 1500
    assert pool["bound_by"] == "the endpoints' sum" and pool["ceilings"][0]["caps"] == []
    # the ceiling's own bucket still holds 30 (not org-a's and org-a-2's 40) at the start
    assert pool["burst_size"] == 50
    assert plan.duration_s == pytest.approx((2000 - 50) / 1500 * 60 + 2.0)
    lines = render(plan)
    assert "    shared limit org over org-a, org-a-2: 5,000 requests/min; not reached" in lines


def test_a_ceiling_on_output_tokens_can_bind_while_requests_do_not() -> None:
    # 2,000 x 50 output tokens = 100,000; org's ceiling lets 6,000 a minute through org-a + org-a-2,
    # and bedrock has no token limit: unlimited; so only requests bind
    plan = make_plan(_jobs(2000), two_orgs_and_bedrock(output_tokens_per_minute=6000), None, OUT)
    (pool,) = plan.endpoints or []
    assert pool["pooled_per_minute"]["output tokens"] is None
    # with bedrock's own token limit the pooled output rate is org's 6,000 + bedrock's 3,000
    settings = two_orgs_and_bedrock(ceiling_rpm=5000, output_tokens_per_minute=6000)
    settings.endpoints[2].rate_limits["default"].output_tokens_per_minute = 3000
    settings.endpoints[0].rate_limits["default"].output_tokens_per_minute = 1e6
    settings.endpoints[1].rate_limits["default"].output_tokens_per_minute = 1e6
    plan = make_plan(_jobs(2000), settings, None, OUT)
    (pool,) = plan.endpoints or []
    assert pool["pooled_per_minute"]["output tokens"] == pytest.approx(9000)
    assert (pool["binding_limit"], pool["bound_by"]) == ("output tokens", "shared limit org")
    assert plan.duration_s == pytest.approx((100_000 - 9000) / 9000 * 60 + 2.0)


def test_cost_spreads_over_endpoint_prices_and_the_worst_case_takes_the_dearest() -> None:
    settings = two_orgs_and_bedrock()
    plan = make_plan(_jobs(2000), settings, None, OUT)
    (model,) = plan.models
    at_list = make_plan(_jobs(2000), Settings.model_validate({"scaling": AGENTS}), None, OUT).models[0]
    bedrock = Pricer.from_settings(settings).at("bedrock", "us-east-1")
    premium = bedrock.expected_usd("claude-sonnet-4-6", 1000, 0) / Pricer.from_settings(
        settings
    ).expected_usd("claude-sonnet-4-6", 1000, 0)
    share = 300 / 1300  # bedrock's share of the pooled rate
    assert model.expected_usd == pytest.approx(at_list.expected_usd * (1 + share * (premium - 1)), rel=1e-3)
    assert model.worst_usd == pytest.approx(at_list.worst_usd * premium)
    bedrock_row = next(e for e in (plan.endpoints or [])[0]["endpoints"] if e["endpoint"] == "bedrock-east")
    assert bedrock_row["price_factor"] == pytest.approx(premium)


def test_per_model_limits_of_an_endpoint_make_their_own_pool() -> None:
    settings = Settings.model_validate(
        {
            "scaling": AGENTS,
            "endpoints": [
                {
                    "name": "org-a",
                    "rate_limits": {**_rl(600), "claude-haiku-*": {"requests_per_minute": 1200}},
                },
                {
                    "name": "org-b",
                    "rate_limits": {**_rl(600), "claude-haiku-*": {"requests_per_minute": 1200}},
                },
            ],
        }
    )
    plan = make_plan([*_jobs(10), *_jobs(10, "claude-haiku-4-5")], settings, None, OUT)
    pooled = {p["pool"]: p["pooled_per_minute"]["requests"] for p in plan.endpoints or []}
    assert pooled == {"claude-haiku-*:haiku": 2400, "default:sonnet": 1200}


@pytest.mark.slow
def test_anvil_plan_names_endpoints_in_text_and_json(tmp_path: Path) -> None:
    cfg = tmp_path / "anvil.yaml"
    cfg.write_text(
        "endpoints:\n"
        "  - {name: org-a, api_key_env: KEY_A,\n"
        "     rate_limits: {default: {requests_per_minute: 600, burst_size: 20}}}\n"
        "  - {name: vertex-eu, provider: vertex, region: europe-west1, project_id: p,\n"
        "     rate_limits: {default: {requests_per_minute: 300, burst_size: 20}}}\n"
        f"state_dir: {tmp_path / '.anvil'}\n"
    )
    batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q {i}" for i in range(500)])
    text = run_cli("plan", str(batch), "--config", str(cfg), cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "endpoints: 2; each pool's rate is their sum, capped by shared limits" in text.stdout
    assert "    vertex-eu (vertex europe-west1): 300 requests/min, burst 20; prices x1.1;" in text.stdout
    assert "pooled 900 requests/min, burst 40; binding: requests, set by the endpoints' sum" in text.stdout
    out = run_cli("plan", str(batch), "--config", str(cfg), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    (pool,) = data["endpoints"]
    assert [e["endpoint"] for e in pool["endpoints"]] == ["org-a", "vertex-eu"]
    assert data["duration_s"] == pytest.approx((500 - 40) / 900 * 60 + data["assumed_latency_s"], rel=1e-6)


DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def _docs_section() -> str:
    text = DOCS.read_text("utf-8")
    match = re.search(r"^## Several accounts and providers$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, "docs/configuration.md has no '## Several accounts and providers' section"
    return match.group(1)


def _docs_blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", _docs_section(), re.M | re.S)


def test_the_configuration_page_examples_are_valid_settings(tmp_path: Path) -> None:
    blocks = _docs_blocks("yaml")
    assert len(blocks) == 2  # two organisations; Anthropic + Bedrock
    loaded = []
    for i, block in enumerate(blocks):
        path = tmp_path / f"example{i}.yaml"
        path.write_text(block)
        loaded.append(load_settings(path, env={}))
    orgs, mixed = loaded
    assert [e.name for e in orgs.endpoints] == ["org-a-1", "org-a-2", "org-b"] and orgs.shared_limits
    assert {e.provider for e in mixed.endpoints} == {"anthropic", "bedrock"} and mixed.shared_limits


def test_the_configuration_page_shows_what_anvil_plan_prints(tmp_path: Path) -> None:
    path = tmp_path / "anvil.yaml"
    path.write_text(_docs_blocks("yaml")[0])
    settings = load_settings(
        path, overrides={"scaling": {"max_agents": 1000, "max_concurrent_jobs": 1000}}, env={}
    )
    (shown,) = _docs_blocks("text")
    lines = render(make_plan(_jobs(20_000), settings, None, OUT))
    start = next(i for i, line in enumerate(lines) if line.startswith("endpoints:"))
    assert lines[start : start + len(shown.splitlines())] == shown.splitlines()


def test_the_anthropic_and_bedrock_example_prices_each_bedrock_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "anvil.yaml"
    path.write_text(_docs_blocks("yaml")[1])
    plan = make_plan(_jobs(5000), load_settings(path, env={}), None, OUT)
    (pool,) = plan.endpoints or []
    factors = {e["endpoint"]: e["price_factor"] for e in pool["endpoints"]}
    assert factors == pytest.approx({"anthropic": 1.0, "bedrock-east": 1.0, "bedrock-west": 1.1})
    assert pool["pooled_per_minute"]["requests"] == 4800  # 4,000 + the AWS account's 800
    assert pool["bound_by"] == "shared limit bedrock-account"


def test_plan_counts_tokens_only_on_an_anthropic_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bedrock = Endpoint("http://127.0.0.1:9", "endpoints: b", name="b", provider="bedrock", region="us-east-1")
    monkeypatch.setattr(plan_cmd, "resolve_endpoints", lambda settings, env: (bedrock,))
    cfg = tmp_path / "anvil.yaml"
    cfg.write_text(
        f"endpoints: [{{name: b, provider: bedrock, region: us-east-1}}]\nstate_dir: {tmp_path / 's'}\n"
    )
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["q"])
    result = CliRunner().invoke(app, ["plan", str(batch), "--config", str(cfg), "--json"])
    assert result.exit_code == 0, result.output
    notes = json.loads(result.stdout)["notes"]
    assert "input tokens estimated locally: no provider: anthropic endpoint to count them" in notes
