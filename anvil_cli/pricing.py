"""Cost of a call from its usage: input, output, cache writes and reads, batch discount."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from anvil_cli.models import ModelPrice, PriceTable, builtin_prices

PER_MILLION = 1_000_000.0


@dataclass(frozen=True, slots=True)
class Pricer:
    """Prices calls with one price table (the built-in one plus the user's overrides)."""

    table: PriceTable
    fallback: ModelPrice | None = None  # used for models missing from the table

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any] | None = None) -> Pricer:
        """The built-in table with `prices:` entries from the config laid over it."""
        table = builtin_prices()
        if overrides:
            models = dict(table.models)
            for name, price in overrides.items():
                inp = price["input"] if isinstance(price, Mapping) else price.input
                out = price["output"] if isinstance(price, Mapping) else price.output
                models[name] = ModelPrice(input=float(inp), output=float(out))
            table = replace(table, models=models)
        return cls(table=table)

    def price(self, model: str) -> ModelPrice | None:
        return self.table.models.get(model, self.fallback)

    def cost_usd(self, model: str, usage: Mapping[str, Any], *, batch: bool = False) -> float:
        """Cost of one call from its usage dict (the API's `usage`, cache fields included)."""
        price = self.price(model)
        if price is None:
            return 0.0
        t = self.table
        plain_in = int(usage.get("input_tokens") or 0)
        cache_read = int(usage.get("cache_read_input_tokens") or 0)
        write_5m, write_1h = _cache_writes(usage)
        input_units = (
            plain_in + write_5m * t.cache_write_5m + write_1h * t.cache_write_1h + cache_read * t.cache_read
        )
        output = int(usage.get("output_tokens") or 0)
        cost = (input_units * price.input + output * price.output) / PER_MILLION
        return cost * t.batch_discount if batch else cost

    def worst_case_usd(self, model: str, input_tokens: int, max_tokens: int, *, batch: bool = False) -> float:
        """Upper bound of a call's cost: every input token written to a 1 h cache, max_tokens out."""
        price = self.price(model)
        if price is None:
            return 0.0
        worst_in = input_tokens * max(1.0, self.table.cache_write_1h)
        cost = (worst_in * price.input + max_tokens * price.output) / PER_MILLION
        return cost * self.table.batch_discount if batch else cost

    def expected_usd(self, model: str, input_tokens: int, output_tokens: int) -> float:
        price = self.price(model)
        if price is None:
            return 0.0
        return (input_tokens * price.input + output_tokens * price.output) / PER_MILLION


def _cache_writes(usage: Mapping[str, Any]) -> tuple[int, int]:
    """Cache-write tokens split by TTL; without a breakdown, all count as 5-minute writes."""
    total = int(usage.get("cache_creation_input_tokens") or 0)
    detail = usage.get("cache_creation")
    if isinstance(detail, Mapping):
        w5 = int(detail.get("ephemeral_5m_input_tokens") or 0)
        w1 = int(detail.get("ephemeral_1h_input_tokens") or 0)
        if w5 + w1:
            return w5, w1
    return total, 0
