"""Known model ids, their rate-limit class, and the price table."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from anvil_cli.policy.pricing.providers import ProviderPrices, provider_prices

AUTO = "auto"


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens for one model; cache prices are None when derived from multipliers."""

    input: float
    output: float
    retired: bool = False
    deprecated: bool = False
    cache_write_5m: float | None = None
    cache_write_1h: float | None = None
    cache_read: float | None = None
    context_window: int | None = None  # input tokens a request may carry; None: the table's default


@dataclass(frozen=True, slots=True)
class PriceTable:
    """The price data file: per-model prices, cache multipliers, batch discount."""

    read_on: str
    batch_discount: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    models: dict[str, ModelPrice]
    default_context_window: int = 1_000_000
    # what each provider charges relative to the list prices (`providers:` in the data file)
    providers: Mapping[str, ProviderPrices] = field(default_factory=lambda: provider_prices(None))

    def context_window(self, model: str) -> int:
        """The most input tokens `model` accepts (the default for a model the table lacks)."""
        price = self.models.get(model)
        window = price.context_window if price is not None else None
        return window if window is not None else self.default_context_window

    def write_5m(self, price: ModelPrice) -> float:
        """USD per million tokens written to a 5-minute cache."""
        return price.cache_write_5m if price.cache_write_5m is not None else price.input * self.cache_write_5m

    def write_1h(self, price: ModelPrice) -> float:
        """USD per million tokens written to a 1-hour cache."""
        return price.cache_write_1h if price.cache_write_1h is not None else price.input * self.cache_write_1h

    def read(self, price: ModelPrice) -> float:
        """USD per million tokens read from the cache."""
        return price.cache_read if price.cache_read is not None else price.input * self.cache_read


def model_price(raw: Mapping[str, Any]) -> ModelPrice:
    """A ModelPrice from a mapping with `input`, `output` and optional cache prices and flags."""

    def opt(key: str) -> float | None:
        value = raw.get(key)
        return None if value is None else float(value)

    return ModelPrice(
        input=float(raw["input"]),
        output=float(raw["output"]),
        retired=bool(raw.get("retired", False)),
        deprecated=bool(raw.get("deprecated", False)),
        cache_write_5m=opt("cache_write_5m"),
        cache_write_1h=opt("cache_write_1h"),
        cache_read=opt("cache_read"),
        context_window=None if raw.get("context_window") is None else int(raw["context_window"]),
    )


def _parse_table(raw: dict[str, Any]) -> PriceTable:
    mult = raw.get("cache_multipliers", {})
    models = {name: model_price(v) for name, v in raw["models"].items()}
    return PriceTable(
        read_on=str(raw.get("read_on", "")),
        batch_discount=float(raw.get("batch_discount", 0.5)),
        cache_write_5m=float(mult.get("write_5m", 1.25)),
        cache_write_1h=float(mult.get("write_1h", 2.0)),
        cache_read=float(mult.get("read", 0.1)),
        models=models,
        default_context_window=int(raw.get("default_context_window", 1_000_000)),
        providers=provider_prices(raw.get("providers")),
    )


@lru_cache(maxsize=1)
def builtin_prices() -> PriceTable:
    """The price table shipped in the package."""
    import yaml  # here: the governor's process needs `model_class`, never the table (~10 ms)

    text = resources.files("anvil_cli.data").joinpath("prices.yaml").read_text("utf-8")
    return _parse_table(yaml.safe_load(text))


def known_models() -> list[str]:
    """Model ids Anvil knows (from the built-in price table)."""
    return list(builtin_prices().models)


def suggest_model(model: str, candidates: list[str] | None = None) -> str | None:
    """The closest known model id to `model`, if any is close."""
    pool = candidates if candidates is not None else known_models()
    match = difflib.get_close_matches(model, pool, n=1, cutoff=0.6)
    return match[0] if match else None


def pool_key(entry: str, model: str) -> str:
    """The rate-limit pool of `model` under the limits entry `entry` (`default:sonnet`): one per
    entry and model class, as the governor keeps them."""
    return f"{entry}:{model_class(model)}"


def model_class(model: str) -> str:
    """The rate-limit pool a model belongs to: all Opus share one, all Sonnet one, Haiku one."""
    for family in ("opus", "sonnet", "haiku"):
        if fnmatch.fnmatch(model, f"claude-{family}-*") or model == f"claude-{family}":
            return family
    return model
