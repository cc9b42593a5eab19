"""Prices per provider and region (`providers:` in data/prices.yaml): `Pricer.at(...)`."""

from __future__ import annotations

from pathlib import Path

import pytest

from anvil_cli.config.endpoint import Endpoint
from anvil_cli.config.load import load_settings
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.policy.pricing.table import builtin_prices

M = 1_000_000
USAGE = {"input_tokens": 2 * M, "output_tokens": M}


def test_the_data_file_names_every_provider_an_endpoint_may_have() -> None:
    from anvil_cli.config.settings import PROVIDERS

    assert set(PROVIDERS) <= set(builtin_prices().providers)


def test_anthropic_and_global_endpoints_are_the_list_price_itself() -> None:
    pricer = Pricer.from_overrides()
    assert pricer.at("anthropic") is pricer
    assert pricer.at("anthropic", "us-east-1") is pricer
    assert pricer.at("vertex", "global") is pricer
    assert pricer.at("foundry", None) is pricer  # unverified: list price until read


@pytest.mark.parametrize("provider", ["bedrock", "vertex"])
def test_a_regional_endpoint_costs_the_premium_of_the_data_file(provider: str) -> None:
    pricer = Pricer.from_overrides()
    premium = builtin_prices().providers[provider].regional_premium
    assert premium == pytest.approx(1.10)  # the value the data file cites
    regional = pricer.at(provider, "us-east5" if provider == "vertex" else "us-east-1")
    for model in ("claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-8"):
        assert regional.cost_usd(model, USAGE) == pytest.approx(pricer.cost_usd(model, USAGE) * premium)
        assert regional.worst_case_usd(model, M, M) == pytest.approx(
            pricer.worst_case_usd(model, M, M) * premium
        )
        # the batch discount and cache multipliers still stack on the provider's price
        cached = {"cache_read_input_tokens": M, "cache_creation_input_tokens": M, "output_tokens": 0}
        assert regional.cost_usd(model, cached, batch=True) == pytest.approx(
            pricer.cost_usd(model, cached, batch=True) * premium
        )


def test_models_before_sonnet_4_5_carry_no_regional_premium() -> None:
    pricer = Pricer.from_overrides()
    regional = pricer.at("vertex", "europe-west1")
    assert regional.cost_usd("claude-opus-4-1", USAGE) == pytest.approx(
        pricer.cost_usd("claude-opus-4-1", USAGE)
    )


def test_a_bedrock_global_inference_profile_is_priced_as_global() -> None:
    pricer = Pricer.from_overrides()
    ids = {
        "claude-sonnet-4-6": "global.anthropic.claude-sonnet-4-6",
        "claude-haiku-4-5": "us.anthropic.claude-haiku-4-5",
    }
    bedrock = pricer.at("bedrock", "us-east-1", ids)
    assert bedrock.cost_usd("claude-sonnet-4-6", USAGE) == pytest.approx(
        pricer.cost_usd("claude-sonnet-4-6", USAGE)
    )
    # a geographic (us.) profile is regional
    assert bedrock.cost_usd("claude-haiku-4-5", USAGE) == pytest.approx(
        pricer.cost_usd("claude-haiku-4-5", USAGE) * 1.1
    )


def test_an_unknown_region_counts_as_regional_so_a_budget_is_not_underestimated() -> None:
    pricer = Pricer.from_overrides()
    assert pricer.at("vertex", None).cost_usd("claude-sonnet-4-6", USAGE) > pricer.cost_usd(
        "claude-sonnet-4-6", USAGE
    )


def test_prices_overrides_still_apply_under_the_provider_factor(tmp_path: Path) -> None:
    cfg = tmp_path / "anvil.yaml"
    cfg.write_text(
        "prices:\n  claude-sonnet-4-6: {input: 1.0, output: 2.0}\n  my-model: {input: 4.0, output: 8.0}\n"
    )
    pricer = Pricer.from_settings(load_settings(cfg, env={}))
    regional = pricer.at("bedrock", "eu-west-1")
    assert regional.cost_usd("claude-sonnet-4-6", USAGE) == pytest.approx((2 * 1.0 + 2.0) * 1.1)
    assert regional.cost_usd("my-model", USAGE) == pytest.approx((2 * 4.0 + 8.0) * 1.1)
    assert pricer.at("anthropic").cost_usd("claude-sonnet-4-6", USAGE) == pytest.approx(4.0)


def test_at_is_made_once_per_provider_region_and_ids() -> None:
    pricer = Pricer.from_overrides()
    first = pricer.at("bedrock", "us-east-1", {"claude-sonnet-4-6": "us.anthropic.claude-sonnet-4-6"})
    again = pricer.at("bedrock", "us-east-1", (("claude-sonnet-4-6", "us.anthropic.claude-sonnet-4-6"),))
    assert first is again
    assert pricer.at("bedrock", "us-west-2") is not first


def test_for_endpoint_reads_provider_region_and_model_ids_of_an_endpoint() -> None:
    pricer = Pricer.from_overrides()
    endpoint = Endpoint(
        "https://bedrock-runtime.us-east-1.amazonaws.com",
        "endpoints: bedrock-east",
        name="bedrock-east",
        provider="bedrock",
        region="us-east-1",
        models=(("claude-sonnet-4-6", "global.anthropic.claude-sonnet-4-6"),),
    )
    assert pricer.for_endpoint(endpoint) is pricer.at("bedrock", "us-east-1", dict(endpoint.models))
    assert pricer.for_endpoint(endpoint).cost_usd("claude-sonnet-4-6", USAGE) == pytest.approx(
        pricer.cost_usd("claude-sonnet-4-6", USAGE)
    )


def test_an_unknown_provider_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"no prices for provider 'openai'.*bedrock"):
        Pricer.from_overrides().at("openai")


def test_relative_price_ranks_endpoints_as_at_prices_them() -> None:
    pricer = Pricer.from_overrides()
    east = Endpoint("https://x", "e", name="east", provider="bedrock", region="us-east-1")
    glob = Endpoint(
        "https://x",
        "e",
        name="glob",
        provider="bedrock",
        region="us-east-1",
        models=(("claude-sonnet-4-6", "global.anthropic.claude-sonnet-4-6"),),
    )
    org = Endpoint("https://x", "e", name="org")
    model = "claude-sonnet-4-6"
    factors = {e.name: pricer.relative_price(e, model) for e in (east, glob, org)}
    assert factors == pytest.approx({"east": 1.1, "glob": 1.0, "org": 1.0})
    for e in (east, glob, org):
        expected = pricer.for_endpoint(e).cost_usd(model, USAGE) / pricer.cost_usd(model, USAGE)
        assert factors[e.name] == pytest.approx(expected)
    assert sorted((east, glob, org), key=lambda e: pricer.relative_price(e, model))[-1] is east
