"""Cost of a call from its usage: input, output, cache writes and reads, batch discount."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from anvil_cli.policy.pricing.table import ModelPrice, PriceTable, builtin_prices, model_price

PER_MILLION = 1_000_000.0


@dataclass(frozen=True, slots=True)
class Pricer:
    """Prices calls with one price table (the built-in one plus the user's overrides)."""

    table: PriceTable
    fallback: ModelPrice | None = None  # used for models missing from the table
    # `at(...)`'s pricers, made once each: the governor asks per call, and it must stay cheap
    _derived: dict[tuple[Any, ...], Pricer] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any] | None = None) -> Pricer:
        """The built-in table with `prices:` entries from the config laid over it.

        An entry is a mapping (`input`, `output`, optional `cache_write_5m`, `cache_write_1h`,
        `cache_read`) or an object with those attributes (a `ModelPriceOverride`)."""
        table = builtin_prices()
        if overrides:
            models = dict(table.models)
            for name, price in overrides.items():
                raw = price if isinstance(price, Mapping) else price.model_dump()
                models[name] = model_price(raw)
            table = replace(table, models=models)
        return cls(table=table)

    @classmethod
    def from_settings(cls, settings: Any) -> Pricer:
        """The pricer of a `Settings` (its `prices:` overrides)."""
        return cls.from_overrides({k: v.model_dump() for k, v in settings.prices.items()})

    def at(
        self,
        provider: str,
        region: str | None = None,
        models: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> Pricer:
        """The pricer for calls through `provider` in `region` (`anthropic`: this one): every
        price times the provider's factors in the data file (`providers:` in data/prices.yaml),
        on top of the list price or its `prices:` override. `models`: the endpoint's Anvil id ->
        provider id mapping (a Bedrock `global.` inference profile is priced as global).
        Made once per (provider, region, models) and kept: cheap to call per call.

        Raises ValueError for a provider the data file does not know."""
        quick = (provider, region, models) if models is None or isinstance(models, tuple) else None
        made = self._derived.get(quick) if quick is not None else None  # an Endpoint's: no sorting
        if made is not None:
            return made
        pairs = tuple(sorted(dict(models or {}).items()))
        key = (provider, region, pairs)
        made = self._derived.get(key)
        if made is not None:
            if quick is not None:
                self._derived[quick] = made
            return made
        terms = self.table.providers.get(provider)
        if terms is None:
            known = ", ".join(sorted(self.table.providers))
            raise ValueError(f"no prices for provider {provider!r} (known: {known})")
        ids = dict(pairs)
        factors = {name: terms.factor(name, region, ids.get(name)) for name in self.table.models}
        made = self.scaled(factors, terms.factor("", region))
        self._derived[key] = made
        if quick is not None:
            self._derived[quick] = made
        return made

    def relative_price(self, endpoint: Any, model: str) -> float:
        """What a call to `model` through `endpoint` (its provider, region, models) costs as a
        multiple of the list price (1 for a model without a price): enough to rank endpoints
        cheapest first. From `for_endpoint`'s kept pricer: cheap per call."""
        base, through = self.price(model), self.for_endpoint(endpoint).price(model)
        if base is None or through is None or base.input == 0:
            return 1.0
        return through.input / base.input

    def scaled(self, factors: Mapping[str, float], other: float = 1.0) -> Pricer:
        """Every price of a model times its factor (`other` for models not named, and for the
        fallback); this very pricer when every factor is 1."""
        models = {name: _scaled(price, factors.get(name, other)) for name, price in self.table.models.items()}
        fallback = self.fallback and _scaled(self.fallback, other)
        if models == self.table.models and fallback == self.fallback:
            return self  # list prices (the Claude API, a global endpoint)
        return Pricer(replace(self.table, models=models), fallback)

    def for_endpoint(self, endpoint: Any) -> Pricer:
        """`at(...)` for an `Endpoint` or `EndpointSettings` (its provider, region, models)."""
        return self.at(endpoint.provider, endpoint.region, endpoint.models)

    def price(self, model: str) -> ModelPrice | None:
        return self.table.models.get(model, self.fallback)

    def cost_usd(self, model: str, usage: Mapping[str, Any], *, batch: bool = False) -> float:
        """Cost of one call from its usage dict (the API's `usage`, cache fields included).

        `input_tokens` are the uncached input; cache writes are split into 5-minute and 1-hour
        writes by `usage.cache_creation` when present (else all count as 5-minute writes);
        `cache_read_input_tokens` are priced as reads. Batch calls get the batch discount on
        everything, stacked with the cache prices."""
        price = self.price(model)
        if price is None:
            return 0.0
        t = self.table
        plain_in = int(usage.get("input_tokens") or 0)
        cache_read = int(usage.get("cache_read_input_tokens") or 0)
        write_5m, write_1h = _cache_writes(usage)
        output = int(usage.get("output_tokens") or 0)
        cost = (
            plain_in * price.input
            + write_5m * t.write_5m(price)
            + write_1h * t.write_1h(price)
            + cache_read * t.read(price)
            + output * price.output
        ) / PER_MILLION
        return cost * t.batch_discount if batch else cost

    def worst_case_usd(self, model: str, input_tokens: int, max_tokens: int, *, batch: bool = False) -> float:
        """Upper bound of a call's cost: every input token at the dearest input price (usually a
        1 h cache write), `max_tokens` out."""
        price = self.price(model)
        if price is None:
            return 0.0
        t = self.table
        dearest_in = max(price.input, t.write_5m(price), t.write_1h(price))
        cost = (input_tokens * dearest_in + max_tokens * price.output) / PER_MILLION
        return cost * t.batch_discount if batch else cost

    def expected_usd(
        self, model: str, input_tokens: int, output_tokens: int, *, batch: bool = False
    ) -> float:
        """Cost of a call with this many uncached input tokens and output tokens."""
        price = self.price(model)
        if price is None:
            return 0.0
        cost = (input_tokens * price.input + output_tokens * price.output) / PER_MILLION
        return cost * self.table.batch_discount if batch else cost


def _scaled(price: ModelPrice, factor: float) -> ModelPrice:
    """`price` with every per-token price times `factor` (flags and the context window kept)."""
    if factor == 1.0:
        return price

    def times(value: float | None) -> float | None:
        return None if value is None else value * factor

    return replace(
        price,
        input=price.input * factor,
        output=price.output * factor,
        cache_write_5m=times(price.cache_write_5m),
        cache_write_1h=times(price.cache_write_1h),
        cache_read=times(price.cache_read),
    )


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
