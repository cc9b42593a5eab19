"""Cost arithmetic: per model, cache writes (5 m / 1 h) and reads, the batch discount, overrides."""

from __future__ import annotations

import pytest

from anvil_cli.config.load import load_settings
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.policy.pricing.table import builtin_prices

M = 1_000_000


def test_price_table_has_a_read_date_and_the_documented_multipliers() -> None:
    table = builtin_prices()
    assert table.read_on
    assert (table.cache_write_5m, table.cache_write_1h, table.cache_read, table.batch_discount) == (
        1.25,
        2.0,
        0.1,
        0.5,
    )


@pytest.mark.parametrize(
    ("model", "inp", "out"),
    [("claude-haiku-4-5", 1.0, 5.0), ("claude-sonnet-4-6", 3.0, 15.0), ("claude-opus-4-8", 5.0, 25.0)],
)
def test_plain_cost_per_model(model: str, inp: float, out: float) -> None:
    pricer = Pricer.from_overrides()
    usage = {"input_tokens": 2 * M, "output_tokens": M}
    assert pricer.cost_usd(model, usage) == pytest.approx(2 * inp + out)
    assert pricer.cost_usd(model, usage, batch=True) == pytest.approx((2 * inp + out) / 2)


def test_cache_writes_and_reads_are_priced_with_their_multipliers() -> None:
    pricer = Pricer.from_overrides()
    usage = {
        "input_tokens": M,
        "cache_creation_input_tokens": 3 * M,
        "cache_read_input_tokens": 10 * M,
        "output_tokens": M,
        "cache_creation": {"ephemeral_5m_input_tokens": M, "ephemeral_1h_input_tokens": 2 * M},
    }
    # sonnet 4.6: 3 in, 15 out; 5 m write 3.75, 1 h write 6, read 0.3
    expected = 3 + 3.75 + 2 * 6 + 10 * 0.3 + 15
    assert pricer.cost_usd("claude-sonnet-4-6", usage) == pytest.approx(expected)
    # the batch discount stacks with the cache prices
    assert pricer.cost_usd("claude-sonnet-4-6", usage, batch=True) == pytest.approx(expected / 2)


def test_cache_writes_without_a_breakdown_count_as_5_minute_writes() -> None:
    pricer = Pricer.from_overrides()
    usage = {"input_tokens": 0, "cache_creation_input_tokens": M, "output_tokens": 0}
    assert pricer.cost_usd("claude-haiku-4-5", usage) == pytest.approx(1.25)


def test_worst_case_assumes_a_1h_write_of_every_input_token_and_max_tokens() -> None:
    pricer = Pricer.from_overrides()
    assert pricer.worst_case_usd("claude-opus-4-8", M, M) == pytest.approx(5 * 2 + 25)
    assert pricer.worst_case_usd("claude-opus-4-8", M, M, batch=True) == pytest.approx(17.5)
    actual = pricer.cost_usd(
        "claude-opus-4-8", {"input_tokens": M, "cache_creation_input_tokens": 0, "output_tokens": M}
    )
    assert actual <= pricer.worst_case_usd("claude-opus-4-8", M, M)


def test_config_overrides_and_adds_models_with_own_cache_prices(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "anvil.yaml"
    cfg.write_text(
        "prices:\n"
        "  claude-haiku-4-5: {input: 2.0, output: 8.0}\n"
        "  my-model: {input: 4.0, output: 20.0, cache_write_5m: 4.4, cache_write_1h: 6.0, cache_read: 0.2}\n"
    )
    pricer = Pricer.from_settings(load_settings(cfg, env={}))
    assert pricer.cost_usd("claude-haiku-4-5", {"input_tokens": M, "output_tokens": M}) == pytest.approx(10)
    # derived cache prices follow the overridden input price
    assert pricer.cost_usd("claude-haiku-4-5", {"cache_read_input_tokens": M}) == pytest.approx(0.2)
    usage = {
        "cache_creation_input_tokens": 2 * M,
        "cache_creation": {"ephemeral_5m_input_tokens": M, "ephemeral_1h_input_tokens": M},
        "cache_read_input_tokens": M,
    }
    assert pricer.cost_usd("my-model", usage) == pytest.approx(4.4 + 6.0 + 0.2)
    assert pricer.worst_case_usd("my-model", M, 0) == pytest.approx(6.0)


def test_unknown_model_costs_nothing_rather_than_crashing() -> None:
    assert Pricer.from_overrides().cost_usd("no-such-model", {"input_tokens": 5}) == 0.0
